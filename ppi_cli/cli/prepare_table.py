# SPDX-License-Identifier: MIT
"""`ppi prepare table`: a cohort CSV (DICOM, NIfTI, NRRD, MetaImage, pictures, .npy) becomes a `table` cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ppi_cli.cli.options import OutOpt, StrictOpt, WorkspaceOpt
from ppi_cli.cli.prepare_ga import site_table

__all__ = ["register", "prepare_table_cmd"]


def prepare_table_cmd(
    manifest: Annotated[Path, typer.Option("--manifest", "-m", help="Cohort CSV with path, subject_id and label "
                                           "columns (optional: site, mask_path, split, sample_id); paths are "
                                           "relative to it.", show_default=False)],
    out: OutOpt = None,
    workspace: WorkspaceOpt = None,
    size: Annotated[int, typer.Option("--size", min=8, help="Side of the cached square slices: each slice is "
                                      "fitted by its physical extent (isotropic pixels) and padded.")] = 299,
    n_slices: Annotated[int, typer.Option("--n-slices", min=1, help="Slices kept per 3-D volume (evenly spaced, "
                                          "nearest); a 2-D image is one slice.")] = 16,
    window: Annotated[str | None, typer.Option("--window", help="Intensity window LOW,HIGH in the images' units "
                                               "(e.g. -1000,400 for CT in HU), mapped to 0..255. Default: each "
                                               "image's 0.5-99.5 percentiles.", show_default=False)] = None,
    percentiles: Annotated[str, typer.Option("--percentiles", help="LOW,HIGH percentiles of each image used as its "
                                             "window when --window is not given.")] = "0.5,99.5",
    strict: StrictOpt = False,
) -> None:
    """Read, window, resample and cache a hospital cohort listed in a CSV; bad rows go to errors.csv."""
    # Imported here, not at the top: `ppi --help` imports every verb module (cli/main.py).
    from ppi_cli import console
    from ppi_cli.data.table.normalise import parse_window
    from ppi_cli.data.table.prepare import TablePrepareConfig, prepare_table
    from ppi_cli.errors import ConfigError
    from ppi_cli.workspace import Workspace

    cuts = parse_window(percentiles, "--percentiles")
    if cuts is None or not (0 <= cuts[0] and cuts[1] <= 100):
        raise ConfigError(f"--percentiles {percentiles}: two numbers between 0 and 100", hint="--percentiles 0.5,99.5")
    cfg = TablePrepareConfig(manifest=manifest, out=out or Workspace.resolve(workspace).cache("table"), size=size,
                             n_slices=n_slices, window=parse_window(window), percentiles=cuts, strict=strict)
    result = prepare_table(cfg)
    console.stdout.print(_table(result))
    wrote = [] if result.up_to_date else result.written
    console.paths(read=[cfg.manifest] + ([result.out] if result.up_to_date else []), wrote=wrote)


def _table(result: Any) -> Any:
    title = (f"table cache {result.out}, {result.n_slices} slice(s) per sample"
             + (" (up to date)" if result.up_to_date else ""))
    return site_table(title, result.per_site, ("samples", "positive"))


def register(group: typer.Typer) -> None:
    """Attach `table` to the `prepare` group."""
    group.command("table")(prepare_table_cmd)
