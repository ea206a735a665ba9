# SPDX-License-Identifier: MIT
"""`ppi compare RUN_A RUN_B`: paired AUC comparison of two runs on the same folds or cells."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]


def compare_cmd(
    run_a: Annotated[Path, typer.Argument(help="Run folder of model A (crossval, cross-site or train run).")],
    run_b: Annotated[Path, typer.Argument(help="Run folder of model B, evaluated on the same samples.")],
    *,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Folder for the comparison tables (default: "
                                             "RUN_A/compare-<name of RUN_B>).", show_default=False)] = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=0, help="Bootstrap resamples for the interval of "
                                           "the difference (0 skips it).")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap resamples.")] = 0,
    json_: Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of a table.")] = False,
) -> None:
    """Compare two runs sample by sample: the mean per-fold AUC difference (A − B) with a 95% t-interval.

    Predictions are paired by fold (or cross-site cell) and manifest row, so both runs must have been
    evaluated on the same split; DeLong's test and a bootstrap interval are given per fold or cell, never
    on predictions pooled over different models. Writes paired.csv/.md (the headline) and
    comparison.csv/.md (per part) into --out.
    """
    # Imported here, not at the top: `ppi --help` imports every verb module (cli/main.py).
    from ppi_cli.console import paths, stdout
    from ppi_cli.files import json_text
    from ppi_cli.reports.compare import compare_runs

    target = out or run_a / f"compare-{run_b.name}"
    result = compare_runs(run_a, run_b, target, n_boot=bootstrap, seed=seed)
    if json_:
        typer.echo(json_text(result.to_dict()))
    else:
        stdout.print(result)
        stdout.print(result.summary)
    paths(read=[run_a, run_b], wrote=result.written)


def register(app: typer.Typer) -> None:
    """Attach `compare` to the root app."""
    app.command("compare")(compare_cmd)
