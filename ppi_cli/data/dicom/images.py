# SPDX-License-Identifier: MIT
"""Generic DICOM images for `ppi explain`: any single- or multi-frame image, and series folders.

The LIDC and OCT readers cover the files `prepare` meets (CT slices, OCT multi-frame volumes).
A clinician may hand `explain` anything a PACS exports: MR or CR slices, colour ultrasound,
palette images, compressed transfer syntaxes, files without a preamble. This module turns each
into float pixels (modality LUT applied, MONOCHROME1 inverted, colour as RGB) or into one
`PpiError` line that names the file and the problem (a missing decoder names the `codecs` extra).

Header values never reach a message: errors name the file, the transfer syntax and the SOP class,
never a patient attribute.
"""

from __future__ import annotations

import importlib.util
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli.data.dicom.headers import is_dicom_file
from ppi_cli.data.limits import check_dicom_size
from ppi_cli.errors import DataError, MissingExtraError

__all__ = ["DicomImage", "read_dicom_header", "read_dicom_image", "series_files"]

# What pydicom raises on malformed files: a parser of untrusted bytes fails in many ways, and each
# one becomes a one-line DataError naming the file (never a traceback).
PARSE_ERRORS = (ValueError, KeyError, TypeError, AttributeError, EOFError, IndexError, struct.error,
                NotImplementedError, UnicodeError, OverflowError, RuntimeError)
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"


@dataclass
class DicomImage:
    """Decoded pixels of one DICOM file.

    `pixels` is float32: (H, W) grey, (H, W, 3) colour, (F, H, W) grey frames, or (F, H, W, 3).
    `header` is the dataset without pixel data, kept for the secondary capture only.
    """

    pixels: np.ndarray
    spacing_mm: tuple[float, ...] | None  # (row, col), plus the frame step first for multi-frame
    modality: str
    units: str  # "HU" for calibrated CT, else "raw"
    header: Any


def read_dicom_header(path: Path, force: bool = True) -> Any:
    """Read a DICOM header (no pixel data); files without a preamble are tried with `force`.

    Raises:
        DataError: Not a DICOM file, or a header too damaged to parse.
    """
    return _read(path, stop_before_pixels=True, force=force)


def read_dicom_image(path: Path) -> DicomImage:
    """Decode one DICOM image file to float pixels.

    Raises:
        DataError: Not an image (DICOMDIR, structured report, RT plan...), truncated or damaged.
        MissingExtraError: Compressed pixel data that no installed decoder reads (extra `codecs`).

    Example:
        >>> img = read_dicom_image(Path("slice.dcm")); img.pixels.shape
    """
    ds = _read(path, stop_before_pixels=False, force=True)
    _require_pixels(path, ds)
    arr = _decode(path, ds)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if photometric == "PALETTE COLOR":
            from pydicom.pixels import apply_color_lut

            arr = apply_color_lut(arr, ds)
        elif int(ds.get("SamplesPerPixel", 1)) == 1:
            from pydicom.pixels import apply_modality_lut

            arr = apply_modality_lut(arr, ds)
    arr = np.asarray(arr, dtype=np.float32)
    if photometric == "MONOCHROME1":  # low values are white: flip so brighter means more signal
        arr = arr.max() + arr.min() - arr
    if not np.isfinite(arr).all():
        raise DataError(f"{path}: pixel data holds NaN or infinite values", hint="export the image again")
    modality = str(ds.get("Modality", "") or "").upper()
    calibrated = "RescaleIntercept" in ds and str(ds.get("RescaleType", "HU") or "HU").upper() == "HU"
    del ds.PixelData
    return DicomImage(arr, _spacing(ds), modality, "HU" if modality == "CT" and calibrated else "raw", ds)


def series_files(folder: Path) -> list[tuple[Path, Any]]:
    """The DICOM files of one series in a folder, sorted along the slice axis, with their headers.

    Files are found by content (preamble), never by name. Slices are ordered by their position
    along the slice normal (ImagePositionPatient · normal of ImageOrientationPatient), falling back
    to InstanceNumber, then to the file name.

    Raises:
        DataError: No DICOM file, or files of more than one series.
    """
    found = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        if is_dicom_file(path) or path.suffix.lower() == ".dcm":
            header = read_dicom_header(path)
            if not _is_dicomdir(header):
                found.append((path, header))
    if not found:
        raise DataError(f"{folder}: no DICOM image files in this folder (a DICOMDIR index alone is not a series)",
                        hint="pass a series folder or one image file")
    series = {str(h.get("SeriesInstanceUID", "")) for _, h in found}
    if len(series) > 1:
        raise DataError(f"{folder}: holds {len(series)} DICOM series; explain reads one at a time",
                        hint="pass the folder of one series, or one image file")
    return sorted(found, key=lambda item: _slice_key(*item))


def _read(path: Path, stop_before_pixels: bool, force: bool) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not path.is_file():
        raise DataError(f"{path}: no such file", hint="check the path")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warnings may quote header values (names)
        try:
            return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
        except InvalidDicomError:
            if not force:
                raise DataError(f"{path}: not a DICOM file (no 'DICM' preamble)") from None
        except PARSE_ERRORS as exc:
            raise DataError(f"{path}: damaged DICOM header ({type(exc).__name__})",
                            hint="export the file again from the PACS") from None
        # No preamble: some exporters omit it. Accept the file only if it parses into a plausible
        # header (identifying elements of group 0008 or image rows); garbage parses into neither.
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
            if "Rows" in ds or sum(tag.group == 0x0008 for tag in ds.keys()) >= 2:
                return ds
        except (InvalidDicomError, *PARSE_ERRORS):
            pass  # garbage under force=True: report below as not DICOM
    raise DataError(f"{path}: not a DICOM file, and not another format ppi reads",
                    hint="pass DICOM, NIfTI (.nii/.nii.gz), Duke .mat, .npy, PNG/TIFF or a folder of them")


def _is_dicomdir(ds: Any) -> bool:
    meta = getattr(ds, "file_meta", None)
    sop = str(meta.get("MediaStorageSOPClassUID", "")) if meta is not None else ""
    return sop == _DICOMDIR_CLASS or "DirectoryRecordSequence" in ds


def _require_pixels(path: Path, ds: Any) -> None:
    if _is_dicomdir(ds):
        raise DataError(f"{path}: is a DICOMDIR (an index of other files), not an image",
                        hint="pass one of the image files it lists, or their series folder")
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        sop = ds.get("SOPClassUID")
        kind = getattr(sop, "name", "") or str(sop or "unknown SOP class")
        raise DataError(f"{path}: holds no image ({kind}, no pixel data)", hint="pass an image file")


def _decode(path: Path, ds: Any) -> np.ndarray:
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    syntax_name = getattr(syntax, "name", "") or "unknown transfer syntax"
    check_dicom_size(path, ds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return ds.pixel_array
        except (RuntimeError, NotImplementedError) as exc:
            if syntax is not None and getattr(syntax, "is_compressed", False):
                if importlib.util.find_spec("pylibjpeg") is None:
                    raise MissingExtraError(f"{path}: pixel data compressed as '{syntax_name}'", "codecs",
                                            "pylibjpeg") from None
                raise DataError(f"{path}: pixel data compressed as '{syntax_name}' could not be decoded "
                                "(corrupt, or a variant no installed decoder supports)",
                                hint="export it uncompressed from the PACS") from None
            raise DataError(f"{path}: pixel data could not be decoded ({type(exc).__name__})") from None
        except AttributeError:
            if syntax is None:
                raise DataError(f"{path}: file meta has no Transfer Syntax UID, so the pixels cannot be decoded",
                                hint="export the file again with a file meta header") from None
            raise DataError(f"{path}: image attributes are missing (Rows, Columns, Bits Allocated...)",
                            hint="export the file again from the PACS") from None
        except PARSE_ERRORS as exc:
            text = str(exc).lower()
            if "less than expected" in text or "truncat" in text or isinstance(exc, EOFError):
                raise DataError(f"{path}: pixel data is truncated (the file is incomplete)",
                                hint="copy or export the file again") from None
            raise DataError(f"{path}: image attributes or pixel data are malformed ({type(exc).__name__})",
                            hint="export the file again from the PACS") from None


def _spacing(ds: Any) -> tuple[float, ...] | None:
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    step = ds.get("SpacingBetweenSlices") or ds.get("SliceThickness")
    shared = ds.get("SharedFunctionalGroupsSequence")
    if spacing is None and shared:
        measures = shared[0].get("PixelMeasuresSequence")
        if measures:
            spacing = measures[0].get("PixelSpacing")
            step = step or measures[0].get("SpacingBetweenSlices") or measures[0].get("SliceThickness")
    try:
        rc = tuple(float(v) for v in spacing) if spacing is not None else None
        if rc is None or len(rc) != 2 or min(rc) <= 0:
            return None
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        return (float(step), *rc) if frames > 1 and step else rc
    except (TypeError, ValueError):
        return None


def _slice_key(path: Path, ds: Any) -> tuple:
    try:
        pos = np.asarray([float(v) for v in ds.ImagePositionPatient])
        ori = np.asarray([float(v) for v in ds.ImageOrientationPatient])
        normal = np.cross(ori[:3], ori[3:])  # slice normal from the row and column direction cosines
        return (0, float(pos @ normal), path.name)
    except (AttributeError, TypeError, ValueError):
        pass
    try:
        return (1, float(ds.InstanceNumber), path.name)
    except (AttributeError, TypeError, ValueError):
        return (2, 0.0, path.name)
