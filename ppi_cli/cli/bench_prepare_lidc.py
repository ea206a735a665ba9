# SPDX-License-Identifier: MIT
"""`ppi bench prepare-lidc`: samples per second of our LIDC preparation against pylidc-style volume loading."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register", "bench_prepare_lidc_cmd"]


def bench_prepare_lidc_cmd(
    *,
    root: Annotated[Path | None, typer.Option("--root", help="A LIDC-IDRI download to measure on (default: a "
                                              "synthetic one generated in a temporary folder).",
                                              show_default=False)] = None,
    patients: Annotated[int, typer.Option("--patients", min=1, help="Synthetic patients, one CT series each.")] = 3,
    size: Annotated[int, typer.Option("--size", min=32, help="Synthetic slice side in pixels (LIDC: 512).")] = 512,
    slices: Annotated[int, typer.Option("--slices", min=8, help="Synthetic slices per series (LIDC averages 240).")
                      ] = 200,
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Runs of each pipeline; the fastest counts.")] = 3,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic data.")] = 0,
    csv: Annotated[Path | None, typer.Option("--csv", help="Also write the timings to this CSV file.",
                                             show_default=False)] = None,
) -> None:
    """Time `ppi prepare lidc` against loading every slice into a volume as pylidc's to_volume does."""
    # Imported here, not at the top: `ppi --help` imports every verb module (cli/main.py).
    from ppi_cli import console
    from ppi_cli.bench.prepare_lidc import LidcBenchConfig, bench_prepare_lidc

    result = bench_prepare_lidc(LidcBenchConfig(root=root, patients=patients, size=size, slices=slices,
                                                repeats=repeats, seed=seed))
    console.stdout.print(result)
    wrote = []
    if csv is not None:
        import pandas as pd

        from ppi_cli.files import write_csv

        frame = pd.DataFrame(result.rows).assign(speedup=result.speedup, identical=result.identical,
                                                 series=result.series, slices=result.slices, machine=result.machine)
        wrote.append(write_csv(csv, frame))
    console.paths(read=[root] if root else [], wrote=wrote)


def register(group: typer.Typer) -> None:
    """Attach `prepare-lidc` to the `bench` group."""
    group.command("prepare-lidc")(bench_prepare_lidc_cmd)
