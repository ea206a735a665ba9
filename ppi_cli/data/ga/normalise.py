# SPDX-License-Identifier: MIT
"""Bring one OCT volume to the cache geometry, the way its site config says (pure functions).

`ppi prepare ga` and `ppi explain` share these, so an overlay is drawn on exactly what the model saw.
Order of operations, each recorded:

1. intensity: the site's rule on the raw uint8 volume (none, min-max, or percentile clip + stretch);
2. padding: B-scans narrower than the site's nominal width are widened symmetrically (site D of the
   paper: "padded by repeating their left/right areas" -> `edge-repeat`);
3. resampling: B-scans picked by nearest index to `n_bscans` (every cached B-scan is an acquired one,
   never a blend of two), each resized in-plane to `bscan_size` with bilinear filtering, which
   averages over the source footprint when shrinking; masks use nearest neighbour throughout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ppi_cli.config.site import Intensity, Padding, SiteConfig
from ppi_cli.errors import ConfigError, DataError

__all__ = ["normalise_volume", "normalise_mask", "preprocess_volume", "parse_bscan_size", "percentile_uint8",
           "bscan_indices", "resize_stack"]

_NUMPY_PAD_MODE = {"edge-repeat": "edge", "reflect": "reflect", "zero": "constant"}


def parse_bscan_size(value: int | str | Sequence[int]) -> tuple[int, int]:
    """`299` or `"299"` means 299x299; `"128x256"` (or a pair) means height 128, width 256.

    Raises:
        ConfigError: Not a positive size.
    """
    if isinstance(value, str):
        parts = value.lower().replace("×", "x").split("x")
        try:
            sizes = [int(p) for p in parts]
        except ValueError:
            sizes = []
    elif isinstance(value, int):
        sizes = [value]
    else:
        sizes = [int(v) for v in value]
    if len(sizes) == 1:
        sizes = sizes * 2
    if len(sizes) != 2 or min(sizes) < 1:
        raise ConfigError(f"B-scan size {value!r} is not N or HxW with positive integers",
                          hint="use e.g. --bscan-size 299 or --bscan-size 128x256")
    return sizes[0], sizes[1]


def normalise_volume(raw: np.ndarray, site_cfg: SiteConfig | None, n_bscans: int,
                     bscan_size: int | str | Sequence[int]) -> tuple[np.ndarray, dict[str, Any]]:
    """Intensity-normalise, pad and resample one volume to the cache geometry.

    Args:
        raw: uint8 `(n, H, W)` as `read_volume` returns it.
        site_cfg: The volume's site config; None applies the default intensity rule and no padding.
        n_bscans: B-scans in the result.
        bscan_size: `(H', W')`, a square side, or `"HxW"`.

    Returns:
        uint8 `(n_bscans, H', W')` and a flat record of what was done (manifest columns).

    Example:
        >>> vol, record = normalise_volume(raw, sites["D"], 32, 64)
        >>> record["padding"]  # 'edge-repeat 48->64 (8 left, 8 right)'
    """
    _check_volume(raw, "volume")
    intensity = site_cfg.intensity if site_cfg else Intensity()
    volume, low, high, how = apply_intensity(raw, intensity)
    volume, left, right, pad_text = _pad(volume, site_cfg)
    height, width = parse_bscan_size(bscan_size)
    indices = bscan_indices(volume.shape[0], n_bscans)
    out = resize_stack(volume[indices], (height, width), nearest=False)
    record = {
        "orig_shape": "x".join(str(s) for s in raw.shape),
        "intensity": how, "intensity_low": low, "intensity_high": high,
        "padding": pad_text, "pad_left": left, "pad_right": right,
        "resample": f"B-scans {volume.shape[0]}->{n_bscans} (nearest), in-plane "
                    f"{volume.shape[1]}x{volume.shape[2]}->{height}x{width} (bilinear)",
    }
    return out, record


def normalise_mask(raw_mask: np.ndarray, record: dict[str, Any], site_cfg: SiteConfig | None, n_bscans: int,
                   bscan_size: int | str | Sequence[int]) -> np.ndarray:
    """Apply a volume's padding and resampling (nearest neighbour) to its lesion mask.

    Args:
        raw_mask: `(n, H, W)`, same geometry as the raw volume; any non-zero voxel is lesion.
        record: The record `normalise_volume` returned for the volume.
        site_cfg: The volume's site config (the mask is padded with the image's rule).
        n_bscans: As for the volume.
        bscan_size: As for the volume.

    Returns:
        uint8 `(n_bscans, H', W')` of 0/1.
    """
    _check_volume(raw_mask, "mask")
    expected = record["orig_shape"]
    if "x".join(str(s) for s in raw_mask.shape) != expected:
        raise DataError(f"mask shape {raw_mask.shape} differs from the volume's {expected}",
                        hint="a mask must have the geometry of its volume (B-scans x depth x A-scans)")
    mask = (raw_mask > 0).astype(np.uint8)
    left, right = int(record["pad_left"]), int(record["pad_right"])
    if left or right:
        rule = site_cfg.padding.rule if site_cfg else "none"
        mask = np.pad(mask, ((0, 0), (0, 0), (left, right)), mode=_NUMPY_PAD_MODE[rule])
    height, width = parse_bscan_size(bscan_size)
    return resize_stack(mask[bscan_indices(mask.shape[0], n_bscans)], (height, width), nearest=True)


def preprocess_volume(vol: np.ndarray) -> tuple[Any, Any]:
    """Cached uint8 B-scans to the model's input: `(S, 1, H, W)` float32 in [0, 1] and positions `(S,)`.

    The positions are 0..S-1, the B-scan indices of a whole cached volume (paper appendix E.2: each
    B-scan's position id feeds the attention branch).
    """
    import torch

    array = np.array(vol, dtype=np.uint8, order="C")  # a copy: memory-mapped caches are read-only
    if array.ndim != 3:
        raise DataError(f"expected B-scans (S, H, W), found shape {array.shape}")
    image = torch.from_numpy(array).to(torch.float32).div_(255.0).unsqueeze(1)  # (S, 1, H, W)
    return image, torch.arange(array.shape[0], dtype=torch.int64)


def apply_intensity(raw: np.ndarray, rule: Intensity) -> tuple[np.ndarray, int, int, str]:
    """The site's intensity rule through a 256-entry lookup table.

    Returns:
        The new volume, the input values mapped to 0 and 255, and a description.
    """
    if rule.method == "none":
        return raw, 0, 255, "none"
    if rule.method == "minmax":
        low, high = int(raw.min()), int(raw.max())
        how = "minmax"
    else:
        low_f, high_f = percentile_uint8(raw, (rule.low_percentile, rule.high_percentile))
        low, high = int(np.floor(low_f)), int(np.ceil(high_f))
        how = f"percentile {rule.low_percentile:g}-{rule.high_percentile:g}"
    if high <= low:  # a flat volume: nothing to stretch
        return raw, low, high, f"{how} (flat, unchanged)"
    values = np.arange(256, dtype=np.float64)
    lut = np.clip(np.rint((values - low) * (255.0 / (high - low))), 0, 255).astype(np.uint8)
    return lut[raw], low, high, f"{how} [{low}, {high}] -> [0, 255]"


def percentile_uint8(array: np.ndarray, q: Sequence[float]) -> tuple[float, ...]:
    """`np.percentile(array, q)` (linear interpolation) from a histogram: exact for uint8, and fast."""
    counts = np.bincount(array.ravel(), minlength=256)
    cumulative = np.cumsum(counts)
    n = int(cumulative[-1])

    def order_statistic(k: int) -> int:  # the k-th smallest value, 0-based
        return int(np.searchsorted(cumulative, k, side="right"))

    out = []
    for p in q:
        rank = p / 100.0 * (n - 1)
        lo, frac = int(np.floor(rank)), rank - np.floor(rank)
        a, b = order_statistic(lo), order_statistic(min(lo + 1, n - 1))
        out.append(a + (b - a) * frac)
    return tuple(out)


def bscan_indices(n_in: int, n_out: int) -> np.ndarray:
    """Nearest source B-scan for each of `n_out` evenly spaced positions (centres of equal bins)."""
    return np.minimum(((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.int64), n_in - 1)


def _pad(volume: np.ndarray, site_cfg: SiteConfig | None) -> tuple[np.ndarray, int, int, str]:
    padding = site_cfg.padding if site_cfg else Padding()
    if padding.rule == "none":
        return volume, 0, 0, "none"
    target = padding.target_width or site_cfg.geometry.width
    width = volume.shape[2]
    if width >= target:
        return volume, 0, 0, "none"
    left = (target - width) // 2
    right = target - width - left
    padded = np.pad(volume, ((0, 0), (0, 0), (left, right)), mode=_NUMPY_PAD_MODE[padding.rule])
    return padded, left, right, f"{padding.rule} {width}->{target} ({left} left, {right} right)"


def resize_stack(stack: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    """Each uint8 slice of `(S, H, W)` resized to `size` (H', W'): bilinear, or nearest for masks."""
    from PIL import Image

    height, width = size
    if stack.shape[1:] == (height, width):
        return np.ascontiguousarray(stack)
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    out = np.empty((stack.shape[0], height, width), dtype=np.uint8)
    for k, bscan in enumerate(stack):
        out[k] = np.asarray(Image.fromarray(bscan).resize((width, height), resample=resample))
    return out


def _check_volume(array: np.ndarray, what: str) -> None:
    if not isinstance(array, np.ndarray) or array.ndim != 3 or 0 in array.shape:
        raise DataError(f"{what}: expected a non-empty (B-scans, depth, A-scans) array, "
                        f"found {getattr(array, 'shape', type(array).__name__)}")
    if array.dtype != np.uint8 and what == "volume":
        raise DataError(f"{what}: expected uint8 voxels, found {array.dtype}", hint="read it with read_volume")
