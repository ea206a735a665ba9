# SPDX-License-Identifier: MIT
"""`ppi sweep`: recipe variants × seeds on one cross-site row or a cross-validation, each paired against the
baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ppi_cli.cli.options import DeviceOpt, RecipeOpt, WorkspaceOpt

__all__ = ["register"]


def sweep_cmd(
    *,
    data: Annotated[Path, typer.Option("--data", "-d", help="A prepared cache: multi-site with --train, any "
                                       "without.")],
    train: Annotated[str | None, typer.Option(
        "--train", help="The training site (one cross-site row), or all: every site trains a row, and the summary "
        "adds the whole matrix (per seed the mean over rows of their other-site means). Without it each study is a "
        "cross-validation of --data (the recipe's eval.folds), paired by seed and fold.", show_default=False)] = None,
    test: Annotated[list[Path] | None, typer.Option(
        "--test", help="Without --train: another prepared cache every fold's model is scored on whole (e.g. a "
        "cohort whose cue goes the other way); repeat for more. They are the summary's other sites.",
        show_default=False)] = None,
    recipe: RecipeOpt = None,
    variant: Annotated[list[str] | None, typer.Option(
        "--variant", help="NAME:key=value[,key=value], recipe overrides; repeat for more. The recipe as it is and "
        "its baseline (ppi.enabled=false) always run.", show_default=False)] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="key=value, a recipe override of every variant and the baseline; repeat for more.",
        show_default=False)] = None,
    seeds: Annotated[str, typer.Option("--seeds", help="Seeds, '0-4' or '0,1,2'; each seed fixes the hold-out, "
                                       "initialisation and batches of every variant alike.")] = "0-4",
    workers: Annotated[int, typer.Option("--workers", min=1, help="Studies side by side, one process and one "
                                         "thread each.")] = 1,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Sweep folder (default: a new run folder in the "
                                             "workspace); finished studies in it are skipped.",
                                             show_default=False)] = None,
    twin: Annotated[Path | None, typer.Option(
        "--twin", help="A twin of --data: the same rows prepared from data without the cue at the training site "
        "(ppi synth ga or lidc with the same options and seed, and --shortcut none or --correlation D=0). Adds "
        "the 'ceiling' row: the baseline trained on the twin and tested on --data, what a model that never leant "
        "on the cue gets; with --train SITE also cue_effect.csv, what the cue does to each kept model's logit per "
        "site (the images that differ between the two caches). With --train all every row's ceiling trains on the "
        "twin's site, so give a twin without the cue at any site (--shortcut none).", show_default=False)] = None,
    energy: Annotated[str | None, typer.Option(
        "--energy", help="A saliency method (wbp, gradient, gradcam): also measure each kept model's energy inside "
        "the lesion, the share of its map's positive part inside the expert masks of --data's masked samples (ppi "
        "segment-eval's energy pointing game, all points), paired with the baseline like the AUCs: energy.csv, "
        "energy_summary.csv and a table in summary.md. --data must hold masks.", show_default=False)] = None,
    device: DeviceOpt = "auto",
    workspace: WorkspaceOpt = None,
) -> None:
    """Train the recipe, its variants and its baseline over seeds, on one site or cross-validated: paired ΔAUC.

    Writes runs.csv, summary.csv and summary.md (with --energy also energy.csv and energy_summary.csv);
    docs/ppi.md's shortcut tables came from it.
    """
    from ppi_cli.console import log, paths, stdout
    from ppi_cli.engine.sweep import SweepConfig, SweepVariant, parse_seeds, parse_variant, run_sweep
    from ppi_cli.workspace import Workspace

    recipe_ref = recipe or "ga-ppi-wbp-cpu"
    if recipe is None:
        log(f"recipe: {recipe_ref} (the default of ppi sweep; choose another with --recipe)")
    variants = (SweepVariant(Path(recipe_ref).stem), *(parse_variant(v) for v in variant or []))
    folder = out or Workspace.resolve(workspace).new_run("sweep", "ga" if train else data.name, Path(recipe_ref).stem)
    common = parse_variant("set:" + ",".join(set_ or [])).overrides
    outcome = run_sweep(SweepConfig(recipe_ref, data, folder, train, variants, parse_seeds(seeds), workers, device,
                                    common, twin, tuple(test or ()), energy=energy))
    from rich.markdown import Markdown

    stdout.print(Markdown((outcome.out / "summary.md").read_text(encoding="utf-8")))
    paths(read=[data, *([twin] if twin else []), *(test or [])], wrote=outcome.written)


def register(app: typer.Typer) -> None:
    """Attach `sweep` to the root app."""
    app.command("sweep")(sweep_cmd)
