# SPDX-License-Identifier: MIT
"""`ppi explain` maps for clinical viewers: the saliency brought back onto the input's own voxels.

The model sees a resized or cropped patch (2D models) or a normalised, padded and resampled stack
(volume models); a viewer overlays a map only when it sits on the grid of the scan it opens. So
the map is sampled back: model pixel (i, j) of a 2D input lies at `Geometry` (row0 + i·row_step,
col0 + j·col_step), and model B-scan k of a volume is source B-scan `source_bscans[k]`, resized from
the padded width with PIL's pixel-centre convention and the padding cut off again. Slices that
were not explained (the rest of a stack for a 2D model, the B-scans beyond `--top-slices`) hold 0,
and the exports say which slices carry a map.

Written from it: a float32 NIfTI on the input's grid (`--nifti-out`), a DICOM Parametric Map of the
signed map (`--dicom-map`) and a DICOM Segmentation of the map above a share of its maximum
(`--dicom-seg`). The DICOM objects go back to the PACS beside their source, so they carry its
patient and study (highdicom copies them); the NIfTI carries geometry and a description only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli.data.explain_input import LoadedInput, source_headers
from ppi_cli.data.voxel_grid import VoxelGrid, spacing_grid
from ppi_cli.engine.explain_inputs import Geometry, PreparedVolume
from ppi_cli.errors import ConfigError
from ppi_cli.reports.dicom_maps import write_parametric_map, write_segmentation
from ppi_cli.reports.nifti_map import write_nifti_map

__all__ = ["SourceMap", "image_source_map", "volume_source_map", "export_maps", "seg_mask", "check_exports",
           "dicom_sources"]


@dataclass
class SourceMap:
    """The saliency on the input's pixels: float32 (S, H, W) in stack order, 0 on slices not explained."""

    stack: np.ndarray
    explained: list[int]  # stack slices that carry a map, ascending
    grid: VoxelGrid  # where the input lies: the NIfTI's shape and affine
    notes: list[str] = field(default_factory=list)


def check_exports(nifti_out: Path | None, seg_threshold: float) -> None:
    """Refuse bad export options before anything is computed.

    Raises:
        ConfigError: `--nifti-out` without a NIfTI suffix, or `--seg-threshold` outside (0, 1].
    """
    if nifti_out is not None and not nifti_out.name.lower().endswith((".nii", ".nii.gz")):
        raise ConfigError(f"--nifti-out {nifti_out.name}: a NIfTI file name ends in .nii or .nii.gz",
                          hint=f"--nifti-out {nifti_out.with_suffix('').name}.nii.gz")
    if not 0.0 < seg_threshold <= 1.0:
        raise ConfigError(f"--seg-threshold {seg_threshold:g}: a share of the map's maximum, in (0, 1]",
                          hint="--seg-threshold 0.5")


def dicom_sources(cfg: Any, loaded: LoadedInput) -> list[Any] | None:
    """The source headers `--dicom-map`/`--dicom-seg` derive from, one per slice of the input's stack; None
    when neither is asked for. Checked before anything is written.

    Raises:
        ConfigError: A multi-frame source (its frames and the source instances would not pair).
    """
    if cfg.dicom_map is None and cfg.dicom_seg is None:
        return None
    headers = source_headers(cfg.input)
    slices = loaded.pixels.shape[0] if loaded.kind == "volume" else loaded.n_slices or 1
    if len(headers) != slices:
        flag = "--dicom-map" if cfg.dicom_map is not None else "--dicom-seg"
        raise ConfigError(f"{flag}: {cfg.input.name} is a multi-frame DICOM file; the map pairs each frame with "
                          "one single-frame source image", hint="use --nifti-out or --dicom-out for this input")
    return headers


def image_source_map(saliency: np.ndarray, geometry: Geometry, loaded: LoadedInput) -> SourceMap:
    """A 2D model's (S, S) map on the source image, on its slice of the stack it came from.

    Source pixels outside the model's patch (a `--center` crop) are 0; inside, the map is sampled
    linearly at the source pixel's place on the model grid, smoothed first where a source pixel
    spans several model pixels (so a one-pixel spike is spread, not skipped).
    """
    from scipy.ndimage import gaussian_filter, map_coordinates

    h, w = geometry.source_shape
    side_r, side_c = saliency.shape
    rows = (np.arange(h) - geometry.row0) / geometry.row_step  # (H,) model coordinate of each source row
    cols = (np.arange(w) - geometry.col0) / geometry.col_step  # (W,)
    grid = np.meshgrid(rows, cols, indexing="ij")  # 2 x (H, W)
    sigma = [max(0.0, (1.0 / abs(step) - 1.0) / 2.0) for step in (geometry.row_step, geometry.col_step)]
    smooth = gaussian_filter(saliency.astype(np.float64), sigma, mode="nearest") if max(sigma) > 0 else saliency
    plane = map_coordinates(np.asarray(smooth, dtype=np.float64), grid, order=1, mode="nearest")
    # (H, W): the source pixels the model's patch covers (to the outer edge of its border pixels)
    inside = ((rows >= -0.5) & (rows <= side_r - 0.5))[:, None] & ((cols >= -0.5) & (cols <= side_c - 0.5))[None, :]
    n = loaded.n_slices or 1
    index = loaded.slice_index or 0
    stack = np.zeros((n, h, w), dtype=np.float32)  # (S, H, W), the whole stack the slice came from
    stack[index] = np.where(inside, plane, 0.0)
    return _on_input_grid(stack, [index], loaded)


def volume_source_map(by_slice: dict[int, np.ndarray], prepared: PreparedVolume, loaded: LoadedInput) -> SourceMap:
    """A volume model's per-B-scan maps on the source B-scans they were computed from.

    The in-plane resize is undone on the padded width (PIL's bilinear resize maps pixel centres:
    source = (model + 0.5) · scale − 0.5), then the padding is cut off. When the model repeats a
    source B-scan (fewer stored than the model takes), the most attended copy's map is kept.
    """
    from scipy.ndimage import map_coordinates

    n, h, w = loaded.pixels.shape[:3]
    left = int(prepared.record.get("pad_left") or 0)
    padded_w = w + left + int(prepared.record.get("pad_right") or 0)
    stack = np.zeros((n, h, w), dtype=np.float32)
    explained: list[int] = []
    for k, saliency in by_slice.items():  # most attended first
        source = int(prepared.source_bscans[k])
        if source in explained:
            continue
        mh, mw = saliency.shape
        rows = (np.arange(h) + 0.5) * mh / h - 0.5  # (H,) model row of each source row
        cols = (np.arange(left, left + w) + 0.5) * mw / padded_w - 0.5  # (W,) the unpadded columns only
        grid = np.meshgrid(rows, cols, indexing="ij")  # 2 x (H, W)
        stack[source] = map_coordinates(saliency.astype(np.float64), grid, order=1, mode="nearest")
        explained.append(source)
    return _on_input_grid(stack, sorted(explained), loaded)


def seg_mask(source: SourceMap, threshold: float) -> np.ndarray:
    """The `--dicom-seg` mask: explained pixels at or above `threshold` × the map's positive maximum
    (nothing when the map holds no positive evidence)."""
    peak = float(source.stack.max(initial=0.0))
    if peak <= 0:
        return np.zeros(source.stack.shape, dtype=bool)
    return source.stack >= threshold * peak


def export_maps(cfg: Any, source: SourceMap, headers: list[Any] | None, description: str) -> list[Path]:
    """Write what `cfg` asks for (`nifti_out`, `dicom_map`, `dicom_seg`); return the paths written.

    Example:
        >>> export_maps(cfg, image_source_map(saliency, prepared.geometry, loaded), dicom_sources(cfg, loaded), "wbp")

    Args:
        cfg: The explain config.
        source: The map on the input's pixels.
        headers: `dicom_sources` of the input (None without DICOM maps).
        description: Method, model and score, for the files' descriptions.

    Raises:
        DataError / MissingExtraError: From the writers (highdicom refused the source, or is absent).
    """
    wrote: list[Path] = []
    if cfg.nifti_out is not None:
        write_nifti_map(cfg.nifti_out, _nifti_order(source.stack, source.grid), source.grid, description)
        wrote.append(cfg.nifti_out)
    if headers is None:
        return wrote
    used = [headers[k] for k in source.explained]
    if cfg.dicom_map is not None:
        write_parametric_map(cfg.dicom_map, source.stack[source.explained], used, description)
        wrote.append(cfg.dicom_map)
    if cfg.dicom_seg is not None:
        mask = seg_mask(source, cfg.seg_threshold)[source.explained]
        write_segmentation(cfg.dicom_seg, mask, used,
                           f"{description}; saliency >= {cfg.seg_threshold:g} x its maximum")
        wrote.append(cfg.dicom_seg)
    return wrote


def _on_input_grid(stack: np.ndarray, explained: list[int], loaded: LoadedInput) -> SourceMap:
    """The map with the input's grid when the input states one that fits, else a spacing-only grid and a note."""
    if loaded.grid is not None and _squeezed(loaded.grid.shape) == _squeezed(stack.shape[::-1]):
        return SourceMap(stack, explained, loaded.grid)
    shape = stack.shape[1:] if stack.shape[0] == 1 and loaded.n_slices is None else stack.shape
    spacing = loaded.spacing_mm
    if len(shape) == 3 and spacing and len(spacing) == 2:  # one slice of a stack: its step is unknown here
        spacing = (1.0, *spacing)
    grid = spacing_grid(tuple(shape), spacing)
    return SourceMap(stack, explained, grid, [grid.note])


def _nifti_order(stack: np.ndarray, grid: VoxelGrid) -> np.ndarray:
    """(S, H, W) numpy to the grid's (x, y, z) voxel order and shape ((W, H, S), or (W, H) for one image)."""
    return np.ascontiguousarray(stack.transpose(2, 1, 0)).reshape(grid.shape).astype(np.float32)


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(s for s in shape if s != 1)
