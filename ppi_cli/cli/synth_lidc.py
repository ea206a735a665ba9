# SPDX-License-Identifier: MIT
"""`ppi synth lidc`: a synthetic TCIA-style LIDC-IDRI download with an answer key."""

from __future__ import annotations

from typing import Annotated

import typer

from ppi_cli.cli.options import DiffuseOpt, OutOpt, WorkspaceOpt

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
    shortcut: Annotated[str, typer.Option("--shortcut", help="A spurious cue planted per CT slice: 'mark' (a bright "
                                          "square above each outlined nodule), 'diffuse' (over the whole slice, see "
                                          "--diffuse) or 'none'.")] = "none",
    diffuse: DiffuseOpt = "ramp",
    correlation: Annotated[float | None, typer.Option("--correlation", min=-1.0, max=1.0, help="Cue-label "
                                                      "correlation r of the shortcut: P(cue | positive slice) = "
                                                      "(1+r)/2, P(cue | negative slice) = (1-r)/2 (default 0.9).",
                                                      show_default=False)] = None,
    lesion_strength: Annotated[float, typer.Option("--lesion-strength", min=0.0, help="Nodule contrast against the "
                                                   "lung, 1 = default; smaller makes nodules harder to see than the "
                                                   "cue (readers and labels do not change).")] = 1.0,
    reader_agreement: Annotated[float | None, typer.Option("--reader-agreement", min=0.0, max=1.0, help="How far "
                                                           "the four readers agree: 0 = each draws its misses and "
                                                           "its smallest outlined cross-section; 1 = ranked "
                                                           "readers, so the label follows from the nodule's size "
                                                           "and contrast on the slice. Default: 1 with --shortcut "
                                                           "mark or diffuse, 0 without.",
                                                           show_default=False)] = None,
) -> None:
    """Write CT series with nodules, four simulated readers' XML and answer_key.csv (NBIA layout)."""
    # Imported here, not at the top: `ppi --help` imports every verb module (cli/main.py).
    from ppi_cli import console
    from ppi_cli.data.synth.lidc import SynthLidcConfig, synth_lidc
    from ppi_cli.workspace import Workspace

    config = SynthLidcConfig(out=out or Workspace.resolve(workspace).synth("lidc"), patients=patients, size=size,
                             slices=slices, seed=seed, shortcut=shortcut, diffuse=diffuse, correlation=correlation,
                             lesion_strength=lesion_strength, reader_agreement=reader_agreement)
    result = synth_lidc(config)
    console.stdout.print(f"{result.patients} patients, {result.slices} CT slices, {result.samples} samples "
                         f"({result.positives} positive) in {result.root}")
    if config.shortcut != "none":
        console.stdout.print(f"cue ({config.cue_form()}) on the slices of {result.cued} samples: "
                             f"{result.cue_given_positive:.0%} of the positive, {result.cue_given_negative:.0%} of "
                             "the negative")
    console.stdout.print(f"next: ppi prepare lidc --root {result.root}")
    console.paths(wrote=[result.root, result.answer_key])


def register(group: typer.Typer) -> None:
    """Attach `lidc` to the `synth` group."""
    group.command("lidc")(synth_lidc_cmd)
