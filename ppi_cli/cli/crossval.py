# SPDX-License-Identifier: MIT
"""`ppi crossval`: k-fold cross-validation by subject, per fold or all at once, and its collection."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ppi_cli.cli.options import DataOpt, DatasetOpt, DeviceOpt, OutOpt, RecipeOpt, SeedOpt, VerifyOpt, WorkspaceOpt

__all__ = ["register"]


def crossval_cmd(
    *,
    recipe: RecipeOpt = None,
    data: DataOpt = None,
    dataset: DatasetOpt = None,
    out: OutOpt = None,
    folds: Annotated[int | None, typer.Option("--folds", min=2, help="Number of folds (default: the recipe's "
                                              "eval.folds, 5 as in the paper).", show_default=False)] = None,
    seed: SeedOpt = None,
    fold: Annotated[int | None, typer.Option("--fold", min=0, help="Run only fold k (0-based), e.g. as one task "
                                             "of a job array; needs --out.", show_default=False)] = None,
    collect: Annotated[bool, typer.Option("--collect", help="Merge the finished folds of --out (default: the "
                                          "latest crossval run) into the report, without training.")] = False,
    compare: Annotated[Path | None, typer.Option("--compare", help="Another run on the same folds: add a paired "
                                                 "comparison against it (mean per-fold ΔAUC, t-interval; DeLong per "
                                                 "fold).", show_default=False)] = None,
    bootstrap: Annotated[int | None, typer.Option("--bootstrap", min=0, help="Bootstrap resamples for the 95% "
                                                  "interval (default: the recipe's eval.bootstrap).",
                                                  show_default=False)] = None,
    device: DeviceOpt = "auto",
    workspace: WorkspaceOpt = None,
    verify: VerifyOpt = False,
    json_: Annotated[bool, typer.Option("--json", help="Print the summary as JSON instead of a table.")] = False,
) -> None:
    """Cross-validate a recipe with folds grouped by subject: AUC mean ± std, bootstrap interval, ROC curves.

    Without options it uses the workspace's prepared cache and that dataset's PPI+WBP recipe.
    """
    # Imported here, not at the top: `ppi --help` imports every verb module (cli/main.py).
    from ppi_cli.console import paths, stdout
    from ppi_cli.engine.crossval import CrossvalRequest, crossval_study
    from ppi_cli.files import json_text

    outcome = crossval_study(CrossvalRequest(recipe=recipe, data=data, dataset=dataset, out=out, folds=folds,
                                             seed=seed, fold=fold, collect=collect, compare=compare, device=device,
                                             bootstrap=bootstrap, workspace=workspace, verify=verify))
    if outcome.summary is not None:
        if json_:
            payload = outcome.summary.to_dict() | {"out": str(outcome.out)}
            if outcome.comparison is not None:
                payload["comparison"] = outcome.comparison.to_dict()
            typer.echo(json_text(payload))
        else:
            stdout.print(outcome.summary)
            if outcome.comparison is not None:
                stdout.print(outcome.comparison)
                stdout.print(outcome.comparison.summary)
    elif json_:
        typer.echo(json_text({"out": str(outcome.out), "ran_folds": outcome.ran}))
    else:
        stdout.print(f"fold(s) {', '.join(map(str, outcome.ran)) or 'none (already finished)'} -> {outcome.out}")
    paths(read=[p for p in (data,) if p], wrote=outcome.written)


def register(app: typer.Typer) -> None:
    """Attach `crossval` to the root app."""
    app.command("crossval")(crossval_cmd)
