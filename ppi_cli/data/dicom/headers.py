# SPDX-License-Identifier: MIT
"""DICOM headers without pixels, and single slices in Hounsfield units.

`read_header` parses only the tags a series needs (UIDs, geometry, rescale) and records where the
pixel data starts without reading it, so scanning a 244,000-file LIDC download costs a fraction of
decoding it, and a file cut short by an interrupted download is recognised from its header alone.
`read_slice_hu` decodes one slice and applies RescaleSlope/Intercept; `ppi explain` reuses it.

Patient IDs read here are kept for the cache manifest only; nothing in this module logs them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ppi_cli.data.limits import check_dicom_size
from ppi_cli.errors import DataError, MissingExtraError

__all__ = ["SliceHeader", "read_header", "read_slice_hu", "find_files", "is_dicom_file", "group_by_series",
           "NON_DICOM_SUFFIXES"]

# Files under a TCIA download that are certainly not DICOM; everything else is probed for the magic.
NON_DICOM_SUFFIXES = frozenset({".xml", ".csv", ".txt", ".json", ".md", ".zip", ".gz", ".png", ".jpg", ".html",
                                ".pdf", ".tcia", ".log", ".tmp", ".npy"})
_PIXEL_DATA = 0x7FE00010
_HEADER_TAGS = [
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "Modality", "PatientID", "ImagePositionPatient",
    "PixelSpacing", "Rows", "Columns", "InstanceNumber", "RescaleSlope", "RescaleIntercept", "BitsAllocated",
    "SamplesPerPixel", "NumberOfFrames", "PixelData",
]


@dataclass(frozen=True, slots=True)  # slots: a full LIDC scan holds about 244,000 of these
class SliceHeader:
    """What prepare needs to know about one DICOM file, read without its pixel data.

    `z` is ImagePositionPatient[2] in mm; `pixel_spacing` is (row spacing, column spacing) in mm as
    DICOM PixelSpacing orders them. `truncated` is True when the file ends before its pixel data does.
    """

    path: Path
    study_uid: str
    series_uid: str
    sop_uid: str
    modality: str
    patient_id: str
    z: float | None
    rows: int
    cols: int
    pixel_spacing: tuple[float, float] | None
    instance_number: int | None
    transfer_syntax: str
    truncated: bool


def is_dicom_file(path: Path) -> bool:
    """True when `path` starts with the DICOM preamble and `DICM` magic (Part 10 file)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def find_files(root: Path) -> Iterator[Path]:
    """Every regular file under `root`, in a stable (sorted) order; hidden files and folders are skipped."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(folder) / name


def read_header(path: Path) -> SliceHeader:
    """Read the header of one DICOM file (pixel data located, not read).

    Args:
        path: A DICOM Part 10 file.

    Returns:
        The file's `SliceHeader`.

    Raises:
        DataError: The file is not DICOM, or its header is cut short or lacks the series UIDs.

    Example:
        >>> h = read_header(Path("1-001.dcm"))
        >>> h.series_uid, h.z
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, defer_size=1024, specific_tags=_HEADER_TAGS)
    except InvalidDicomError:
        raise DataError(f"{path}: not a DICOM file", hint="remove it from the data folder") from None
    except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: unreadable DICOM header ({type(exc).__name__})",
                        hint="download this series again") from None
    study, series = _text(ds, 0x0020000D), _text(ds, 0x0020000E)
    if not study or not series:
        raise DataError(f"{path}: DICOM header is truncated or lacks Study/Series Instance UID",
                        hint="download this series again")
    try:
        position = _text(ds, 0x00200032).split("\\")
        z = float(position[2]) if len(position) == 3 else None
        spacing = _text(ds, 0x00280030).split("\\")
        pixel_spacing = (float(spacing[0]), float(spacing[1])) if len(spacing) == 2 else None
        number = _text(ds, 0x00200013)
        instance_number = int(float(number)) if number else None
    except ValueError:
        raise DataError(f"{path}: malformed ImagePositionPatient, PixelSpacing or InstanceNumber in the DICOM header",
                        hint="download this series again") from None
    rows, cols, bits = _unsigned(ds, 0x00280010), _unsigned(ds, 0x00280011), _unsigned(ds, 0x00280100) or 16
    syntax = str(getattr(ds.file_meta, "TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
    return SliceHeader(
        path=Path(path), study_uid=study, series_uid=series, sop_uid=_text(ds, 0x00080018),
        modality=_text(ds, 0x00080060).upper(), patient_id=_text(ds, 0x00100020), z=z, rows=rows, cols=cols,
        pixel_spacing=pixel_spacing, instance_number=instance_number, transfer_syntax=syntax,
        truncated=_pixel_data_truncated(ds, path, rows * cols * bits // 8),
    )


# Header values are decoded from the raw bytes: pydicom's per-element conversion costs more than
# the file read itself, and these tags have fixed VRs (UI, CS, LO, DS, IS as text; US as uint16).
def _text(ds, tag: int) -> str:
    """A text element's value ("a\\b" for multi-valued ones), stripped of DICOM padding; "" when absent."""
    element = ds.get_item(tag, keep_deferred=True)
    value = None if element is None else element.value
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1").strip(" \x00")
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip(" \x00")


def _unsigned(ds, tag: int) -> int:
    """A US element's value; 0 when absent."""
    element = ds.get_item(tag, keep_deferred=True)
    value = None if element is None else element.value
    if isinstance(value, bytes):
        return int.from_bytes(value[:2], "little" if getattr(element, "is_little_endian", True) else "big")
    return int(value or 0)


def _pixel_data_truncated(ds, path: Path, expected: int) -> bool:
    """True when the file is shorter than its pixel data element says (an interrupted download)."""
    raw = ds.get_item(_PIXEL_DATA, keep_deferred=True)  # the deferred element: length and offset, no bytes read
    if raw is None:
        return expected > 0
    length, tell = getattr(raw, "length", None), getattr(raw, "value_tell", None)
    if raw.value is not None or tell is None:  # small enough to be read: the bytes are in memory
        return len(raw.value or b"") < expected
    if length == 0xFFFFFFFF:  # encapsulated (compressed) pixel data: the length is not known up front
        return os.path.getsize(path) <= tell
    return os.path.getsize(path) < tell + length or length < expected


def read_slice_hu(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, float]]:
    """Decode one CT slice to Hounsfield units.

    HU = stored value × RescaleSlope + RescaleIntercept (DICOM PS3.3 C.11.1.1.2); slope 1 and
    intercept 0 when the tags are absent.

    Args:
        path: A single-frame DICOM image.

    Returns:
        `(hu, (row_mm, col_mm))`: float32 (H, W) HU values and the PixelSpacing (1 mm each when absent).

    Raises:
        DataError: Unreadable, truncated or multi-frame file.
        MissingExtraError: Compressed pixel data whose decoder is not installed (the `codecs` extra).

    Example:
        >>> hu, (row_mm, col_mm) = read_slice_hu("1-001.dcm")
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        raise DataError(f"{path}: not a DICOM file", hint="pass a DICOM image (.dcm)") from None
    except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: unreadable DICOM file ({type(exc).__name__})", hint="check the file") from None
    if "PixelData" not in ds:
        raise DataError(f"{path}: DICOM file has no pixel data", hint="pass an image, not a report or XML")
    _require_decoder(path, ds)
    check_dicom_size(path, ds)
    try:
        pixels = ds.pixel_array
    except (ValueError, RuntimeError, NotImplementedError, AttributeError, EOFError) as exc:
        raise DataError(f"{path}: cannot decode the pixel data ({str(exc).splitlines()[0][:120]})",
                        hint="download this file again") from None
    if pixels.ndim != 2:
        raise DataError(f"{path}: expected one 2D slice, got pixel data of shape {pixels.shape}",
                        hint="pass a single-frame grayscale CT slice")
    try:  # the message names the tags, never their values: a malformed value may be patient data
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
        spacing = ds.get("PixelSpacing")
        pixel_spacing = ((float(spacing[0]), float(spacing[1])) if spacing is not None and len(spacing) == 2
                         else (1.0, 1.0))
    except (TypeError, ValueError):
        raise DataError(f"{path}: malformed RescaleSlope, RescaleIntercept or PixelSpacing in the DICOM header "
                        "(not numbers)", hint="export the file again from the PACS") from None
    if not (np.isfinite(slope) and np.isfinite(intercept)):
        raise DataError(f"{path}: RescaleSlope or RescaleIntercept is not finite", hint="export the file again")
    hu = pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    return hu, pixel_spacing


def _require_decoder(path: Path, ds) -> None:
    """Raise MissingExtraError when the file is compressed and no installed plugin decodes it."""
    from pydicom.pixels import get_decoder

    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or not syntax.is_compressed:
        return
    try:
        available = get_decoder(syntax).is_available
    except NotImplementedError:  # a transfer syntax pydicom has no decoder for at all
        raise DataError(f"{path}: pixel data in transfer syntax {syntax.name} cannot be decoded",
                        hint="convert the file to an uncompressed transfer syntax") from None
    if not available:
        raise MissingExtraError(f"reading {path.name} ({syntax.name})", "codecs", "pylibjpeg")


def group_by_series(headers: Iterable[SliceHeader]) -> dict[tuple[str, str], list[SliceHeader]]:
    """Group headers by (StudyInstanceUID, SeriesInstanceUID), never by folder."""
    series: dict[tuple[str, str], list[SliceHeader]] = {}
    for header in headers:
        series.setdefault((header.study_uid, header.series_uid), []).append(header)
    return series
