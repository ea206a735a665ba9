# SPDX-License-Identifier: MIT
"""Option aliases shared by every command, so one flag means one thing everywhere.

Verb modules import torch and the domain code inside their command functions, never at module
level, so `ppi --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = [
    "WorkspaceOpt", "DataOpt", "DatasetOpt", "OutOpt", "RecipeOpt", "SeedOpt", "DeviceOpt", "WorkersOpt", "StrictOpt",
    "ModelOpt", "DiffuseOpt", "parse_csv_list", "parse_site_values",
]

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", help="Workspace folder for inputs and outputs not given explicitly "
                 "(default: $PPI_WORKSPACE, else ./ppi-workspace).", show_default=False),
]
DataOpt = Annotated[
    Path | None,
    typer.Option("--data", help="Prepared cache folder (default: the workspace's cache for the dataset).",
                 show_default=False),
]
DatasetOpt = Annotated[
    str | None,
    typer.Option("--dataset", help="Which workspace cache to use when several exist: lidc, ga, folder or table.",
                 show_default=False),
]
OutOpt = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Output folder or file (default: a new folder under the workspace).",
                 show_default=False),
]
RecipeOpt = Annotated[
    str | None,
    typer.Option("--recipe", "-r", help="Recipe YAML path or bundled recipe name (see `ppi recipe list`).",
                 show_default=False),
]
SeedOpt = Annotated[
    int | None,
    typer.Option("--seed", help="Random seed; overrides the recipe's seed.", show_default=False),
]
DeviceOpt = Annotated[
    str,
    typer.Option("--device", help="Where to compute: auto (CUDA when present), cpu, cuda or cuda:N."),
]
WorkersOpt = Annotated[
    int,
    typer.Option("--workers", "-j", min=0, help="Parallel worker processes (0 = in this process)."),
]
DiffuseOpt = Annotated[
    str,
    typer.Option("--diffuse", help="The form of a diffuse cue: 'ramp' (a lateral ramp over the whole "
                 "image) or 'texture' (periodic column stripes)."),
]
VerifyOpt = Annotated[
    bool,
    typer.Option("--verify", help="Re-hash every cache file against cache.json before training (slow on large "
                 "caches; by default sizes and the manifest's hash are checked)."),
]
JsonOpt = Annotated[
    bool,
    typer.Option("--json", help="Print the summary as JSON instead of a table."),
]
StrictOpt = Annotated[
    bool,
    typer.Option("--strict", help="Stop at the first bad input instead of logging it to errors.csv."),
]


def parse_csv_list(value: str | None, option: str) -> list[str]:
    """Split `A,B,C` into items, rejecting empty items with a usage error naming the option."""
    if value is None:
        return []
    items = [v.strip() for v in value.split(",")]
    if any(not v for v in items):
        raise typer.BadParameter(f"'{value}' has an empty item", param_hint=option)
    return items


def parse_site_values(value: str | None, option: str) -> dict[str, float] | None:
    """Parse `D=0.9,C=-0.9` into `{"D": 0.9, "C": -0.9}`; a usage error naming the option on a bad item."""
    if value is None:
        return None
    parsed: dict[str, float] = {}
    for item in parse_csv_list(value, option):
        site, sep, number = item.partition("=")
        try:
            parsed[site.strip()] = float(number)
        except ValueError:
            sep = ""
        if not sep or not site.strip():
            raise typer.BadParameter(f"'{item}' is not SITE=NUMBER", param_hint=option)
    return parsed


ModelOpt = Annotated[
    Path,
    typer.Option("--model", "-m", help="A checkpoint written by `ppi train` (best.pt / last.pt); its meta decides "
                 "the preprocessing.", show_default=False, exists=False),
]
