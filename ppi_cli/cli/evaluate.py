# SPDX-License-Identifier: MIT
"""`ppi evaluate`: predictions on an external labelled set against its labels (AUC, operating point, calibration)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ppi_cli.cli.options import OutOpt

__all__ = ["register", "evaluate_cmd"]


def evaluate_cmd(
    predictions: Annotated[Path, typer.Argument(metavar="PREDICTIONS", help="The predictions.csv written by "
                                                "`ppi predict`.", show_default=False)],
    *,
    labels: Annotated[Path | None, typer.Option("--labels", help="A CSV with `path` and `label` columns naming "
                                                "scans as predictions.csv does (a GA manifest or a cache's "
                                                "manifest.csv will do); default: the predictions' own label "
                                                "column.", show_default=False)] = None,
    out: OutOpt = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=0, help="Resamples of the AUC's bootstrap interval "
                                           "(0 skips it).")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON instead of a table.")] = False,
) -> None:
    """Evaluate predictions on a labelled set: AUC (DeLong and bootstrap), sensitivity/specificity, calibration."""
    # Imported here, not at the top: `ppi --help` imports every verb module (cli/main.py).
    from ppi_cli import console
    from ppi_cli.engine.external import EvaluateConfig, run_evaluate

    result = run_evaluate(EvaluateConfig(predictions=predictions, labels=labels, out=out, bootstrap=bootstrap,
                                         seed=seed))
    if json_out:
        from ppi_cli.files import json_text

        typer.echo(json_text(result.to_dict()))
    else:
        console.stdout.print(result)
    console.paths(read=[p for p in (predictions, labels) if p is not None], wrote=result.wrote)


def register(app: typer.Typer) -> None:
    """Attach `evaluate` to the root app."""
    app.command("evaluate")(evaluate_cmd)
