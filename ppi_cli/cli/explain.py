# SPDX-License-Identifier: MIT
"""`ppi explain`: a clinician's view of one prediction (overlay PNG, JSON, DICOM secondary capture) and the
map for clinical viewers (NIfTI on the input's grid, DICOM Parametric Map and Segmentation)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ppi_cli.cli.options import DeviceOpt, ModelOpt, OutOpt, WorkspaceOpt

__all__ = ["register", "explain_cmd", "parse_center"]


def explain_cmd(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="A DICOM file or series folder, NIfTI, Duke "
                                               ".mat, .npy, a PNG/TIFF image, or a folder of B-scan images.",
                                               show_default=False)],
    model: ModelOpt,
    *,
    out: OutOpt = None,
    method: Annotated[str, typer.Option("--method", help="Saliency method: wbp, gradient, gradcam or lrp-* "
                                        "(lrp needs the `lrp` extra).")] = "wbp",
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the result as JSON here (score, "
                                                   "label, method, attention, where the saliency lies; no patient "
                                                   "data).", show_default=False)] = None,
    dicom_out: Annotated[Path | None, typer.Option("--dicom-out", help="Also write the overlay as a DICOM "
                                                   "Secondary Capture in the input's study (DICOM inputs only).",
                                                   show_default=False)] = None,
    nifti_out: Annotated[Path | None, typer.Option("--nifti-out", help="Also write the saliency map as float32 "
                                                   "NIfTI (.nii or .nii.gz) on the input's voxel grid, to overlay "
                                                   "the input in 3D Slicer or ITK-SNAP.", show_default=False)] = None,
    dicom_map: Annotated[Path | None, typer.Option("--dicom-map", help="Also write the map as a DICOM Parametric "
                                                   "Map referencing the input's images (DICOM inputs; extra "
                                                   "`dicom-out`).", show_default=False)] = None,
    dicom_seg: Annotated[Path | None, typer.Option("--dicom-seg", help="Also write the map above --seg-threshold "
                                                   "as a DICOM Segmentation referencing the input's images (DICOM "
                                                   "inputs; extra `dicom-out`).", show_default=False)] = None,
    seg_threshold: Annotated[float, typer.Option("--seg-threshold", help="--dicom-seg: keep pixels at or above "
                                                 "this share of the map's maximum, in (0, 1].")] = 0.5,
    center: Annotated[str | None, typer.Option("--center", metavar="ROW,COL", help="2D models: explain the "
                                               "training-sized patch centred here (input pixels), e.g. a nodule; "
                                               "default: the whole image resized.", show_default=False)] = None,
    top_slices: Annotated[int, typer.Option("--top-slices", min=1, help="Volume models: how many of the most "
                                            "attended B-scans the montage shows.")] = 6,
    slice_index: Annotated[int | None, typer.Option("--slice", min=0, help="2D models on a stack (series, "
                                                    "multi-frame, volume file): the 0-based slice to explain; "
                                                    "default: the middle one.", show_default=False)] = None,
    site: Annotated[str | None, typer.Option("--site", help="Volume models: the scan's site config (a bundled "
                                             "site id such as D, or a site YAML) for padding and intensity.",
                                             show_default=False)] = None,
    device: DeviceOpt = "auto",
    workspace: WorkspaceOpt = None,
) -> None:
    """Explain one prediction: overlay PNG of the saliency on what the model saw, plus JSON, DICOM and NIfTI on
    request."""
    # Imported here, not at the top: `ppi --help` imports every verb module (cli/main.py).
    from ppi_cli import console
    from ppi_cli.engine.explain import ExplainConfig, explain

    cfg = ExplainConfig(input=input_path, model=model, out=out, method=method, json_out=json_path,
                        dicom_out=dicom_out, nifti_out=nifti_out, dicom_map=dicom_map, dicom_seg=dicom_seg,
                        seg_threshold=seg_threshold, center=parse_center(center), top_slices=top_slices,
                        slice_index=slice_index, site=site, device=device, workspace=workspace)
    result = explain(cfg)
    console.stdout.print(result)
    console.paths(read=[input_path, model], wrote=result.wrote)


def parse_center(value: str | None) -> tuple[float, float] | None:
    """`"120,88"` to `(120.0, 88.0)`; a usage error naming `--center` otherwise."""
    if value is None:
        return None
    parts = value.split(",")
    try:
        row, col = (float(p) for p in parts)
    except ValueError:
        raise typer.BadParameter(f"'{value}' is not ROW,COL (two numbers)", param_hint="--center") from None
    return row, col


def register(app: typer.Typer) -> None:
    """Attach `explain` to the root app."""
    app.command("explain")(explain_cmd)
