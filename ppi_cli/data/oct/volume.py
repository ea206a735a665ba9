# SPDX-License-Identifier: MIT
"""One OCT volume as every reader returns it, and the conversions all readers share.

Axes are fixed for the whole toolkit: axis 0 is the B-scan index (slow scan), axis 1 the depth
(axial samples, top = vitreous) and axis 2 the A-scan index along the B-scan. Spacing follows the
same order: (between B-scans, axial, lateral), as in the site configs. The format readers
(`readers`, `dicom`, `vendor`) import this module and nothing imports them back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ppi_cli.errors import DataError

__all__ = ["OctVolume", "to_uint8", "as_bscan_stack"]


@dataclass(frozen=True)
class OctVolume:
    """One OCT volume as the readers return it.

    Attributes:
        array: uint8 `(n_bscans, H, W)`: B-scan index, depth, A-scan index.
        spacing_mm: (between B-scans, axial, lateral) in mm when the file carries it, else None.
        source_format: One of `FORMATS`.
        notes: What the reader changed (e.g. a 16-bit range stretched to 0-255); empty when nothing.
    """

    array: np.ndarray
    spacing_mm: tuple[float, float, float] | None
    source_format: str
    notes: str = ""


def to_uint8(array: np.ndarray) -> tuple[np.ndarray, str]:
    """Bring any numeric volume to uint8 and say what was done.

    uint8 and bool pass through; floats within [0, 1] are scaled by 255; values already within
    [0, 255] are rounded (Duke volumes are doubles in that range); anything wider (16-bit DICOM,
    vendor floats) is stretched linearly from its min-max to 0-255. NaN and inf become 0.
    """
    if array.dtype == np.uint8:
        return array, ""
    if array.dtype == np.bool_:
        return array.astype(np.uint8), ""
    if not np.issubdtype(array.dtype, np.number):
        raise DataError(f"voxel type {array.dtype} is not numeric")
    values = np.asarray(array, dtype=np.float64)
    if not np.isfinite(values).all():
        values = np.where(np.isfinite(values), values, 0.0)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if np.issubdtype(array.dtype, np.floating) and low >= 0 and high <= 1 and high > 0:
        return np.rint(values * 255).astype(np.uint8), f"{array.dtype} in [0, 1] scaled by 255"
    if low >= 0 and high <= 255:
        return np.rint(values).astype(np.uint8), ""
    scaled = (values - low) * (255.0 / (high - low))
    return np.rint(scaled).astype(np.uint8), f"{array.dtype} range {low:g}..{high:g} stretched to 0..255"


def as_bscan_stack(array: np.ndarray, what: str) -> np.ndarray:
    """`(H, W)` becomes one B-scan; trailing/leading singleton axes of 4-D data are dropped."""
    array = np.asarray(array)
    if array.ndim == 2:
        return array[None]  # (1, H, W)
    if array.ndim > 3:
        array = array.reshape([s for s in array.shape if s != 1] or [1])
    if array.ndim != 3:
        raise DataError(f"{what}: expected a 3-D volume (B-scans, depth, A-scans), found shape {array.shape}")
    return array
