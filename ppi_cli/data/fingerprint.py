# SPDX-License-Identifier: MIT
"""A prepared cache's fingerprint: what a recipe must agree with before the first epoch.

`prepare` writes `fingerprint.json` beside `cache.json` (through `write_cache_info`):

    {"kind": "lidc", "n": 412, "image_size": [180, 180], "spacing_mm": 0.5,
     "intensity": {"p01": -1000.0, "p50": -760.0, "p99": 210.0},
     "lesion": {"n": 412, "size_px": {"p25": 9, "p50": 14, "p75": 22}, "centre_offset_px": {"p50": 0.0, "p90": 1.4}},
     "labels": {"all": {"0": 250, "1": 162}}, "sites": {"na": {"0": 250, "1": 162}}}

Lesion sizes are the side of each lesion mask's bounding box (the union of the readers' outlines for
LIDC, of the B-scan masks for GA; at most 1024 samples, evenly spaced); the centre offset is how far
that box's centre lies from the image centre. Everything is read from the cache's own arrays, so a
cache made before fingerprints existed gets one computed on demand (`read_fingerprint`).
Intensities are sampled (at most 64 images).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli.files import write_json

__all__ = ["FINGERPRINT_FILE", "compute_fingerprint", "write_fingerprint", "read_fingerprint"]

FINGERPRINT_FILE = "fingerprint.json"
_IMAGE_FILES = ("images.npy", "volumes.npy")
_SAMPLE_IMAGES = 64  # images read for the intensity percentiles: enough for a 1 % tail, cheap on any cache
_SAMPLE_MASKS = 1024  # lesion masks measured, evenly spaced: a GA cache's full masks may be many GB


def _quantiles(values: np.ndarray, names: tuple[str, ...] = ("p25", "p50", "p75")) -> dict[str, float]:
    if values.size == 0:
        return {}
    return {name: round(float(np.percentile(values, int(name[1:]))), 3) for name in names}


def _lesion_boxes(masks: np.ndarray, image_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(sizes, centre offsets) in pixels of each sample's lesion bounding box; samples without a lesion skipped."""
    sizes, offsets = [], []
    height, width = image_shape[-2], image_shape[-1]
    for i in np.unique(np.linspace(0, len(masks) - 1, min(len(masks), _SAMPLE_MASKS)).astype(int)):
        union = np.asarray(masks[i]).reshape(-1, masks.shape[-2], masks.shape[-1]).any(axis=0)  # (H, W)
        rows, cols = np.flatnonzero(union.any(axis=1)), np.flatnonzero(union.any(axis=0))
        if rows.size == 0:
            continue
        sizes.append(max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1))
        centre = ((rows[0] + rows[-1]) / 2.0, (cols[0] + cols[-1]) / 2.0)
        offsets.append(float(np.hypot(centre[0] - (height - 1) / 2.0, centre[1] - (width - 1) / 2.0)))
    return np.asarray(sizes, dtype=np.float64), np.asarray(offsets, dtype=np.float64)


def _label_name(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return str(int(number)) if number.is_integer() else str(value)


def _counts(labels: Any) -> dict[str, int]:
    """Samples per label; a label that is no integer (refused when the cache is opened) is counted as written."""
    names = np.array([_label_name(v) for v in np.asarray(labels, dtype=object)], dtype=str)
    values, counts = np.unique(names, return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts, strict=True)}


def compute_fingerprint(folder: Path, kind: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The fingerprint of the cache in `folder` (see the module docstring), from its manifest and arrays."""
    import pandas as pd

    folder = Path(folder)
    params = params or {}
    manifest = pd.read_csv(folder / "manifest.csv", dtype={"site": str})
    labels = manifest["label"].to_numpy() if "label" in manifest.columns else np.zeros(0)
    sites = manifest["site"].fillna("na").astype(str) if "site" in manifest.columns else pd.Series(["na"] * len(labels))
    fingerprint: dict[str, Any] = {"kind": kind, "n": int(len(manifest)), "labels": {"all": _counts(labels)},
                                   "sites": {site: _counts(labels[(sites == site).to_numpy()])
                                             for site in sorted(set(sites))}}
    spacing = next((params[k] for k in ("spacing", "spacing_mm", "resample_mm") if params.get(k) is not None), None)
    fingerprint["spacing_mm"] = float(spacing) if isinstance(spacing, (int, float)) else None
    image_file = next((folder / name for name in _IMAGE_FILES if (folder / name).is_file()), None)
    if image_file is None:
        return fingerprint
    images = np.load(image_file, mmap_mode="r", allow_pickle=False)
    fingerprint["image_size"] = [int(s) for s in images.shape[1:]]
    if len(images):
        picks = np.unique(np.linspace(0, len(images) - 1, min(len(images), _SAMPLE_IMAGES)).astype(int))
        step = max(1, int(np.prod(images.shape[1:])) // 65536)  # at most ~64k values of a large volume
        sample = np.concatenate([np.asarray(images[i], dtype=np.float32).ravel()[::step] for i in picks])
        fingerprint["intensity"] = _quantiles(sample, ("p01", "p50", "p99"))
    if (folder / "masks.npy").is_file():
        masks = np.load(folder / "masks.npy", mmap_mode="r", allow_pickle=False)
        sizes, offsets = _lesion_boxes(masks, images.shape)
        fingerprint["lesion"] = {"n": int(sizes.size), "size_px": _quantiles(sizes),
                                 "centre_offset_px": _quantiles(offsets, ("p50", "p90"))}
    return fingerprint


def write_fingerprint(folder: Path, kind: str, params: dict[str, Any] | None = None) -> Path:
    """Compute the cache's fingerprint and write `fingerprint.json` atomically."""
    return write_json(Path(folder) / FINGERPRINT_FILE, compute_fingerprint(folder, kind, params))


def read_fingerprint(folder: Path | None, kind: str, params: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """`fingerprint.json` of a cache, computed on the fly for an older cache; None without a cache."""
    if folder is None:
        return None
    path = Path(folder) / FINGERPRINT_FILE
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return compute_fingerprint(Path(folder), kind, params)
