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
    adversarial_on: Annotated[str, typer.Option("--adversarial-on", help="Rows L_ad applies to: auto (the recipe "
                                                "default: the L_con rows, as α = 1 here), contrast or all (every "
                                                "image, more work).")] = "auto",
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Timed rounds (after one warm-up round); "
                                        "the median time is reported, and the range of each round's ratio to "
                                        "that round's plain step; peak memory from a separate round.")] = 3,
    profile: Annotated[bool, typer.Option("--profile", help="Instead of timing, profile the PPI step (create_graph): "
                                          "the operators it spends its time in and the time of each of its passes "
                                          "against the plain step (torch.profiler, median of --rounds).")] = False,
    no_graph: Annotated[bool, typer.Option("--no-graph", help="With --profile: the PPI step without "
                                           "create_graph.")] = False,
    reference: Annotated[bool, typer.Option("--reference", help="Also time the straightforward, unoptimised PPI "
                                            "step (shared clean forward, one backward) for comparison.")] = False,
    channels_last_cpu: Annotated[bool, typer.Option("--channels-last-cpu", help="channels_last on the CPU too, as "
                                                    "the recipe field schedule.channels_last_cpu.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    device: DeviceOpt = "cpu",
) -> None:
    """Measure the plain training step and the PPI step (create_graph on and off) side by side."""
    # Imported here, not at the top: `ppi --help` imports every verb module (cli/main.py).
    from rich.table import Table

    from ppi_cli import console
    from ppi_cli.bench.train import BenchConfig, bench_train, profile_step
    from ppi_cli.files import json_text

    if contrast_on not in ("all", "positives"):
        raise typer.BadParameter(f"'{contrast_on}' is not all or positives", param_hint="--contrast-on")
    if adversarial_on not in ("auto", "contrast", "all"):
        raise typer.BadParameter(f"'{adversarial_on}' is not auto, contrast or all", param_hint="--adversarial-on")
    cfg = BenchConfig(model=model, batch=batch, size=size, classes=classes, saliency=saliency, rounds=rounds,
                      device=device, contrast_on=contrast_on, adversarial_on=adversarial_on, reference=reference,
                      channels_last_cpu=channels_last_cpu)
    if profile:
        found = profile_step(cfg, "ppi no graph" if no_graph else "ppi create_graph")
        if json_:
            typer.echo(json_text(found))
        else:
            table = Table("operator", "calls", "self ms", "share", box=None, pad_edge=False,
                          title=f"{model}, {found['step']}: operators (last round)")
            for r in found["operators"]:
                table.add_row(r["op"], str(r["calls"]), f"{r['self_ms']:.1f}", f"{r['share']:.1%}")
            console.stdout.print(table)
            if found["phases"]:
                table = Table("pass", "calls", "ms", "× plain step", box=None, pad_edge=False,
                              title=f"{found['step']}: passes (median of {found['rounds']})")
                for r in found["phases"]:
                    table.add_row(r["phase"], str(r["calls"]), f"{r['ms']:.1f}", f"{r['x_plain']:.2f}")
                table.add_row("sum", "", f"{sum(r['ms'] for r in found['phases']):.1f}",
                              f"{sum(r['x_plain'] for r in found['phases']):.2f}")
                table.add_row("plain step", "", f"{found['plain_ms']:.1f}", "1.00")
                console.stdout.print(table)
        console.paths()
        return
    result = bench_train(cfg)
    if json_:
        typer.echo(json_text(result.to_dict()))
    else:
        title = (f"{model}, batch {batch}, L_con on {contrast_on}, L_ad on {adversarial_on}, {result.device}, "
                 f"{result.threads} threads, median of {rounds}")
        table = Table("step", "seconds", "images/s", "× plain", "rounds: × plain", "peak MiB", "× plain", box=None,
                      pad_edge=False, title=title)
        for s in result.steps:
            spread = result.round_ratios(s.step)
            table.add_row(s.step, f"{s.seconds:.3f}", f"{result.images_per_s(s.step):.1f}",
                          f"{result.ratio(s.step):.2f}", f"{min(spread):.2f}–{max(spread):.2f}", f"{s.peak_mb:.0f}",
                          f"{result.ratio(s.step, 'peak_mb'):.2f}")
        console.stdout.print(table)
        console.log(f"memory: {result.memory_method}")
    console.paths()


def register(group: typer.Typer) -> None:
    """Add `train` to the `bench` group."""
    group.command("train")(bench_train_cmd)
