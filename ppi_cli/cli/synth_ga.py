# SPDX-License-Identifier: MIT
"""`ppi synth ga`: multi-site synthetic OCT volumes with GA lesions, a spurious cue and an answer key."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ppi_cli.cli.options import DiffuseOpt, JsonOpt, WorkspaceOpt, parse_csv_list, parse_site_values

__all__ = ["register", "synth_ga_cmd"]


def synth_ga_cmd(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Folder for the generated data (default: "
                                             "<workspace>/synth/ga).", show_default=False)] = None,
    workspace: WorkspaceOpt = None,
    sites: Annotated[str, typer.Option("--sites", help="Comma-separated sites to generate (A Duke .mat, B DICOM "
                                       "OPT, C NIfTI, D PNG folder with narrower B-scans).")] = "A,B,C,D",
    per_site: Annotated[int, typer.Option("--per-site", min=1, help="Volumes per site, half of them with GA.")] = 16,
    n_bscans: Annotated[int, typer.Option("--n-bscans", min=1, help="B-scans per volume.")] = 32,
    size: Annotated[str, typer.Option("--size", help="Full-width B-scan size HxW (N for NxN).")] = "128x256",
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same data.")] = 0,
    shortcut: Annotated[str, typer.Option("--shortcut", help="The planted spurious cue: 'mark' (a corner square as "
                                          "sparse as the lesion), 'diffuse' (over the whole B-scan, see --diffuse) "
                                          "or 'none'.")] = "mark",
    diffuse: DiffuseOpt = "ramp",
    correlation: Annotated[str | None, typer.Option("--correlation", help="Per-site cue-label correlation r in "
                                                    "[-1, 1], e.g. 'D=0.9,C=-0.9' (P(cue|GA) = (1+r)/2); sites not "
                                                    "named keep the shortcut's defaults.",
                                                    show_default=False)] = None,
    lesion_strength: Annotated[float, typer.Option("--lesion-strength", min=0.0, help="Lesion contrast, 1 = default; "
                                                   "smaller makes GA harder to see than the cue.")] = 1.0,
    json_out: JsonOpt = False,
) -> None:
    """Write OCT volumes in four real formats, their lesion masks, a manifest, an answer key and site configs."""
    # Imported here, not at the top: `ppi --help` imports every verb module (cli/main.py).
    from ppi_cli import console
    from ppi_cli.data.ga.normalise import parse_bscan_size
    from ppi_cli.data.synth.ga import SynthGaConfig, synth_ga
    from ppi_cli.workspace import Workspace

    cfg = SynthGaConfig(out=out or Workspace.resolve(workspace).synth("ga"), sites=tuple(parse_csv_list(sites,
                        "--sites")), per_site=per_site, n_bscans=n_bscans, size=parse_bscan_size(size), seed=seed,
                        shortcut=shortcut, diffuse=diffuse, correlation=parse_site_values(correlation, "--correlation"),
                        lesion_strength=lesion_strength)
    result = synth_ga(cfg)
    if json_out:
        from ppi_cli.files import json_text

        typer.echo(json_text(result.to_dict()))
    else:
        from rich.table import Table

        table = Table("site", "volumes", "GA", f"cue ({cfg.cue_form()})", title=f"synthetic GA data {result.out}",
                      box=None, pad_edge=False)
        for site, counts in result.per_site.items():
            table.add_row(site, str(counts["volumes"]), str(counts["positives"]), str(counts["cue"]))
        console.stdout.print(table)
    console.paths(wrote=[result.manifest, result.answer_key, result.site_configs])


def register(group: typer.Typer) -> None:
    """Attach `ga` to the `synth` group."""
    group.command("ga")(synth_ga_cmd)
