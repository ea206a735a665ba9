# SPDX-License-Identifier: MIT
"""A saliency map as a NIfTI-1 file on the input's grid, for 3D Slicer, ITK-SNAP and friends.

The header is built fresh, never copied from the input: it holds the shape, the affine (as both
sform and qform), millimetre units, a float32 datatype and a short description (method, model,
score); no name, ID, date or file name of the patient's scan.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ppi_cli.data.voxel_grid import VoxelGrid
from ppi_cli.files import write_bytes

__all__ = ["write_nifti_map"]


def write_nifti_map(path: str | Path, data: np.ndarray, grid: VoxelGrid, description: str) -> Path:
    """Write `data` (already in the grid's (x, y, z) order and shape) as float32 NIfTI, atomically.

    A name ending in `.gz` is gzip-compressed (with a zero timestamp, so equal maps give equal files).

    Example:
        >>> write_nifti_map("saliency.nii.gz", volume, grid, "wbp saliency of tiny (score 0.91)")
    """
    import nibabel as nib

    data = np.asarray(data, dtype=np.float32)
    if data.shape != grid.shape:
        raise ValueError(f"map of shape {data.shape} does not fit the grid {grid.shape}")
    image = nib.Nifti1Image(data, grid.affine)
    image.set_sform(grid.affine, code=grid.code)
    image.set_qform(grid.affine, code=grid.code)
    header = image.header
    header.set_data_dtype(np.float32)
    header.set_xyzt_units("mm")
    header.set_intent("estimate", name="saliency")
    header["descrip"] = description.encode("ascii", "replace")[:79]
    blob = image.to_bytes()
    if str(path).lower().endswith(".gz"):
        blob = gzip.compress(blob, mtime=0)
    return write_bytes(path, blob)
