# SPDX-License-Identifier: MIT
"""`ppi synth lidc`: a synthetic TCIA-style LIDC-IDRI download with an answer key."""

from __future__ import annotations

from typing import Annotated

import typer

from ppi_cli.cli.options import OutOpt, WorkspaceOpt

__all__ = ["register", "synth_lidc_cmd"]


def synth_lidc_cmd(
    *,
    out: OutOpt = None,
    workspace: WorkspaceOpt = None,
    patients: Annotated[int, typer.Option("--patients", min=1, help="Number of patients, one CT series each.")
                        ] = 3,
    size: Annotated[int, typer.Option("--size", min=32, help="Rows and columns of every CT slice.")] = 256,
    slices: Annotated[int, typer.Option("--slices", min=8, help="Slices per CT series.")] = 24,
    seed: Annotated[int, typer.Option("--seed", help="Seed of everything drawn.")] = 0,
) -> None:
    """Write CT series with nodules, four simulated readers' XML and answer_key.csv (NBIA layout)."""
    # Imported here, not at the top: `ppi --help` imports every verb module (cli/main.py).
    from ppi_cli import console
    from ppi_cli.data.synth.lidc import SynthLidcConfig, synth_lidc
    from ppi_cli.workspace import Workspace

    config = SynthLidcConfig(out=out or Workspace.resolve(workspace).synth("lidc"), patients=patients, size=size,
                             slices=slices, seed=seed)
    result = synth_lidc(config)
    console.stdout.print(f"{result.patients} patients, {result.slices} CT slices, {result.samples} samples "
                         f"({result.positives} positive) in {result.root}")
    console.stdout.print(f"next: ppi prepare lidc --root {result.root}")
    console.paths(wrote=[result.root, result.answer_key])


def register(group: typer.Typer) -> None:
    """Attach `lidc` to the `synth` group."""
    group.command("lidc")(synth_lidc_cmd)
