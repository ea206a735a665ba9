# SPDX-License-Identifier: MIT
"""`ppi bench train`: time and peak memory of the plain step against the PPI step, in one run."""

from __future__ import annotations

from typing import Annotated

import typer

from ppi_cli.cli.options import DeviceOpt

__all__ = ["register", "bench_train_cmd"]


def bench_train_cmd(
    model: Annotated[str, typer.Option("--model", "-m", help="Model to measure: vgg11, vgg11_bn, inception_v3 "
                                       "or tiny.")] = "vgg11",
    batch: Annotated[int, typer.Option("--batch", "-b", min=2, help="Images per step.")] = 8,
    size: Annotated[int | None, typer.Option("--size", min=8, help="Image side (default: the network's input "
                                             "size, 224 for VGG, 299 for Inception).", show_default=False)] = None,
    classes: Annotated[int, typer.Option("--classes", min=1, help="Outputs (1 = binary head).")] = 1,
    saliency: Annotated[str, typer.Option("--saliency", help="Saliency method of the PPI step.")] = "wbp",
    contrast_on: Annotated[str, typer.Option("--contrast-on", help="Rows L_con masks: all (every image, the most "
                                             "work) or positives (the binary recipes' default).")] = "all",
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Timed rounds (after one warm-up round); "
                                        "the median time is reported; peak memory from a separate round.")] = 3,
    profile: Annotated[bool, typer.Option("--profile", help="Instead of timing, list the operators the PPI step "
                                          "(create_graph) spends its time in (torch.profiler).")] = False,
    reference: Annotated[bool, typer.Option("--reference", help="Also time the straightforward, unoptimised PPI "
                                            "step (shared clean forward, one backward) for comparison.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    device: DeviceOpt = "cpu",
) -> None:
    """Measure the plain training step and the PPI step (create_graph on and off) side by side."""
    import json

    from rich.table import Table

    from ppi_cli import console
    from ppi_cli.engine.bench_train import BenchConfig, bench_train, profile_step

    if contrast_on not in ("all", "positives"):
        raise typer.BadParameter(f"'{contrast_on}' is not all or positives", param_hint="--contrast-on")
    cfg = BenchConfig(model=model, batch=batch, size=size, classes=classes, saliency=saliency, rounds=rounds,
                      device=device, contrast_on=contrast_on, reference=reference)
    if profile:
        rows = profile_step(cfg)
        if json_:
            typer.echo(json.dumps(rows, indent=2))
        else:
            table = Table("operator", "calls", "self ms", "share", box=None, pad_edge=False)
            for r in rows:
                table.add_row(r["op"], str(r["calls"]), f"{r['self_ms']:.1f}", f"{r['share']:.1%}")
            console.stdout.print(table)
        console.paths()
        return
    result = bench_train(cfg)
    if json_:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        title = (f"{model}, batch {batch}, L_con on {contrast_on}, {result.device}, {result.threads} threads, "
                 f"median of {rounds}")
        table = Table("step", "seconds", "× plain", "peak MiB", "× plain", box=None, pad_edge=False, title=title)
        for s in result.steps:
            table.add_row(s.step, f"{s.seconds:.3f}", f"{result.ratio(s.step):.2f}", f"{s.peak_mb:.0f}",
                          f"{result.ratio(s.step, 'peak_mb'):.2f}")
        console.stdout.print(table)
        console.log(f"memory: {result.memory_method}")
    console.paths()


def register(group: typer.Typer) -> None:
    """Add `train` to the `bench` group."""
    group.command("train")(bench_train_cmd)
