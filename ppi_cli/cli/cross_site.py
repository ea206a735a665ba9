# SPDX-License-Identifier: MIT
"""`ppi cross-site`: the A–D matrix of the paper's Table 3, cell by cell or all at once."""

from __future__ import annotations

from typing import Annotated

import typer

from ppi_cli.cli.options import DataOpt, DatasetOpt, DeviceOpt, OutOpt, RecipeOpt, SeedOpt, VerifyOpt, WorkspaceOpt

__all__ = ["register"]


def cross_site_cmd(
    *,
    train: Annotated[str | None, typer.Option("--train", help="Training site(s), comma-separated, or 'all' for "
                                              "the full matrix.", show_default=False)] = None,
    test: Annotated[str | None, typer.Option("--test", help="Test sites, comma-separated (default: every site); "
                                             "the training site's own hold-out always runs.",
                                             show_default=False)] = None,
    recipe: RecipeOpt = None,
    data: DataOpt = None,
    dataset: DatasetOpt = None,
    out: OutOpt = None,
    baseline: Annotated[bool, typer.Option("--baseline", help="Also run the same recipe without PPI, for the "
                                           "two matrices side by side.")] = False,
    collect: Annotated[bool, typer.Option("--collect", help="Only merge the finished cells of --out (default: "
                                          "the latest cross-site run) into the tables.")] = False,
    seed: SeedOpt = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=0, help="Bootstrap resamples for the PPI vs "
                                           "baseline comparison.")] = 2000,
    device: DeviceOpt = "auto",
    workspace: WorkspaceOpt = None,
    verify: VerifyOpt = False,
    json_: Annotated[bool, typer.Option("--json", help="Print the matrices as JSON instead of tables.")] = False,
) -> None:
    """Train on one site and test on its hold-out and the other sites: the cross-site AUC matrix and the gap.

    Without --recipe and --data it uses the workspace's GA cache and the GA PPI+WBP recipe.
    """
    # Imported here, not at the top: `ppi --help` imports every verb module (cli/main.py).
    import json

    from ppi_cli.console import paths, stdout
    from ppi_cli.engine.cross_site import CrossSiteRequest, cross_site_study
    from ppi_cli.files import json_text
    from ppi_cli.reports.cross_site import reading_for_display

    outcome = cross_site_study(CrossSiteRequest(train=train, test=test, recipe=recipe, data=data, dataset=dataset,
                                                out=out, baseline=baseline, collect=collect, seed=seed,
                                                device=device, bootstrap=bootstrap, workspace=workspace, verify=verify))
    reading = outcome.reading
    if json_:
        payload = {"out": str(outcome.out), "cells_run": outcome.ran,
                   "matrices": {v: json.loads(m.to_json(orient="index")) for v, m in outcome.matrices.items()}}
        if reading is not None:
            payload["ppi_reading"] = {"rows": json.loads(reading[0].to_json(orient="records")),
                                      "summary": reading[1]}
        typer.echo(json_text(payload))
    else:
        from rich.table import Table

        from ppi_cli.reports.tables import format_value

        for variant, matrix in outcome.matrices.items():
            table = Table("train \\ test", *map(str, matrix.columns), title=f"cross-site AUC ({variant})", box=None,
                          pad_edge=False)
            for site, row in matrix.iterrows():
                table.add_row(str(site), *(format_value(v) for v in row))
            stdout.print(table)
        if reading is not None:
            rows, summary = reading_for_display(reading[0]), reading[1]
            table = Table(*map(str, rows.columns), title="did PPI help here? (PPI − baseline)", box=None,
                          pad_edge=False)
            for row in rows.itertuples(index=False):
                table.add_row(*(format_value(v) for v in row))
            stdout.print(table)
            stdout.print(summary)
    paths(read=[p for p in (data,) if p], wrote=outcome.written)


def register(app: typer.Typer) -> None:
    """Attach `cross-site` to the root app."""
    app.command("cross-site")(cross_site_cmd)
