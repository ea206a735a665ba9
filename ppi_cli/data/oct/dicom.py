# SPDX-License-Identifier: MIT
"""DICOM Ophthalmic Tomography (OPT) multi-frame reader: one frame per B-scan, frames in stack order.

Frames are ordered by `InStackPositionNumber` of each frame's Frame Content (PS3.3 A.52.4.3), else by
the `DimensionIndexValues` entry that points at it, else kept in file order; file order alone is
not the B-scan order (data-protocols.md B.7). Spacing comes from the Pixel Measures functional group
(shared, else the first frame's), else from the top-level attributes. Patient attributes are never
read into anything this module returns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli.data.limits import check_dicom_size
from ppi_cli.data.oct.volume import OctVolume, to_uint8
from ppi_cli.errors import DataError, MissingExtraError

__all__ = ["read_dicom_opt", "frame_order", "OPT_SOP_CLASS_UID", "IN_STACK_POSITION_TAG", "FRAME_CONTENT_TAG"]

OPT_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.77.1.5.4"  # Ophthalmic Tomography Image Storage
IN_STACK_POSITION_TAG = 0x00209057
FRAME_CONTENT_TAG = 0x00209111


def read_dicom_opt(path: Path) -> OctVolume:
    """Read a DICOM OCT volume (OPT multi-frame, or any single/multi-frame greyscale DICOM).

    Example:
        >>> read_dicom_opt(Path("volume.dcm")).array.shape  # (frames, rows, columns)

    Raises:
        DataError: No pixel data, colour data, or duplicate stack positions.
        MissingExtraError: Compressed pixel data without a decoder installed.
    """
    import pydicom

    ds = pydicom.dcmread(path)
    if "PixelData" not in ds:
        raise DataError(f"{path}: DICOM file has no pixel data (SOP class {ds.get('SOPClassUID', '?')})",
                        hint="point the manifest at the OCT image object, not a report or localizer")
    pixels = _pixel_array(ds, path)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise DataError(f"{path}: colour DICOM ({ds.get('PhotometricInterpretation', '?')}); OCT B-scans are grey",
                        hint="export the OCT volume as MONOCHROME2")
    if n_frames == 1 and pixels.ndim == 2:
        pixels = pixels[None]  # (1, rows, cols)
    pixels = pixels[frame_order(ds, pixels.shape[0], path)]
    array, notes = to_uint8(pixels)
    if ds.get("PhotometricInterpretation", "MONOCHROME2") == "MONOCHROME1":
        array = 255 - array  # MONOCHROME1 shows low values bright; OCT convention is bright = reflective
        notes = "; ".join(filter(None, [notes, "MONOCHROME1 inverted"]))
    return OctVolume(np.ascontiguousarray(array), _spacing(ds), "dicom", notes)


def frame_order(ds: Any, n_frames: int, path: Path | str = "") -> np.ndarray:
    """Indices that put the stored frames in B-scan order.

    Args:
        ds: A pydicom Dataset.
        n_frames: Frames in the pixel data.
        path: For messages.

    Returns:
        int array of length `n_frames`: `pixels[order]` is in stack order.
    """
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if not per_frame or len(per_frame) != n_frames:
        return np.arange(n_frames)
    contents = [_first(item, "FrameContentSequence") for item in per_frame]
    positions = [c.get("InStackPositionNumber") if c is not None else None for c in contents]
    if all(p is not None for p in positions):
        keys = [int(p) for p in positions]
        what = "InStackPositionNumber"
    else:
        values = [c.get("DimensionIndexValues") if c is not None else None for c in contents]
        if any(v is None for v in values):
            return np.arange(n_frames)
        values = [[v] if isinstance(v, int) else list(v) for v in values]  # VM 1 reads as a plain int
        pointer = _stack_dimension(ds)
        if pointer is not None and all(len(v) > pointer for v in values):
            keys = [int(v[pointer]) for v in values]
        else:  # no dimension points at the stack position: the whole index tuple orders the frames
            keys = [tuple(int(x) for x in v) for v in values]
        what = "DimensionIndexValues"
    if len(set(keys)) != len(keys):
        raise DataError(f"{path}: two frames share one {what}; the B-scan order is ambiguous",
                        hint="export the volume again, or as one file per B-scan in a numbered folder")
    return np.array(sorted(range(n_frames), key=lambda i: keys[i]), dtype=np.int64)


def _stack_dimension(ds: Any) -> int | None:
    """Which entry of DimensionIndexValues is the in-stack position, if the header says."""
    for i, item in enumerate(ds.get("DimensionIndexSequence") or []):
        pointer = item.get("DimensionIndexPointer")
        if pointer is not None and int(pointer) == IN_STACK_POSITION_TAG:
            return i
    return None


def _pixel_array(ds: Any, path: Path) -> np.ndarray:
    check_dicom_size(path, ds)
    try:
        return ds.pixel_array
    except (RuntimeError, NotImplementedError) as exc:
        syntax = ds.file_meta.get("TransferSyntaxUID", "?") if hasattr(ds, "file_meta") else "?"
        if "decod" in str(exc).lower() or "plugin" in str(exc).lower() or "handler" in str(exc).lower():
            raise MissingExtraError(f"decoding compressed DICOM pixel data ({path.name}, transfer syntax "
                                    f"{syntax})", "codecs", "pylibjpeg") from None
        raise


def _spacing(ds: Any) -> tuple[float, float, float] | None:
    measures = _first(_first(ds, "SharedFunctionalGroupsSequence"), "PixelMeasuresSequence")
    if measures is None:
        measures = _first(_first(ds, "PerFrameFunctionalGroupsSequence"), "PixelMeasuresSequence")
    source = measures if measures is not None else ds
    pixel = source.get("PixelSpacing") or ds.get("PixelSpacing")
    between = (source.get("SpacingBetweenSlices") or ds.get("SpacingBetweenSlices")
               or source.get("SliceThickness") or ds.get("SliceThickness"))
    if not pixel or len(pixel) != 2 or between is None:
        return None
    values = (float(between), float(pixel[0]), float(pixel[1]))  # PixelSpacing is (row = axial, column = lateral)
    return values if all(v > 0 for v in values) else None


def _first(ds: Any, keyword: str) -> Any:
    if ds is None:
        return None
    seq = ds.get(keyword)
    return seq[0] if seq else None
