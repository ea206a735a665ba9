# SPDX-License-Identifier: MIT
"""`ppi demo`: the whole study on generated data (≤ 10 minutes on 2 CPU cores), ending in REPORT.md."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ppi_cli.cli.options import DeviceOpt

__all__ = ["register"]


def demo_cmd(
    *,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the demo's data, runs, models and "
                                      "REPORT.md; a re-run resumes in it.")] = Path("ppi-demo"),
    seed: Annotated[int, typer.Option("--seed", help="Seed of the generated data, the folds and the training.")] = 0,
    workers: Annotated[int, typer.Option("--workers", "-j", min=0, help="Training processes side by side, one "
                                         "thread each (0 trains in this process).")] = 2,
    device: DeviceOpt = "auto",
) -> None:
    """Synthesise LIDC and GA data, cross-validate baseline vs PPI+WBP, build the A-D matrix, write REPORT.md."""
    # Imported here, not at the top: `ppi --help` imports every verb module (cli/main.py).
    from ppi_cli.console import paths, stdout
    from ppi_cli.engine.demo import DemoConfig, run_demo

    result = run_demo(DemoConfig(out=out, seed=seed, device=device, workers=workers))
    for name, headline in result.headlines.items():
        stdout.print(f"{name:<16} {headline}")
    stdout.print(f"report: {result.report} ({result.seconds / 60:.1f} min)")
    paths(wrote=result.written)


def register(app: typer.Typer) -> None:
    """Attach `demo` to the root app."""
    app.command("demo")(demo_cmd)
