# SPDX-License-Identifier: MIT
"""`ppi prepare ga`: a labels manifest of multi-site OCT volumes becomes the GA cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ppi_cli.cli.options import JsonOpt, StrictOpt, WorkersOpt, WorkspaceOpt

__all__ = ["register", "prepare_ga_cmd", "site_table"]


def prepare_ga_cmd(
    manifest: Annotated[Path, typer.Option("--manifest", "-m", help="Labels CSV with path, subject_id, eye, site "
                                           "and label columns; paths are relative to it.", show_default=False)],
    sites: Annotated[Path | None, typer.Option("--sites", help="Folder of site config YAMLs (default: a "
                                               "site_configs/ folder beside the manifest, else the bundled A-D).",
                                               show_default=False)] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Cache folder (default: <workspace>/cache/ga).",
                                             show_default=False)] = None,
    workspace: WorkspaceOpt = None,
    bscan_size: Annotated[str, typer.Option("--bscan-size", help="Cached B-scan size: N for NxN or HxW "
                                            "(299 is the Inception-v3 input of the paper).")] = "299",
    n_bscans: Annotated[int, typer.Option("--n-bscans", min=1, help="B-scans per cached volume (A2A: 100).")] = 100,
    workers: WorkersOpt = 0,
    strict: StrictOpt = False,
    allow_outside_root: Annotated[bool, typer.Option(
        "--allow-outside-root", help="Accept manifest paths outside the manifest's folder ('../', or absolute "
        "paths elsewhere); refused by default.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Read, normalise (per site config) and cache GA OCT volumes; resumes an interrupted run."""
    # Imported here, not at the top: `ppi --help` imports every verb module (cli/main.py).
    from ppi_cli import console
    from ppi_cli.data.ga.normalise import parse_bscan_size
    from ppi_cli.data.ga.prepare import GaPrepareConfig, prepare_ga
    from ppi_cli.workspace import Workspace

    cfg = GaPrepareConfig(
        manifest=manifest, out=out or Workspace.resolve(workspace).cache("ga"), sites=sites,
        bscan_size=parse_bscan_size(bscan_size), n_bscans=n_bscans, workers=workers, strict=strict,
        allow_outside_root=allow_outside_root,
    )
    result = prepare_ga(cfg)
    if json_out:
        from ppi_cli.files import json_text

        typer.echo(json_text(result.to_dict()))
    else:
        console.stdout.print(_table(result))
    if result.up_to_date:
        console.paths(read=[cfg.manifest, result.sites_dir, result.out])
    else:
        console.paths(read=[cfg.manifest, result.sites_dir], wrote=result.written)


def _table(result):
    title = f"GA cache {result.out}" + (" (up to date)" if result.up_to_date else "")
    return site_table(title, result.per_site, ("volumes", "GA"))


def site_table(title: str, per_site: dict[str, dict[str, int]], names: tuple[str, str]) -> Any:
    """The per-site summary of a prepared cache (`data.parts.per_site`), with an `all` row; `names` heads
    the volume and positive columns."""
    # Imported here, not at the top: `ppi --help` imports every verb module (cli/main.py).
    from rich.table import Table

    table = Table("site", *names, "errors", title=title, box=None, pad_edge=False)
    for site, counts in per_site.items():
        table.add_row(site, str(counts["volumes"]), str(counts["positives"]), str(counts["errors"]))
    table.add_row("all", *(str(sum(c[k] for c in per_site.values())) for k in ("volumes", "positives", "errors")),
                  style="bold")
    return table


def register(group: typer.Typer) -> None:
    """Attach `ga` to the `prepare` group."""
    group.command("ga")(prepare_ga_cmd)
