# SPDX-License-Identifier: MIT
"""Where an input's voxels lie in the patient, as NIfTI states it: a shape and a voxel-to-RAS affine.

`ppi explain --nifti-out` writes the saliency on this grid so that it overlays the input in 3D
Slicer or ITK-SNAP. Voxel axes follow NIfTI: (column, row, slice), i.e. the transpose of the
(slice, row, column) numpy stacks the readers return. A NIfTI input keeps its own shape and
affine; a DICOM image or series gets the affine its ImagePositionPatient, ImageOrientationPatient
and PixelSpacing define (DICOM's LPS turned into NIfTI's RAS by negating x and y, as nibabel and
dcm2niix do); anything else gets a diagonal affine of its pixel spacing (1 mm where unknown).
Only geometry is read: nothing here touches the patient module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli.errors import DataError

__all__ = ["VoxelGrid", "LPS_TO_RAS", "nifti_grid", "dicom_grid", "spacing_grid"]

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class VoxelGrid:
    """A NIfTI voxel grid: `shape` in (x, y, z[, ...]) order, `affine` voxel -> RAS mm, and the
    NIfTI xform code to write (1 scanner, 2 aligned: a grid with no known patient position)."""

    shape: tuple[int, ...]
    affine: np.ndarray
    code: int = 1
    note: str = ""  # said in the record when the grid is a guess (no position in the input)


def nifti_grid(path: str | Path) -> VoxelGrid:
    """A NIfTI file's own shape, best affine and xform code (header only; no voxel is read).

    Raises:
        DataError: Not a readable NIfTI file.
    """
    import nibabel as nib

    try:
        img: Any = nib.load(path)
    except (OSError, ValueError, nib.filebasedimages.ImageFileError) as exc:
        raise DataError(f"{path}: not a readable NIfTI file ({type(exc).__name__})") from None
    header = img.header
    code = int(header["sform_code"]) or int(header["qform_code"]) or 1
    return VoxelGrid(tuple(int(s) for s in img.shape), np.asarray(img.affine, dtype=np.float64), code)


def dicom_grid(headers: list[Any], rows: int, cols: int) -> VoxelGrid | None:
    """The grid of one DICOM image or a series in stack order (`headers[k]` is slice k).

    The slice axis runs from the first slice's position to the last one's; a single image takes the
    orientation's normal times its SliceThickness (1 mm when absent). None when the headers lack
    ImagePositionPatient, ImageOrientationPatient or PixelSpacing.
    """
    try:
        first = headers[0]
        orientation = np.asarray([float(v) for v in first.ImageOrientationPatient], dtype=np.float64)
        row_mm, col_mm = (float(v) for v in first.PixelSpacing)
        positions = np.asarray([[float(v) for v in h.ImagePositionPatient] for h in headers], dtype=np.float64)
    except (AttributeError, TypeError, ValueError, IndexError, KeyError):
        return None
    if orientation.shape != (6,) or positions.shape[1] != 3:
        return None
    along_row, along_col = orientation[:3], orientation[3:]  # column index moves along the row, and back
    if len(headers) > 1:
        step = (positions[-1] - positions[0]) / (len(headers) - 1)
    else:
        thickness = float(first.get("SliceThickness", None) or 1.0)
        step = np.cross(along_row, along_col) * thickness
    affine = np.eye(4)
    affine[:3, 0] = along_row * col_mm
    affine[:3, 1] = along_col * row_mm
    affine[:3, 2] = step
    affine[:3, 3] = positions[0]
    return VoxelGrid((cols, rows, len(headers)), LPS_TO_RAS @ affine, 1)


def spacing_grid(shape: tuple[int, ...], spacing_mm: tuple[float, ...] | None) -> VoxelGrid:
    """A diagonal grid for inputs without a patient position: numpy `shape` ((H, W) or (S, H, W)) and
    the reader's spacing in the same order; 1 mm where it is unknown."""
    spacing = list(spacing_mm or ())[-len(shape):]
    spacing = [1.0] * (len(shape) - len(spacing)) + [float(s) for s in spacing]
    affine = np.diag([*reversed(spacing), *([1.0] * (4 - len(shape)))])
    return VoxelGrid(tuple(reversed(shape)), affine, 2,
                     note="the input states no patient position: the NIfTI map has a spacing-only affine")
