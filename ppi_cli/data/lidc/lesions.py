# SPDX-License-Identifier: MIT
"""Reader outlines to lesions to samples: grouping, rasterising, resampling and cropping.

The protocol is Kohl et al.'s "LIDC 2D crops" (data-protocols.md A.1a): outlines from different
readers are one lesion when their tightest 3D bounding boxes overlap; every axial slice on which
at least one reader outlined the lesion is one sample; the slice is resampled in-plane to a fixed
spacing and cropped around the lesion's centroid, the same centre on every slice of the lesion;
each reader's mask comes along. Pure array code: no files are read here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ppi_cli.data.lidc.reader_xml import Annotation

__all__ = ["MAX_READERS", "FILL_HU", "Lesion", "boxes_overlap", "group_lesions", "rasterize_polygon", "build_lesion",
           "crop_grid", "resample_image", "resample_mask"]

MAX_READERS = 4  # LIDC: four radiologists read every CT scan
FILL_HU = -1024  # HU written where a crop reaches past the image edge: air


def boxes_overlap(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two (row_min, row_max, col_min, col_max, z_min, z_max) boxes share a point (edges count)."""
    return all(a[2 * k] <= b[2 * k + 1] and b[2 * k] <= a[2 * k + 1] for k in range(3))


def group_lesions(annotations: Sequence[Annotation]) -> list[list[Annotation]]:
    """Group outlines into lesions: connected components of "3D bounding boxes overlap".

    Args:
        annotations: Every outline of one series, from any reader.

    Returns:
        Lesions, each a list of outlines in source order; lesions ordered by their box's (z, row, col) minimum.
    """
    boxes = [a.bbox() for a in annotations]
    parent = list(range(len(annotations)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            if boxes_overlap(boxes[i], boxes[j]):
                parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(annotations)):
        groups.setdefault(find(i), []).append(i)

    def start(members: list[int]) -> tuple[float, float, float]:
        return (min(boxes[i][4] for i in members), min(boxes[i][0] for i in members),
                min(boxes[i][2] for i in members))

    ordered = sorted(groups.values(), key=start)
    return [[annotations[i] for i in sorted(members, key=lambda i: annotations[i].order)] for members in ordered]


def rasterize_polygon(points: np.ndarray, origin: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """Fill one closed outline on a pixel window.

    The polygon is closed: a pixel belongs to the outline when its centre lies inside (even-odd
    rule) or on an edge, or when a vertex falls in it. LIDC edge maps are chains of boundary pixels,
    so the drawn boundary is kept on all sides alike and every outline, however small, covers at
    least one pixel.

    Args:
        points: (K, 2) vertices (row, col) in image pixel coordinates; the chain is closed implicitly.
        origin: (row, col) of the window's top-left pixel in the image.
        shape: (h, w) of the window.

    Returns:
        bool (h, w) mask.
    """
    h, w = shape
    rows = np.arange(h, dtype=np.float64)[:, None] + origin[0]  # (h, 1) pixel-centre rows
    cols = np.arange(w, dtype=np.float64)[None, :] + origin[1]  # (1, w)
    inside = np.zeros((h, w), dtype=bool)
    r0, c0 = points[:, 0], points[:, 1]
    r1, c1 = np.roll(r0, -1), np.roll(c0, -1)
    for ya, xa, yb, xb in zip(r0, c0, r1, c1, strict=True):
        if ya == yb:
            continue  # horizontal edges never cross a horizontal ray
        crosses = (rows >= min(ya, yb)) & (rows < max(ya, yb))  # (h, 1) half-open: a vertex counts once
        x_at = xa + (rows - ya) * (xb - xa) / (yb - ya)  # (h, 1) column where the edge meets the row
        inside ^= crosses & (cols < x_at)  # (h, w) ray to the left of the pixel centre
    for ya, xa, yb, xb in zip(r0, c0, r1, c1, strict=True):
        cross = (yb - ya) * (cols - xa) - (xb - xa) * (rows - ya)  # (h, w) zero on the edge's line
        within = ((rows >= min(ya, yb)) & (rows <= max(ya, yb))) & ((cols >= min(xa, xb)) & (cols <= max(xa, xb)))
        inside |= within & (np.abs(cross) < 1e-9)
    vr = np.rint(points[:, 0]).astype(np.int64) - origin[0]
    vc = np.rint(points[:, 1]).astype(np.int64) - origin[1]
    keep = (vr >= 0) & (vr < h) & (vc >= 0) & (vc < w)
    inside[vr[keep], vc[keep]] = True
    return inside


@dataclass
class Lesion:
    """One lesion of a series, ready to be sampled.

    `window_origin` is the (row, col) of the native-pixel window holding the masks; `masks[k]` is
    (n_slots, h, w) bool for slice index k; `readers[k]` is the tuple of slots that outlined it there.
    """

    lesion_id: int
    n_annotators: int
    centre: tuple[float, float]  # (row, col) native pixels: centroid of all outlined pixels
    window_origin: tuple[int, int]
    masks: dict[int, np.ndarray]
    readers: dict[int, tuple[int, ...]]


def build_lesion(lesion_id: int, outlines: Sequence[Annotation], slice_of_roi: dict[int, list[int]],
                 image_shape: tuple[int, int]) -> Lesion:
    """Rasterise a lesion's outlines per reader slot and slice, and find its centroid.

    Annotators (readers, or anonymous database annotations) take slots in order of first
    appearance in the source, so slot k is the same annotator on every slice of the lesion.

    Args:
        lesion_id: Index of the lesion in its series.
        outlines: The lesion's outlines (one group from `group_lesions`).
        slice_of_roi: annotation `order` -> the slice index of each of its ROIs (same order as `rois`).
        image_shape: (rows, cols) of the series' slices, to clip the window.

    Returns:
        The `Lesion`; callers check `n_annotators <= MAX_READERS` before sampling it.
    """
    annotators: list[int] = []
    for outline in outlines:
        if outline.reader not in annotators:
            annotators.append(outline.reader)
    points = np.concatenate([roi.points for outline in outlines for roi in outline.rois])  # (sum K, 2)
    lo = np.clip(np.floor(points.min(axis=0)).astype(int) - 1, 0, None)
    hi = np.minimum(np.ceil(points.max(axis=0)).astype(int) + 2, image_shape)
    origin, shape = (int(lo[0]), int(lo[1])), (max(int(hi[0] - lo[0]), 1), max(int(hi[1] - lo[1]), 1))
    n_slots = max(len(annotators), 1)
    include: dict[int, np.ndarray] = {}
    exclude: dict[int, np.ndarray] = {}
    for outline in outlines:
        slot = annotators.index(outline.reader)
        for roi, k in zip(outline.rois, slice_of_roi[outline.order], strict=True):
            target = include if roi.inclusion else exclude
            if k not in target:
                target[k] = np.zeros((n_slots, *shape), dtype=bool)  # (slots, h, w)
            target[k][slot] |= rasterize_polygon(roi.points, origin, shape)
    masks, readers = {}, {}
    for k in sorted(include):
        drawn = include[k].any(axis=(1, 2))  # (slots,) who outlined the lesion on this slice
        mask = include[k] & ~exclude[k] if k in exclude else include[k]
        masks[k] = mask
        readers[k] = tuple(int(s) for s in np.flatnonzero(drawn))
    union = np.stack([m.any(axis=0) for m in masks.values()])  # (n_slices, h, w) any reader, per slice
    _, rr, cc = np.nonzero(union)
    if rr.size:
        centre = (float(rr.mean() + origin[0]), float(cc.mean() + origin[1]))
    else:  # every outline cancelled by its holes: fall back to the vertices
        centre = (float(points[:, 0].mean()), float(points[:, 1].mean()))
    return Lesion(lesion_id, len(annotators), centre, origin, masks, readers)


def crop_grid(centre: tuple[float, float], pixel_spacing: tuple[float, float], spacing: float,
              crop: int) -> tuple[np.ndarray, np.ndarray]:
    """Native (row, col) coordinates of the centres of a crop×crop grid at `spacing` mm around `centre`.

    Output pixel i sits at centre + (i - (crop - 1) / 2) · spacing mm, so the lesion centroid is at
    the crop's centre for even and odd sizes alike.

    Returns:
        rows (crop,) and cols (crop,) float64 in native pixel units.
    """
    offsets = (np.arange(crop, dtype=np.float64) - (crop - 1) / 2.0) * spacing  # (crop,) mm from the centre
    return centre[0] + offsets / pixel_spacing[0], centre[1] + offsets / pixel_spacing[1]


def resample_image(image: np.ndarray, rows: np.ndarray, cols: np.ndarray, fill: float = FILL_HU) -> np.ndarray:
    """Bilinear samples of `image` (H, W) at the grid rows × cols; `fill` outside the image.

    Returns:
        float64 (len(rows), len(cols)).
    """
    h, w = image.shape
    r0 = np.floor(rows).astype(np.int64)
    c0 = np.floor(cols).astype(np.int64)
    fr, fc = rows - r0, cols - c0
    rr0, rr1 = np.clip(r0, 0, h - 1), np.clip(r0 + 1, 0, h - 1)
    cc0, cc1 = np.clip(c0, 0, w - 1), np.clip(c0 + 1, 0, w - 1)
    img = image.astype(np.float64, copy=False)
    top = img[np.ix_(rr0, cc0)] * (1 - fc) + img[np.ix_(rr0, cc1)] * fc  # (n_rows, n_cols)
    bottom = img[np.ix_(rr1, cc0)] * (1 - fc) + img[np.ix_(rr1, cc1)] * fc
    out = top * (1 - fr)[:, None] + bottom * fr[:, None]
    outside = ((rows < 0) | (rows > h - 1))[:, None] | ((cols < 0) | (cols > w - 1))[None, :]  # (n_rows, n_cols)
    out[outside] = fill
    return out


def resample_mask(mask: np.ndarray, origin: tuple[int, int], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Nearest-neighbour samples of a window mask (..., h, w) at image coordinates rows × cols.

    Returns:
        uint8 (..., len(rows), len(cols)); 0 outside the window.
    """
    h, w = mask.shape[-2:]
    ri = np.floor(rows + 0.5).astype(np.int64) - origin[0]
    ci = np.floor(cols + 0.5).astype(np.int64) - origin[1]
    row_ok, col_ok = (ri >= 0) & (ri < h), (ci >= 0) & (ci < w)
    out = mask[..., np.clip(ri, 0, h - 1)[:, None], np.clip(ci, 0, w - 1)[None, :]]  # (..., n_rows, n_cols)
    return (out & row_ok[:, None] & col_ok[None, :]).astype(np.uint8)
