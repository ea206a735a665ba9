# SPDX-License-Identifier: MIT
"""`ppi bench saliency`: seconds per batch of each saliency method against the floor and other libraries."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ppi_cli.cli.options import DeviceOpt, parse_csv_list

__all__ = ["register"]


def saliency_cmd(
    *,
    model: Annotated[str, typer.Option("--model", help="Benchmark model: vgg11 or inception_v3 "
                                       "(torchvision, random weights).")] = "vgg11",
    batch: Annotated[int, typer.Option("--batch", min=1, help="Images per batch.")] = 8,
    device: DeviceOpt = "cpu",
    size: Annotated[int | None, typer.Option("--size", min=16, help="Input side in pixels (default: 224 for "
                                             "vgg11, 299 for inception_v3).", show_default=False)] = None,
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Timed rounds; the median is reported.")] = 5,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed rounds before the timed ones.")] = 1,
    methods: Annotated[str | None, typer.Option("--methods", help="Comma-separated methods of ours to time "
                                                "(default: all).", show_default=False)] = None,
    compare: Annotated[bool, typer.Option("--compare/--no-compare", help="Also time captum and zennit when "
                                          "installed.")] = True,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Folder to also write the table to as CSV, "
                                             "markdown and JSON (default: print only).", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of a table.")] = False,
) -> None:
    """Time every saliency method per batch, interleaved with the forward+backward floor, and print the ratios."""
    # Imported here, not at the top: `ppi --help` imports every verb module (cli/main.py).
    from rich.table import Table

    from ppi_cli import console
    from ppi_cli.bench.saliency import SaliencyBenchConfig, bench_saliency
    from ppi_cli.files import json_text, write_csv, write_json, write_text

    config = SaliencyBenchConfig(model=model, batch=batch, size=size, repeats=repeats, warmup=warmup,
                                 device=device, methods=tuple(parse_csv_list(methods, "--methods")), compare=compare)
    result = bench_saliency(config)
    rows = result.rows()
    if as_json:
        typer.echo(json_text(result.to_dict()))
    else:
        table = Table(title=f"{model}, batch {batch}: seconds per batch, median of {repeats}", box=None)
        table.add_column("method", no_wrap=True)
        table.add_column("source", no_wrap=True)
        for name in ("wall s", "× floor", "CPU s", "CPU × floor"):
            table.add_column(name, justify="right", no_wrap=True)
        table.add_column("note", overflow="fold")
        for row in rows:
            table.add_row(str(row["method"]), str(row["source"]), f"{row['wall_s']:.3f}", f"{row['wall_ratio']:.2f}",
                          f"{row['cpu_s']:.3f}", f"{row['cpu_ratio']:.2f}", str(row["note"]))
        console.stdout.print(table)
        console.stdout.print(", ".join(f"{k} {v}" for k, v in result.machine.items()))
    wrote = []
    if out is not None:
        import pandas as pd

        stem = f"saliency-bench-{model}-b{batch}"
        wrote = [write_csv(out / f"{stem}.csv", pd.DataFrame(rows)),
                 write_text(out / f"{stem}.md", result.to_markdown()),
                 write_json(out / f"{stem}.json", result.to_dict())]
    console.paths(wrote=wrote)


def register(group: typer.Typer) -> None:
    """Attach `saliency` to the `bench` group."""
    group.command("saliency")(saliency_cmd)
