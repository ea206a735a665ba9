# SPDX-License-Identifier: MIT
"""`ppi predict`: score files, folders, manifests or caches with a checkpoint or a study's fold ensemble."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ppi_cli.cli.options import DeviceOpt, JsonOpt, OutOpt, WorkspaceOpt

__all__ = ["register", "predict_cmd"]


def predict_cmd(
    inputs: Annotated[list[Path], typer.Argument(metavar="PATH...", help="Scans to score: files, folders of them, "
                                                 "a manifest CSV with a `path` column (the GA manifest), or a "
                                                 "prepared cache.", show_default=False)],
    *,
    model: Annotated[list[Path], typer.Option("--model", "-m", help="A checkpoint, a training run folder (its "
                                              "best.pt) or a crossval study folder (every fold-*/best.pt, "
                                              "averaged); repeat to ensemble several.", show_default=False)],
    out: OutOpt = None,
    maps: Annotated[Path | None, typer.Option("--maps", help="Also write each input's saliency map as .npy into "
                                              "this folder (volumes: one map per B-scan).",
                                              show_default=False)] = None,
    method: Annotated[str, typer.Option("--method", help="Saliency method of --maps: wbp, gradient, gradcam or "
                                        "lrp-*.")] = "wbp",
    site: Annotated[str | None, typer.Option("--site", help="Volume models, inputs outside a manifest: the scans' "
                                             "site config (a bundled site id or a site YAML).",
                                             show_default=False)] = None,
    sites: Annotated[Path | None, typer.Option("--sites", help="Folder of site configs for manifest rows (default: "
                                               "site_configs/ beside the manifest, else the bundled ones).",
                                               show_default=False)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Samples per forward pass when scoring a "
                                            "prepared cache.")] = 16,
    device: DeviceOpt = "auto",
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Score many scans: predictions.csv with the score, the class at the stored threshold and the model ids."""
    # Imported here, not at the top: `ppi --help` imports every verb module (cli/main.py).
    from ppi_cli import console
    from ppi_cli.engine.predict import PredictConfig, run_predict

    cfg = PredictConfig(inputs=tuple(inputs), models=tuple(model), out=out, maps=maps, method=method, site=site,
                        sites=sites, batch_size=batch_size, device=device, workspace=workspace)
    result = run_predict(cfg)
    if json_out:
        from ppi_cli.files import json_text

        typer.echo(json_text(result.to_dict()))
    else:
        console.stdout.print(result)
    console.paths(read=[*inputs, *model], wrote=result.wrote)


def register(app: typer.Typer) -> None:
    """Attach `predict` to the root app."""
    app.command("predict")(predict_cmd)
