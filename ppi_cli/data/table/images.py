# SPDX-License-Identifier: MIT
"""Read one image of a cohort table, whatever its format, as float slices with their spacing.

Formats: a DICOM series folder, a single DICOM file, NIfTI (`.nii`, `.nii.gz`), NRRD, MetaImage
(`.mha`, `.mhd`) through SimpleITK; PNG, TIFF, JPEG and BMP through Pillow; `.npy` through
`np.load(allow_pickle=False)`. The result is always `(S, H, W)`: S = 1 for a 2-D image, the slices
of a volume otherwise (SimpleITK's array order: z, y, x). Colour is reduced to grey.

Only pixel data and geometry are read: no DICOM header value (PatientName, PatientID, ...) is kept,
logged or put into a message; messages name files by `shareable_text` (no full paths).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ppi_cli.data.limits import check_volume_size, npy_shape, open_image
from ppi_cli.errors import DataError
from ppi_cli.files import IMAGE_SUFFIXES

__all__ = ["TableImage", "read_table_image", "image_format"]

_ITK_SUFFIXES = {".dcm": "DICOM", ".nii": "NIfTI", ".nii.gz": "NIfTI", ".nrrd": "NRRD", ".nhdr": "NRRD",
                 ".mha": "MetaImage", ".mhd": "MetaImage"}


@dataclass(frozen=True)
class TableImage:
    """One image as read: `(S, H, W)` float32 pixels, the spacing `(z, y, x)` in mm if known, its format."""

    pixels: np.ndarray
    spacing: tuple[float, float, float] | None
    source_format: str

    @property
    def is_volume(self) -> bool:
        """More than one slice."""
        return self.pixels.shape[0] > 1


def image_format(path: Path) -> str:
    """The reader a path goes to: `DICOM series`, `DICOM`, `NIfTI`, `NRRD`, `MetaImage`, `picture`, `npy`."""
    if path.is_dir():
        return "DICOM series"
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        return "NIfTI"
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return "npy"
    if suffix in IMAGE_SUFFIXES:
        return "picture"
    return _ITK_SUFFIXES.get(suffix, "DICOM")  # a DICOM file often has no extension at all


def read_table_image(path: Path) -> TableImage:
    """Read `path` (see the module docstring).

    Raises:
        DataError: Unreadable, corrupt, empty or too large; the message names the file by its base name.
    """
    fmt = image_format(path)
    if fmt == "npy":
        pixels, spacing = _read_npy(path), None
    elif fmt == "picture":
        pixels, spacing = _read_picture(path), None
    else:
        pixels, spacing = _read_itk(path, fmt)
    if pixels.ndim != 3 or 0 in pixels.shape:
        raise DataError(f"{path.name}: expected a 2-D image or a 3-D volume, found shape {pixels.shape}")
    if not np.isfinite(pixels).all():
        raise DataError(f"{path.name}: the pixels hold NaN or infinite values")
    return TableImage(pixels, spacing, fmt)


def _as_slices(array: np.ndarray, channels_last: bool) -> np.ndarray:
    """`(H, W)`, `(S, H, W)` or with a trailing colour axis -> float32 `(S, H, W)` grey."""
    array = np.asarray(array)
    if channels_last and array.ndim >= 3 and array.shape[-1] in (3, 4):
        array = array[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)  # luma
    if array.ndim == 2:
        array = array[None]
    return np.ascontiguousarray(array, dtype=np.float32)


def _read_npy(path: Path) -> np.ndarray:
    try:
        check_volume_size(path, npy_shape(path))  # from the header, before the data is loaded
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path.name}: unreadable .npy ({str(exc).splitlines()[0]})") from None
    if array.dtype.kind not in "buif":
        raise DataError(f"{path.name}: .npy of dtype {array.dtype}, not numbers")
    return _as_slices(array, channels_last=False)


def _read_picture(path: Path) -> np.ndarray:
    try:
        with open_image(path) as image:  # the size is checked from the header before decoding
            if image.mode not in ("L", "I", "I;16", "I;16B", "F"):
                image = image.convert("L")
            return _as_slices(np.asarray(image), channels_last=False)
    except (OSError, ValueError, SyntaxError) as exc:  # PIL's ways of saying "not an image I can read"
        raise DataError(f"{path.name}: unreadable image ({type(exc).__name__})") from None


def _read_itk(path: Path, fmt: str) -> tuple[np.ndarray, tuple[float, float, float]]:
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # ITK warns on stderr with full paths; errors say enough
    try:
        if fmt == "DICOM series":
            reader = sitk.ImageSeriesReader()
            series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path))
            if not series:
                raise DataError(f"{path.name}: no DICOM series in this folder")
            # The longest series when a folder holds several (a scout beside the scan): by file count.
            files = max((sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path), uid) for uid in series), key=len)
            reader.SetFileNames(files)
            image = reader.Execute()
        else:
            file_reader = sitk.ImageFileReader()
            file_reader.SetFileName(str(path))
            file_reader.ReadImageInformation()
            check_volume_size(path, tuple(reversed(file_reader.GetSize())))  # before the pixels are decoded
            image = file_reader.Execute()
    except RuntimeError as exc:
        raise DataError(f"{path.name}: unreadable or corrupt {fmt} ({_itk_reason(exc, path)})") from None
    check_volume_size(path, tuple(reversed(image.GetSize())))
    spacing = tuple(float(s) for s in image.GetSpacing())  # (x, y[, z]) in mm
    pixels = _as_slices(sitk.GetArrayFromImage(image), channels_last=image.GetNumberOfComponentsPerPixel() > 1)
    x, y = spacing[0], spacing[1]
    z = spacing[2] if len(spacing) > 2 else 1.0
    return pixels, (z, y, x)


def _itk_reason(exc: RuntimeError, path: Path) -> str:
    """The last line of SimpleITK's message, without its source-file prefix or the input's full path."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = lines[-1] if lines else type(exc).__name__
    reason = reason.split("ERROR: ", 1)[-1]
    return reason.replace(str(path), path.name).replace(str(path.resolve()), path.name)
