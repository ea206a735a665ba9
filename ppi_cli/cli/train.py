# SPDX-License-Identifier: MIT
"""`ppi train`: train one model from a recipe on a prepared cache (or the generated synthetic task)."""

from __future__ import annotations

import math
from typing import Annotated

import typer

from ppi_cli.cli.options import DataOpt, DatasetOpt, DeviceOpt, OutOpt, RecipeOpt, SeedOpt, VerifyOpt, WorkspaceOpt

__all__ = ["register", "train_cmd"]


def train_cmd(
    recipe: RecipeOpt = None,
    data: DataOpt = None,
    dataset: DatasetOpt = None,
    out: OutOpt = None,
    fold: Annotated[int | None, typer.Option("--fold", min=0, help="Train on the other folds of a subject-grouped "
                                             "k-fold split (eval.folds) and record fold k as the test rows.",
                                             show_default=False)] = None,
    device: DeviceOpt = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out (default: the latest train "
                                         "run of this dataset) from its last.pt.")] = False,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Override schedule.epochs.",
                                               show_default=False)] = None,
    seed: SeedOpt = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a recipe field, e.g. --set "
                                                   "ppi.mask=box (value parsed as YAML); repeatable.")] = None,
    workspace: WorkspaceOpt = None,
    verify: VerifyOpt = False,
) -> None:
    """Train a model with PPI (or the plain baseline), writing last.pt, best.pt and metrics.csv.

    Under `torchrun --nproc-per-node N` the same command trains with DistributedDataParallel.
    """
    # Imported here, not at the top: `ppi --help` imports every verb module (cli/main.py).
    from ppi_cli import console
    from ppi_cli.cli.recipe import parse_set_options
    from ppi_cli.engine.train_run import TrainRequest, train

    overrides = {**parse_set_options(set_ or []), "schedule.epochs": epochs, "seed": seed}
    run = train(TrainRequest(recipe=recipe, data=data, dataset=dataset, out=out, fold=fold, device=device,
                             resume=resume, workspace=workspace, verify=verify, overrides=overrides))
    res = run.result
    if not res.is_main:  # other torchrun ranks: rank 0 reports
        return
    metric = run.recipe.eval.metric
    best = f"{res.best_metric:.4f}" if math.isfinite(res.best_metric) else "none (no validation)"
    console.stdout.print(f"run         {res.out_dir}\nbest epoch  {res.best_epoch}\n"
                         f"best val {metric:<4}{best}\nbest model  {res.best_checkpoint}")
    if run.test is not None:  # --fold k ends with its test result
        console.stdout.print(run.test)
    console.paths(read=run.read, wrote=[res.out_dir / "recipe.yaml", res.out_dir / "split.json", res.metrics_csv,
                                        res.last_checkpoint, res.best_checkpoint])


def register(app: typer.Typer) -> None:
    """Add the `train` command."""
    app.command("train")(train_cmd)
