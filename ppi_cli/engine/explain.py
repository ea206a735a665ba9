# SPDX-License-Identifier: MIT
"""`ppi explain`: one prediction, its saliency overlay, a JSON record and optionally DICOM and NIfTI maps.

The checkpoint alone decides the preprocessing (see `explain_inputs`). For a 2D model the map is
taken with respect to the explained class (a binary head's single logit, else the predicted class);
for the GA multi-view model it is taken per B-scan with respect to the slice logit on the most
attended B-scans (paper appendix E.2; design.md "Saliency"). The map can also be written on the
input's own voxels for clinical viewers (`explain_export`). Nothing read from a DICOM header reaches
the PNG, the JSON, the NIfTI or the log: only the DICOM objects (secondary capture, Parametric Map,
Segmentation) carry the patient module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli import __version__
from ppi_cli.config.site import load_site_config, load_site_configs
from ppi_cli.data.explain_input import load_input
from ppi_cli.device import select_device
from ppi_cli.engine.evaluate import stored_threshold
from ppi_cli.engine.explain_export import (
    check_exports,
    dicom_sources,
    export_maps,
    image_source_map,
    volume_source_map,
)
from ppi_cli.engine.explain_inputs import InputSpec, prepare_image, prepare_volume
from ppi_cli.errors import ConfigError, DataError, ModelError
from ppi_cli.files import check_outputs, write_json
from ppi_cli.models import load_model
from ppi_cli.reports.dicom_maps import require_highdicom
from ppi_cli.reports.localisation import top_mass_bbox
from ppi_cli.reports.overlay import caption_text, render_image_overlay, render_volume_overlay
from ppi_cli.saliency import saliency_map

__all__ = ["ExplainConfig", "ExplainResult", "explain", "site_config", "TOP_PERCENT"]

TOP_PERCENT = 1.0  # the JSON's "where is the saliency mass": bounding box of the top 1 % of pixels


@dataclass(frozen=True)
class ExplainConfig:
    """What `ppi explain` was asked to do (one field per option)."""

    input: Path
    model: Path
    out: Path | None = None  # overlay PNG, or a folder for it; None: a new run folder in the workspace
    method: str = "wbp"
    json_out: Path | None = None
    dicom_out: Path | None = None  # secondary capture of the overlay
    nifti_out: Path | None = None  # the map on the input's voxel grid
    dicom_map: Path | None = None  # DICOM Parametric Map (highdicom)
    dicom_seg: Path | None = None  # DICOM Segmentation of the thresholded map (highdicom)
    seg_threshold: float = 0.5  # --dicom-seg: share of the map's positive maximum
    center: tuple[float, float] | None = None  # (row, col) in source pixels
    top_slices: int = 6  # montage size for volumes
    slice_index: int | None = None  # 2D models on a stack: which slice (None: the middle one)
    site: str | None = None  # GA: a site id of the bundled configs or a site YAML path
    device: str = "auto"
    workspace: Path | None = None


@dataclass
class ExplainResult:
    """The JSON record, the files written, and the maps and overlay layout for programmatic callers.

    `maps` holds the saliency drawn: key -1 for a 2D image's map, else the model B-scan index.
    """

    record: dict[str, Any]
    wrote: list[Path] = field(default_factory=list)
    maps: dict[int, np.ndarray] = field(default_factory=dict)
    layout: Any = None

    def to_dict(self) -> dict[str, Any]:
        """The record written with `--json` (no patient data)."""
        return self.record

    def __rich__(self) -> Any:
        from rich.table import Table

        table = Table(title="ppi explain", show_header=False)
        rec = self.record
        table.add_row("prediction", f"{rec['label']} (score {rec['score']:.3f})")
        if rec.get("threshold", {}).get("value") is not None and len(rec.get("classes", ())) == 2:
            table.add_row("threshold", f"{rec['threshold']['value']:.3f} ({rec['threshold']['source']})")
        table.add_row("method", rec["method"])
        table.add_row("model", rec["model"]["description"])
        if rec["kind"] == "volume":
            tops = ", ".join(f"{t['bscan']} ({t['attention']:.3f})" for t in rec["top_slices"])
            table.add_row("most attended B-scans", tops)
        else:
            box = rec["saliency"]["top_bbox_source_px"]
            if box:
                table.add_row("saliency mass (top 1 %)", f"rows {box['row_min']}-{box['row_max']}, "
                              f"cols {box['col_min']}-{box['col_max']} of the input")
        for note in rec["notes"]:
            table.add_row("note", note)
        return table


def explain(cfg: ExplainConfig) -> ExplainResult:
    """Predict, take the saliency map, and write the overlay (plus JSON / DICOM capture when asked).

    Raises:
        ConfigError: Bad option values (e.g. `--dicom-out` for a non-DICOM input, `--center` for a volume model).
        DataError / MissingExtraError: The input cannot be read.
        ModelError: The checkpoint is not usable.

    Example:
        >>> explain(ExplainConfig(Path("slice.dcm"), Path("best.pt"), Path("overlay.png"))).record["score"]
    """

    if cfg.top_slices < 1:
        raise ConfigError(f"--top-slices {cfg.top_slices}: must be at least 1", hint="--top-slices 6")
    check_exports(cfg.nifti_out, cfg.seg_threshold)
    for flag, path in (("--dicom-map", cfg.dicom_map), ("--dicom-seg", cfg.dicom_seg)):
        if path is not None:
            require_highdicom(flag)
    device = select_device(cfg.device)
    model, meta = load_model(cfg.model, device)
    spec = InputSpec.from_meta(meta, cfg.model)
    if spec.kind == "volume" and cfg.center is not None:
        raise ConfigError("--center applies to 2D models; this checkpoint explains OCT volumes",
                          hint="drop --center")
    loaded = load_input(cfg.input, "volume" if spec.kind == "volume" else "image", cfg.slice_index)
    if not np.isfinite(loaded.pixels).all():
        share = float(np.mean(~np.isfinite(loaded.pixels)))
        raise DataError(f"{cfg.input.name}: {share:.0%} of the pixels are NaN or infinite; no score can be given",
                        hint="explain a scan whose pixel values are all finite")
    for flag, path in (("--dicom-out", cfg.dicom_out), ("--dicom-map", cfg.dicom_map), ("--dicom-seg", cfg.dicom_seg)):
        if path is not None and loaded.header is None:
            raise ConfigError(f"{flag} needs a DICOM input (the object joins the input's study); {cfg.input} "
                              "is not DICOM", hint=f"drop {flag}")
    sources = dicom_sources(cfg, loaded)
    describe = _model_description(meta)
    threshold, threshold_note = stored_threshold(meta)
    cfg = replace(cfg, out=_overlay_path(cfg, spec.dataset, (meta.get("recipe") or {}).get("name") or "model"))
    site_file = Path(cfg.site) if cfg.site and Path(cfg.site).suffix.lower() in (".yaml", ".yml") else None
    check_outputs({"--out": cfg.out, "--json": cfg.json_out, "--dicom-out": cfg.dicom_out,
                   "--nifti-out": cfg.nifti_out, "--dicom-map": cfg.dicom_map, "--dicom-seg": cfg.dicom_seg},
                  {"the input": cfg.input, "the checkpoint (--model)": cfg.model,
                   "the site config (--site)": site_file})
    if spec.kind == "volume":
        record, label, maps, layout, prepared = _explain_volume(model, loaded, spec, cfg, device, describe, threshold)
    else:
        record, label, maps, layout, prepared = _explain_image(model, loaded, spec, cfg, device, describe, threshold)
    source = None
    if cfg.nifti_out is not None or cfg.dicom_map is not None or cfg.dicom_seg is not None:
        source = (volume_source_map(maps, prepared, loaded) if spec.kind == "volume"
                  else image_source_map(maps[-1], prepared.geometry, loaded))
        record["notes"].extend(source.notes)
        record["source_map"] = {"explained_slices": source.explained, "shape": list(source.grid.shape),
                                "seg_threshold": cfg.seg_threshold if cfg.dicom_seg is not None else None}
    if threshold_note:
        record["notes"].append(threshold_note)
    record.update({
        "threshold": {"value": threshold, "source": "default 0.5 (none stored)" if threshold_note
                      else meta["threshold"].get("source", "stored")},
        "toolkit_version": __version__, "method": cfg.method, "kind": spec.kind,
        "model": {"description": describe, "name": meta["model"].get("name"),
                  "recipe": (meta.get("recipe") or {}).get("name"), "checkpoint": cfg.model.name},
        "input": {"format": loaded.source, "modality": loaded.modality, "units": loaded.units,
                  "shape": list(loaded.pixels.shape), "slice_index": loaded.slice_index,
                  "n_slices": loaded.n_slices},
    })
    wrote = [cfg.out]
    if cfg.json_out is not None:
        write_json(cfg.json_out, record)
        wrote.append(cfg.json_out)
    if cfg.dicom_out is not None:
        from ppi_cli.reports.dicom_sc import read_png_rgb, write_secondary_capture

        description = (f"{cfg.method} saliency overlay of {describe}; {label} score "
                       f"{record['score']:.3f}; made by ppi {__version__}")
        write_secondary_capture(cfg.dicom_out, read_png_rgb(cfg.out), loaded.header, description)
        wrote.append(cfg.dicom_out)
    if source is not None:
        wrote += export_maps(cfg, source, sources, f"{cfg.method} saliency of {describe}; {label} score "
                             f"{record['score']:.3f}; ppi {__version__}")
    return ExplainResult(record, wrote, maps, layout)


def _explain_image(model, loaded, spec, cfg: ExplainConfig, device, describe: str, threshold: float) -> tuple:
    import torch

    prepared = prepare_image(loaded, spec, cfg.center)
    x = prepared.tensor[None].to(device)  # (1, C, S, S)
    with torch.no_grad():
        logits = model(x).float()  # (1, K)
    score, label, target = _decide(logits[0], spec.classes, threshold)
    saliency = saliency_map(model, x, target, method=cfg.method)[0, 0].float().cpu().numpy()  # (S, S)
    _refuse_non_finite(cfg, score, [saliency])
    box = top_mass_bbox(saliency, TOP_PERCENT)
    note = "; ".join(prepared.notes)
    caption: dict[str, Any] = dict(score=score, label=label, method=cfg.method, model=describe)
    layout = render_image_overlay(cfg.out, prepared.display, saliency, caption_text(**caption, note=note))
    record = {
        "score": score, "label": label, "classes": list(spec.classes),
        "explained_class": spec.classes[-1] if logits.numel() == 1 else label,
        "preprocessing": {"dataset": spec.dataset, "window": list(spec.window) if spec.window else None,
                          "spacing_mm": spec.spacing_mm, **prepared.record},
        "saliency": {"top_percent": TOP_PERCENT, "top_bbox_px": _box_dict(box),
                     "top_bbox_source_px": _box_dict(prepared.geometry.to_source(box) if box else None),
                     "positive_share": _positive_share(saliency)},
        "notes": prepared.notes,
    }
    return record, label, {-1: saliency}, layout, prepared


def _explain_volume(model, loaded, spec, cfg: ExplainConfig, device, describe: str, threshold: float) -> tuple:
    import torch

    prepared = prepare_volume(loaded, spec, site_config(cfg.site))
    x = prepared.tensor.to(device)  # (S, 1, H, W)
    with torch.no_grad():
        views = model.views(x[None], prepared.positions[None].to(device))
    attention = views.attention[0].float().cpu().numpy()  # (S,)
    slice_scores = torch.sigmoid(views.slice_logits[0].float()).cpu().numpy()  # (S,)
    score = float(views.probability[0])
    label = spec.classes[-1] if score >= threshold else spec.classes[0]
    top = [int(k) for k in np.argsort(-attention, kind="stable")[: min(cfg.top_slices, attention.size)]]
    maps = saliency_map(model.slice_classifier, x[top], 0, method=cfg.method)[:, 0].float().cpu().numpy()
    by_slice = {k: maps[i] for i, k in enumerate(top)}  # (H, W) per most attended B-scan
    _refuse_non_finite(cfg, score, [maps, attention, slice_scores])
    caption: dict[str, Any] = dict(score=score, label=label, method=cfg.method, model=describe)
    layout = render_volume_overlay(cfg.out, prepared.tensor[:, 0].numpy(), by_slice, attention, slice_scores,
                                   caption_text(**caption, note="; ".join(prepared.notes)),
                                   source_bscans=prepared.source_bscans)
    record = {
        "score": score, "label": label, "classes": list(spec.classes), "explained_class": spec.classes[-1],
        "attention": [round(float(a), 6) for a in attention],
        "slice_scores": [round(float(p), 6) for p in slice_scores],
        "top_slices": [{"bscan": k, "source_bscan": int(prepared.source_bscans[k]),
                        "attention": float(attention[k]), "slice_score": float(slice_scores[k]),
                        "top_bbox_px": _box_dict(top_mass_bbox(by_slice[k], TOP_PERCENT)),
                        "positive_share": _positive_share(by_slice[k])} for k in top],
        "preprocessing": {"dataset": spec.dataset, "n_bscans": spec.n_bscans, "bscan_size": list(spec.bscan_size),
                          **{k: v for k, v in prepared.record.items() if k != "orig_shape"}},
        "saliency": {"top_percent": TOP_PERCENT, "target": "slice logit"},
        "notes": prepared.notes,
    }
    return record, label, by_slice, layout, prepared


def _refuse_non_finite(cfg: ExplainConfig, score: float, arrays: list[np.ndarray]) -> None:
    """Never an overlay or JSON with NaN in it: refuse before anything is drawn."""
    if not math.isfinite(score) or not all(np.isfinite(a).all() for a in arrays):
        raise ModelError(f"{cfg.model.name}: the model gave a NaN score or saliency on {cfg.input.name}; "
                         "nothing was written",
                         hint="check the input's values and the checkpoint (a run whose loss stayed finite)")


def _overlay_path(cfg: ExplainConfig, dataset: str, recipe: str) -> Path:
    if cfg.out is None:
        from ppi_cli.workspace import Workspace

        return Workspace.resolve(cfg.workspace).new_run("explain", dataset, recipe) / "overlay.png"
    return cfg.out / "overlay.png" if cfg.out.is_dir() else cfg.out


def _decide(logits, classes: tuple[str, ...], threshold: float) -> tuple[float, str, int]:
    """Score, label and saliency target: a binary head explains its one logit (positive at the checkpoint's
    operating threshold); multi-class, the argmax."""
    import torch

    if logits.numel() == 1:
        score = float(torch.sigmoid(logits[0]))
        return score, classes[-1] if score >= threshold else classes[0], 0
    probs = torch.softmax(logits, dim=0)
    target = int(torch.argmax(probs))
    label = classes[target] if target < len(classes) else f"class {target}"
    return float(probs[target]), label, target


def site_config(site: str | None) -> Any:
    """`--site`: a bundled site id or a site YAML path to its config; None stays None.

    Raises:
        ConfigError: No such bundled site.
    """
    if site is None:
        return None

    path = Path(site)
    if path.suffix.lower() in (".yaml", ".yml"):
        return load_site_config(path)
    configs = load_site_configs()
    if site not in configs:
        raise ConfigError(f"--site {site}: no such bundled site config", hint=f"use one of: {', '.join(configs)} "
                          "or a path to a site YAML")
    return configs[site]


def _model_description(meta: dict[str, Any]) -> str:
    model = meta.get("model") or {}
    name = str(model.get("name", "?"))
    if name == "multiview":
        name = f"multiview/{model.get('backbone', '?')}"
    recipe = (meta.get("recipe") or {}).get("name")
    return f"{name} ({recipe})" if recipe else name


def _box_dict(box: list[tuple[int, int]] | None) -> dict[str, int] | None:
    if box is None:
        return None
    (r0, r1), (c0, c1) = box[-2:]
    return {"row_min": r0, "row_max": r1, "col_min": c0, "col_max": c1}


def _positive_share(saliency: np.ndarray) -> float:
    """Share of the map's absolute mass that is positive evidence (1 = all for the target)."""
    total = float(np.abs(saliency).sum())
    return float(np.clip(saliency, 0, None).sum() / total) if total > 0 and math.isfinite(total) else 0.0
