# SPDX-License-Identifier: MIT
"""Bring one cohort image to the `table` cache geometry (pure functions; the order is recorded).

1. slices: a volume's slices are picked by nearest index to `n_slices` evenly spaced positions
   (`bscan_indices`, as GA does: every cached slice is an acquired one); a 2-D image stays one slice;
2. intensity: `window` (low, high in the image's own units, e.g. HU) or, by default, the
   `percentiles` of the picked slices, mapped linearly to 0..255 and clipped;
3. in-plane geometry, spacing-aware: the physical extent of a slice (rows × spacing y, columns ×
   spacing x) is fitted into `size × size` keeping its proportions, so anisotropic pixels come out
   isotropic, and the rest is padded with 0 (the window's low end) on both sides. The resize is one
   bilinear step straight to the isotropic size (resampling to isotropic first and then resizing
   would interpolate twice). Masks take the same picks and geometry with nearest neighbour.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ppi_cli.data.ga.normalise import bscan_indices, resize_stack
from ppi_cli.data.table.images import TableImage
from ppi_cli.errors import ConfigError, DataError

__all__ = ["parse_window", "apply_window", "fit_slices", "normalise_image", "normalise_image_mask",
           "DEFAULT_PERCENTILES"]

DEFAULT_PERCENTILES = (0.5, 99.5)  # ours: robust to a few hot pixels and to the padding around a scan


def parse_window(text: str | Sequence[float] | None, what: str = "--window") -> tuple[float, float] | None:
    """`"LOW,HIGH"` (or a pair) as two floats with LOW < HIGH; None stays None.

    Raises:
        ConfigError: Not two numbers, or LOW >= HIGH.
    """
    if text is None or text == "":
        return None
    parts = str(text).replace(":", ",").split(",") if isinstance(text, str) else list(text)
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"{what} {text!r}: expected two numbers LOW,HIGH", hint=f"e.g. {what} -1000,400") from None
    if not low < high:
        raise ConfigError(f"{what} {text!r}: LOW must be below HIGH", hint=f"e.g. {what} -1000,400")
    return low, high


def apply_window(pixels: np.ndarray, window: tuple[float, float] | None,
                 percentiles: tuple[float, float] = DEFAULT_PERCENTILES) -> tuple[np.ndarray, float, float]:
    """Map `[low, high]` linearly to 0..255 (uint8, clipped); without a window, the pixels' percentiles.

    Returns:
        The uint8 pixels, low and high. A flat image (high == low) maps to 0.
    """
    if window is None:
        low, high = (float(v) for v in np.percentile(pixels, percentiles))
    else:
        low, high = window
    if high <= low:
        return np.zeros(pixels.shape, np.uint8), low, high
    scaled = (pixels.astype(np.float32) - low) * np.float32(255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8), low, high


def fit_slices(stack: np.ndarray, spacing_yx: tuple[float, float] | None, size: int,
               nearest: bool = False) -> tuple[np.ndarray, str]:
    """Fit uint8 `(S, H, W)` slices into `(S, size, size)` by their physical extent (module docstring, step 3).

    Returns:
        The slices and a description (`"512x256 at 0.5x1 mm -> 64x64 (isotropic), padded to 64x64"`).
    """
    height, width = stack.shape[1:]
    sy, sx = spacing_yx if spacing_yx is not None else (1.0, 1.0)
    if not (sy > 0 and sx > 0):
        raise DataError(f"pixel spacing {sy:g}x{sx:g} mm is not positive")
    extent_y, extent_x = height * sy, width * sx
    scale = size / max(extent_y, extent_x)
    new_h, new_w = (max(1, min(size, int(round(extent * scale)))) for extent in (extent_y, extent_x))
    resized = resize_stack(stack, (new_h, new_w), nearest=nearest)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out = np.zeros((stack.shape[0], size, size), np.uint8)
    out[:, top:top + new_h, left:left + new_w] = resized
    text = f"{height}x{width} at {sy:g}x{sx:g} mm -> {new_h}x{new_w} (isotropic), padded to {size}x{size}"
    return out, text


def normalise_image(image: TableImage, n_slices: int, size: int, window: tuple[float, float] | None,
                    percentiles: tuple[float, float] = DEFAULT_PERCENTILES) -> tuple[np.ndarray, dict[str, Any]]:
    """Slices, window and geometry of one image (module docstring).

    Returns:
        uint8 `(n_slices, size, size)` for a volume, `(1, size, size)` for a 2-D image, and the record
        of what was done (manifest columns).
    """
    picks = _picks(image, n_slices)
    pixels, low, high = apply_window(image.pixels[picks], window, percentiles)
    spacing = image.spacing[1:] if image.spacing is not None else None
    out, geometry = fit_slices(pixels, spacing, size)
    how = f"window [{low:g}, {high:g}]" if window is not None else \
        f"percentile {percentiles[0]:g}-{percentiles[1]:g} [{low:g}, {high:g}]"
    record = {"source_format": image.source_format, "orig_shape": "x".join(str(s) for s in image.pixels.shape),
              "spacing_mm": "x".join(f"{s:g}" for s in image.spacing) if image.spacing is not None else "",
              "intensity": how, "intensity_low": low, "intensity_high": high,
              "resample": f"slices {image.pixels.shape[0]}->{len(picks)} (nearest), in-plane {geometry}",
              "slices": len(picks)}
    return out, record


def normalise_image_mask(mask: TableImage, image: TableImage, n_slices: int, size: int) -> np.ndarray:
    """A lesion mask on `image`'s grid, with the image's slice picks and geometry (nearest): uint8 0/1.

    Raises:
        DataError: The mask's shape is not the image's.
    """
    if mask.pixels.shape != image.pixels.shape:
        raise DataError(f"mask shape {mask.pixels.shape} is not the image's {image.pixels.shape}")
    binary = (mask.pixels[_picks(image, n_slices)] > 0).astype(np.uint8)
    spacing = image.spacing[1:] if image.spacing is not None else None
    return fit_slices(binary, spacing, size, nearest=True)[0]


def _picks(image: TableImage, n_slices: int) -> np.ndarray:
    return bscan_indices(image.pixels.shape[0], n_slices) if image.is_volume else np.zeros(1, np.int64)
