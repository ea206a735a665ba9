# SPDX-License-Identifier: MIT
"""`ppi segment-eval`: localisation of saliency maps against expert masks, one column per method."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ppi_cli.cli.options import DataOpt, DeviceOpt, JsonOpt, ModelOpt, OutOpt, WorkspaceOpt, parse_csv_list

__all__ = ["register", "segment_eval_cmd"]


def segment_eval_cmd(
    model: ModelOpt,
    *,
    data: DataOpt = None,
    out: OutOpt = None,
    methods: Annotated[str, typer.Option("--methods", help="Comma-separated saliency methods, one column each "
                                         "(wbp, gradient, gradcam, lrp-*).")] = "wbp,gradient,gradcam",
    compare: Annotated[Path | None, typer.Option("--compare", help="A second checkpoint scored on the same "
                                                 "samples, side by side (e.g. trained without PPI).",
                                                 show_default=False)] = None,
    top_percent: Annotated[float, typer.Option("--top-percent", help="Dice/IoU of the map's top N % pixels "
                                               "(besides the best threshold).")] = 5.0,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Score at most N masked samples (the first "
                                              "in the cache), for a quick look.", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Samples per saliency batch.")] = 16,
    gallery: Annotated[int, typer.Option("--gallery", min=0, help="Draw the first N masked samples in gallery.png "
                                         "(image, expert contour, each model's saliency); 0: none.")] = 4,
    device: DeviceOpt = "auto",
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Score how well saliency maps localise expert masks (energy pointing game, Dice/IoU, deletion curves)."""
    # Imported here, not at the top: `ppi --help` imports every verb module (cli/main.py).
    from ppi_cli import console
    from ppi_cli.engine.segment_eval import SegmentEvalConfig, segment_eval

    cfg = SegmentEvalConfig(model=model, compare=compare, data=data, out=out,
                            methods=tuple(parse_csv_list(methods, "--methods")), top_percent=top_percent,
                            limit=limit, batch_size=batch_size, device=device, workspace=workspace, gallery=gallery)
    result = segment_eval(cfg)
    if json_out:
        from ppi_cli.files import json_text

        typer.echo(json_text(result.to_dict()))
    else:
        console.stdout.print(result)
    console.paths(read=[p for p in (model, compare, result.cache) if p is not None], wrote=result.wrote)


def register(app: typer.Typer) -> None:
    """Attach `segment-eval` to the root app."""
    app.command("segment-eval")(segment_eval_cmd)
