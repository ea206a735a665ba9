# SPDX-License-Identifier: MIT
"""Preprocessing for `ppi explain`, rebuilt from the checkpoint's meta alone.

The overlay must show what the model saw, so the window, pixel spacing, crop, size and channels
come from `meta["input"]` (written by `ppi train`), never from the command line. A 2D input is
brought to the training geometry (LIDC: HU resampled to the cache spacing, a crop around
`--center`, the HU window); a volume goes through the GA normalisation `prepare ga` used.
Every model pixel keeps its place in the source image (`Geometry`), so the JSON can say where on
the original slice the evidence lies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli.config.site import Intensity, SiteConfig
from ppi_cli.data.explain_input import LoadedInput, luma
from ppi_cli.data.ga.normalise import bscan_indices, normalise_volume, preprocess_volume
from ppi_cli.data.lidc.lesions import crop_grid, resample_image
from ppi_cli.data.oct.volume import to_uint8
from ppi_cli.errors import DataError, ModelError

__all__ = ["InputSpec", "Geometry", "PreparedImage", "PreparedVolume", "prepare_image", "prepare_volume"]


@dataclass(frozen=True)
class InputSpec:
    """`meta["input"]` of a checkpoint, checked (the layout `ppi train` writes)."""

    dataset: str
    kind: str  # "image" or "volume"
    channels: int = 1
    window: tuple[float, float] | None = None  # intensity window mapped to [0, 1] (HU for CT)
    crop: int | None = None  # side of the square patch the model was evaluated on
    input_size: int = 128
    spacing_mm: float | None = None  # in-plane pixel spacing of the training images
    n_bscans: int | None = None
    bscan_size: tuple[int, int] | None = None
    classes: tuple[str, ...] = ("negative", "positive")

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], path: Path) -> InputSpec:
        """Read and check a checkpoint's meta.

        Raises:
            ModelError: A key explain needs is missing or malformed; the message names it.
        """
        spec = meta.get("input")
        if not isinstance(spec, Mapping):
            raise ModelError(f"{path}: checkpoint meta has no 'input' section, so its preprocessing is unknown",
                             hint="use a checkpoint written by `ppi train`")
        try:
            kind = str(spec["kind"])
            window = spec.get("window")
            bscan = spec.get("bscan_size")
            out = cls(
                dataset=str(spec["dataset"]), kind=kind, channels=int(spec.get("channels") or 1),
                window=(float(window[0]), float(window[1])) if window is not None else None,
                crop=int(spec["crop"]) if spec.get("crop") else None,
                input_size=int(spec.get("input_size") or meta.get("model", {}).get("input_size") or 128),
                spacing_mm=_scalar_spacing(spec.get("spacing_mm")),
                n_bscans=int(spec["n_bscans"]) if spec.get("n_bscans") else None,
                bscan_size=(int(bscan[0]), int(bscan[1])) if bscan else None,
                classes=tuple(str(c) for c in meta.get("classes") or ("negative", "positive")),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelError(f"{path}: checkpoint meta 'input' is malformed ({type(exc).__name__}: {exc})",
                             hint="use a checkpoint written by `ppi train`") from None
        if kind == "volume" and out.dataset == "synthetic" and not out.n_bscans:  # no cache: the recipe's task
            data = (meta.get("recipe") or {}).get("data") or {}
            side = int(data.get("crop") or out.input_size)
            out = replace(out, n_bscans=int(data.get("synthetic_slices") or 0) or None, bscan_size=(side, side))
        if kind not in ("image", "volume") or (kind == "volume" and not (out.n_bscans and out.bscan_size)):
            raise ModelError(f"{path}: checkpoint meta 'input' has kind={kind!r} without the geometry it needs",
                             hint="use a checkpoint written by `ppi train`")
        return out


@dataclass(frozen=True)
class Geometry:
    """Model pixel (i, j) sits at source pixel (row0 + i·row_step, col0 + j·col_step)."""

    row0: float
    col0: float
    row_step: float
    col_step: float
    source_shape: tuple[int, int]

    def to_source(self, box: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """A model-pixel `[(row_min, row_max), (col_min, col_max)]` box in source pixels, clipped to the image."""
        (r0, r1), (c0, c1) = box
        h, w = self.source_shape
        rows = sorted((self.row0 + r0 * self.row_step, self.row0 + r1 * self.row_step))
        cols = sorted((self.col0 + c0 * self.col_step, self.col0 + c1 * self.col_step))
        return [(_clip(rows[0], h), _clip(rows[1], h)), (_clip(cols[0], w), _clip(cols[1], w))]


@dataclass
class PreparedImage:
    """A 2D model input and how it was made."""

    tensor: Any  # torch (C, S, S) float32 in [0, 1]
    display: np.ndarray  # (S, S) grey or (S, S, 3) colour, what the overlay draws
    geometry: Geometry
    record: dict[str, Any]
    notes: list[str] = field(default_factory=list)


@dataclass
class PreparedVolume:
    """A volume model input and how it was made."""

    tensor: Any  # torch (S, 1, H, W) float32 in [0, 1]
    positions: Any  # torch (S,) int64
    source_bscans: np.ndarray  # (S,) source B-scan of each model B-scan
    record: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def prepare_image(loaded: LoadedInput, spec: InputSpec, center: tuple[float, float] | None = None) -> PreparedImage:
    """Bring a 2D input to the model's training geometry and intensities.

    Args:
        loaded: The input (`load_input(..., "image")`).
        spec: The checkpoint's input spec.
        center: `(row, col)` in source pixels: crop the training patch around it at the training
            spacing (LIDC: a nodule). None resizes the whole image to the patch size (with a note
            for CT models, whose patches are 64 mm wide).

    Raises:
        DataError: `center` lies outside the image.
    """
    import torch

    pixels, notes = loaded.pixels, list(loaded.notes)
    h, w = pixels.shape[:2]
    side = spec.crop or spec.input_size
    ct_model = spec.window is not None and spec.dataset == "lidc"
    step = _source_step(loaded, spec, notes) if center is not None else None
    if center is not None:
        r, c = center
        if not (0 <= r < h and 0 <= c < w):
            raise DataError(f"--center {r:g},{c:g} lies outside the {h}x{w} image",
                            hint=f"give ROW,COL within 0..{h - 1},0..{w - 1}")
        geo = Geometry(r - (side - 1) / 2 * step[0], c - (side - 1) / 2 * step[1], step[0], step[1], (h, w))
    else:
        geo = Geometry((h / side - 1) / 2, (w / side - 1) / 2, h / side, w / side, (h, w))
        if ct_model and (h, w) != (side, side):
            notes.append(f"whole {h}x{w} slice resized to {side}x{side} (no --center): the model was trained on "
                         f"{side}-pixel patches around nodules, so small lesions may be missed; pass --center ROW,COL")
    if loaded.units == "HU" and ct_model:
        from ppi_cli.data.lidc.dataset import preprocess_patch

        if center is not None and loaded.spacing_mm and spec.spacing_mm:
            hu = _lidc_grid(pixels, loaded, spec, center)
        else:
            hu = _sample(pixels, geo, side, min(spec.window[0], -1024.0))[..., 0]  # outside the scan is air
        image = preprocess_patch(hu, spec.window, side)[0].numpy()[..., None]  # the evaluation view, (S, S, 1)
        intensity = f"HU window [{spec.window[0]:g}, {spec.window[1]:g}] -> [0, 1]"
    else:
        unit, intensity = _unit_range(pixels)
        if ct_model:
            notes.append(f"input is not calibrated CT ({loaded.modality or loaded.source}): intensities scaled "
                         "min-max instead of the model's HU window")
        image = _sample(unit, geo, side, 0.0)
    image = _channels(image.astype(np.float32), spec.channels)
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))  # (C, S, S)
    display = image[..., 0] if image.shape[2] == 1 else image
    record = {"size": [side, side], "intensity": intensity, "center": list(center) if center else None,
              "source_step_px": [round(geo.row_step, 4), round(geo.col_step, 4)],
              "region_source_px": [[round(geo.row0, 1), round(geo.row0 + (side - 1) * geo.row_step, 1)],
                                   [round(geo.col0, 1), round(geo.col0 + (side - 1) * geo.col_step, 1)]]}
    return PreparedImage(tensor, display, geo, record, notes)


def prepare_volume(loaded: LoadedInput, spec: InputSpec, site_cfg: Any = None) -> PreparedVolume:
    """Normalise a volume as `prepare ga` does (intensity, padding, B-scan and in-plane resampling).

    Args:
        loaded: The input (`load_input(..., "volume")`), (S, H, W).
        spec: The checkpoint's input spec (`n_bscans`, `bscan_size`).
        site_cfg: The site config of the scan (padding and intensity rule); None applies the default
            intensity rule and no padding, with a note. Models of other data (the generated task)
            get no intensity rule at all, as in training.
    """

    notes = list(loaded.notes)
    raw, how = to_uint8(np.asarray(loaded.pixels))
    if how:
        notes.append(f"voxels: {how}")
    if spec.dataset != "ga":  # generated volumes were never intensity-normalised: resample only
        site_cfg = SiteConfig(site="none", intensity=Intensity(method="none"))
    elif site_cfg is None:
        notes.append("no --site given: default intensity rule and no padding")
    volume, record = normalise_volume(raw, site_cfg, spec.n_bscans, spec.bscan_size)
    tensor, positions = preprocess_volume(volume)
    return PreparedVolume(tensor, positions, bscan_indices(raw.shape[0], spec.n_bscans), record, notes)


def _lidc_grid(pixels: np.ndarray, loaded: LoadedInput, spec: InputSpec, center: tuple[float, float]) -> np.ndarray:
    """The patch around `center` sampled exactly as `prepare lidc` samples a lesion crop (HU, bilinear, air outside)."""

    rows, cols = crop_grid(center, (loaded.spacing_mm[-2], loaded.spacing_mm[-1]), spec.spacing_mm,
                           spec.crop or spec.input_size)
    return resample_image(pixels, rows, cols)


def _source_step(loaded: LoadedInput, spec: InputSpec, notes: list[str]) -> tuple[float, float]:
    """Source pixels per model pixel for a crop: training spacing / input spacing when both are known."""
    if spec.spacing_mm is None:
        return 1.0, 1.0
    if not loaded.spacing_mm:
        notes.append(f"the input has no pixel spacing: assumed the model's {spec.spacing_mm:g} mm")
        return 1.0, 1.0
    row_mm, col_mm = loaded.spacing_mm[-2:]
    return spec.spacing_mm / row_mm, spec.spacing_mm / col_mm


def _sample(pixels: np.ndarray, geo: Geometry, side: int, fill: float) -> np.ndarray:
    """Resample (H, W[, C]) onto the model grid with linear interpolation, smoothing first when shrinking."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    rows = geo.row0 + np.arange(side) * geo.row_step
    cols = geo.col0 + np.arange(side) * geo.col_step
    grid = np.meshgrid(rows, cols, indexing="ij")  # 2 x (S, S) source coordinates
    # Anti-aliasing: a Gaussian of about half the shrink factor before linear sampling.
    sigma = [max(0.0, (s - 1.0) / 2.0) for s in (geo.row_step, geo.col_step)]
    planes = pixels[..., None] if pixels.ndim == 2 else pixels
    out = []
    for k in range(planes.shape[2]):
        plane = planes[..., k].astype(np.float64)
        if max(sigma) > 0:
            plane = gaussian_filter(plane, sigma, mode="nearest")
        out.append(map_coordinates(plane, grid, order=1, mode="constant", cval=fill))
    return np.stack(out, axis=-1)  # (S, S, C)


def _unit_range(pixels: np.ndarray) -> tuple[np.ndarray, str]:
    """Uncalibrated intensities to [0, 1]: kept in [0, 1], 8-bit divided by 255, anything else min-max."""
    low, high = float(pixels.min()), float(pixels.max())
    if low >= 0 and high <= 1:
        return pixels.astype(np.float64), "already in [0, 1]"
    if low >= 0 and high <= 255 and np.array_equal(pixels, np.round(pixels)):
        return pixels / 255.0, "8-bit / 255"
    if high <= low:
        return np.zeros_like(pixels, dtype=np.float64), "flat image"
    return (pixels - low) / (high - low), f"min-max [{low:g}, {high:g}] -> [0, 1]"


def _channels(image: np.ndarray, channels: int) -> np.ndarray:
    """(S, S, C) with the model's channel count: colour to grey by BT.601 luma, grey repeated for colour models."""
    if image.shape[2] == channels:
        return image
    if channels == 1:
        return luma(image)[..., None]
    return np.repeat(image[..., :1], channels, axis=2)


def _scalar_spacing(value: Any) -> float | None:
    """In-plane spacing from meta: a number, or the in-plane (last) entry of a list."""
    if value in (None, "", 0):
        return None
    return float(value[-1] if isinstance(value, (list, tuple)) else value)


def _clip(value: float, size: int) -> int:
    return int(min(max(round(value), 0), size - 1))
