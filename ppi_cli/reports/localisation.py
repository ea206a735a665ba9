# SPDX-License-Identifier: MIT
"""Localisation scores of a saliency map against an expert mask (weakly-supervised segmentation).

Every function takes one map and one mask of the same shape (2D B-scans and CT patches, or any
N-D array) and only the positive part of the map counts: the paper's overlays and the energy-based
pointing game are about evidence *for* the target (paper section 5, Table 7). Aggregation over a
data set (means, the best threshold) lives here too, so `segment-eval` only loops and writes.

Ranking ties are broken by raster order (a stable sort), so every score is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "POINTS", "THRESHOLDS", "positive_part", "top_k_order", "energy_pointing_game", "pointing_game_hit",
    "dice", "iou", "binarise_threshold", "binarise_top_percent", "threshold_scores", "pick_threshold",
    "best_threshold", "top_mass_bbox", "ThresholdScore", "TOP_PERCENT", "sample_scores",
]

# Points of the paper's Table 7 (None = all pixels). The table also lists 10,000; a LIDC patch has
# 16,384 pixels, so we keep the set and let callers pass more.
POINTS: tuple[int | None, ...] = (100, 500, 1000, 5000, None)
# Thresholds on the max-normalised positive map searched for the best Dice (our decision: a 0.05 grid).
THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))
# Share of pixels kept for the fixed-percentile Dice/IoU (our decision: the order of a LIDC nodule's
# share of a 128-pixel patch; segment-eval's --top-percent changes it).
TOP_PERCENT = 5.0


def positive_part(saliency: np.ndarray) -> np.ndarray:
    """The map's positive evidence as float64, `max(s, 0)`; NaNs count as no evidence."""
    s = np.asarray(saliency, dtype=np.float64)
    return np.where(np.isnan(s), 0.0, np.clip(s, 0.0, None))


def top_k_order(saliency: np.ndarray) -> np.ndarray:
    """Flat indices of the pixels from the most to the least positive saliency (ties: raster order)."""
    return np.argsort(-positive_part(saliency).ravel(), kind="stable")


def energy_pointing_game(saliency: np.ndarray, mask: np.ndarray,
                         points: Sequence[int | None] = POINTS) -> dict[str, float]:
    """Share of saliency energy inside the mask among the top-k points (paper Table 7).

    The energy-based pointing game (Wang et al., Score-CAM) extended to the top-k most salient
    points, as the paper does: for each k, `Σ s⁺ over top-k ∩ mask / Σ s⁺ over top-k`. A k larger
    than the image counts every pixel. A map with no positive energy among its top-k scores NaN.

    Args:
        saliency: The map, any shape.
        mask: The expert mask, same shape (non-zero = inside).
        points: The k values; None means all pixels (the table's "All" row).

    Returns:
        `{"100": 0.93, ..., "all": 0.48}` keyed by `str(k)` or `"all"`.

    Example:
        >>> energy_pointing_game(s, mask)["100"]
    """
    s, m = _pair(saliency, mask)
    order = top_k_order(s)
    energy = np.cumsum(s.ravel()[order])  # (n,) energy of the top-1, top-2, ... points
    inside = np.cumsum((s * m).ravel()[order])
    out: dict[str, float] = {}
    for k in points:
        n = energy.size if k is None else min(int(k), energy.size)
        if n < 1:
            raise ValueError(f"points must be positive, got {k}")
        total = energy[n - 1]
        out["all" if k is None else str(k)] = float(inside[n - 1] / total) if total > 0 else float("nan")
    return out


def pointing_game_hit(saliency: np.ndarray, mask: np.ndarray, tolerance: float = 0.0) -> bool:
    """Whether the single most salient pixel lies inside the mask (Zhang et al.'s pointing game).

    Args:
        saliency: The map.
        mask: The expert mask, same shape.
        tolerance: Also count a maximum within this many pixels of the mask (Euclidean); the
            original game used 15 px on full-size photographs, we default to 0 for small patches.

    Returns:
        True for a hit. A map without any positive value points nowhere and misses.
    """
    s, m = _pair(saliency, mask)
    if not (s > 0).any():
        return False
    peak = np.unravel_index(int(top_k_order(s)[0]), s.shape)
    if tolerance > 0:
        from scipy.ndimage import distance_transform_edt

        m = distance_transform_edt(~m) <= tolerance  # mask grown by `tolerance` pixels
    return bool(m[peak])


def dice(pred: np.ndarray, mask: np.ndarray) -> float:
    """Dice coefficient `2|P∩M| / (|P|+|M|)`; two empty sets agree perfectly (1.0)."""
    p, m = np.asarray(pred, bool), np.asarray(mask, bool)
    denom = int(p.sum()) + int(m.sum())
    return 1.0 if denom == 0 else 2.0 * int((p & m).sum()) / denom


def iou(pred: np.ndarray, mask: np.ndarray) -> float:
    """Intersection over union `|P∩M| / |P∪M|`; two empty sets agree perfectly (1.0)."""
    p, m = np.asarray(pred, bool), np.asarray(mask, bool)
    union = int((p | m).sum())
    return 1.0 if union == 0 else int((p & m).sum()) / union


def binarise_threshold(saliency: np.ndarray, threshold: float) -> np.ndarray:
    """Pixels whose positive saliency, divided by the map's maximum, is at least `threshold` (0 < t ≤ 1)."""
    s = positive_part(saliency)
    peak = s.max(initial=0.0)
    if peak <= 0:
        return np.zeros(s.shape, bool)
    return s / peak >= threshold


def binarise_top_percent(saliency: np.ndarray, percent: float) -> np.ndarray:
    """The top `percent` % of pixels by positive saliency (at least one; never a pixel with s ≤ 0)."""
    if not 0 < percent <= 100:
        raise ValueError(f"percent must be in (0, 100], got {percent}")
    s = positive_part(saliency)
    n = max(1, int(np.ceil(s.size * percent / 100.0)))
    keep = top_k_order(s)[:n]
    pred = np.zeros(s.size, bool)
    pred[keep] = True
    return (pred & (s.ravel() > 0)).reshape(s.shape)


@dataclass(frozen=True)
class ThresholdScore:
    """Mean Dice and IoU over a data set at one threshold, with the per-sample Dice."""

    threshold: float
    dice: float
    iou: float
    per_sample_dice: tuple[float, ...]
    per_sample_iou: tuple[float, ...]


def threshold_scores(saliency: np.ndarray, mask: np.ndarray,
                     thresholds: Sequence[float] = THRESHOLDS) -> tuple[np.ndarray, np.ndarray]:
    """Dice and IoU of one map binarised at every threshold: two `(T,)` arrays."""
    s, m = _pair(saliency, mask)
    preds = [binarise_threshold(s, t) for t in thresholds]
    return np.array([dice(p, m) for p in preds]), np.array([iou(p, m) for p in preds])


def pick_threshold(dice_rows: Sequence[np.ndarray], iou_rows: Sequence[np.ndarray],
                   thresholds: Sequence[float] = THRESHOLDS) -> ThresholdScore:
    """The one threshold with the best mean Dice over samples, from per-sample `threshold_scores`.

    One threshold for all samples, as weakly-supervised localisation benchmarks choose it (an
    oracle threshold per image would flatter every method). IoU is reported at the same threshold;
    a tie goes to the lowest threshold.

    Raises:
        ValueError: No samples or no thresholds.
    """
    if not len(dice_rows) or not len(thresholds):
        raise ValueError("picking a threshold needs at least one sample and one threshold")
    d, j = np.vstack(dice_rows), np.vstack(iou_rows)  # (N, T)
    best = int(np.argmax(d.mean(axis=0)))  # argmax returns the first of equal maxima
    return ThresholdScore(float(thresholds[best]), float(d[:, best].mean()), float(j[:, best].mean()),
                          tuple(float(v) for v in d[:, best]), tuple(float(v) for v in j[:, best]))


def best_threshold(maps: Iterable[np.ndarray], masks: Iterable[np.ndarray],
                   thresholds: Sequence[float] = THRESHOLDS) -> ThresholdScore:
    """`pick_threshold` over maps and masks held in memory (see there).

    Raises:
        ValueError: No samples or no thresholds.
    """
    rows = [threshold_scores(s, m, thresholds) for s, m in zip(maps, masks, strict=True)]
    return pick_threshold([r[0] for r in rows], [r[1] for r in rows], thresholds)


def sample_scores(saliency: np.ndarray, mask: np.ndarray, *, points: Sequence[int | None] = POINTS,
                  top_percent: float = TOP_PERCENT,
                  thresholds: Sequence[float] = THRESHOLDS) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Every per-sample localisation score segment-eval reports, for one map and its mask.

    Returns:
        `({"epg_100": ..., "epg_all": ..., "hit": 0/1, "dice_top": ..., "iou_top": ...}, dice_curve,
        iou_curve)`, the curves being `threshold_scores` for `pick_threshold` over the data set.
    """
    s, m = _pair(saliency, mask)
    row = {f"epg_{k}": v for k, v in energy_pointing_game(s, m, points).items()}
    row["hit"] = float(pointing_game_hit(s, m))
    pred = binarise_top_percent(s, top_percent)
    row["dice_top"], row["iou_top"] = dice(pred, m), iou(pred, m)
    d, j = threshold_scores(s, m, thresholds)
    return row, d, j


def top_mass_bbox(saliency: np.ndarray, percent: float = 1.0) -> list[tuple[int, int]] | None:
    """Where the saliency mass lies: the inclusive bounding box of the top `percent` % pixels.

    Returns:
        One `(min, max)` index pair per axis (rows then columns for 2D), or None when the map has
        no positive value.

    Example:
        >>> (r0, r1), (c0, c1) = top_mass_bbox(s, 1.0)
    """
    pred = binarise_top_percent(saliency, percent)
    if not pred.any():
        return None
    idx = np.nonzero(pred)
    return [(int(i.min()), int(i.max())) for i in idx]


def _pair(saliency: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = positive_part(saliency)
    m = np.asarray(mask) != 0
    if s.shape != m.shape:
        raise ValueError(f"saliency {s.shape} and mask {m.shape} differ in shape")
    return s, m
