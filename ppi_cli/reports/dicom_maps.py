# SPDX-License-Identifier: MIT
"""DICOM objects a viewer overlays on the source images: a Parametric Map and a Segmentation.

The secondary capture (`dicom_sc.py`) is a picture for any PACS viewer; these carry the map itself,
frame by frame on the source images' planes, so a viewer that knows them (OHIF, 3D Slicer,
Weasis) lays them over the scan at the right place. highdicom (extra `dicom-out`) writes them:
a Parametric Map of the signed float32 saliency (PS3.3 A.75) and a binary Segmentation of the
thresholded map (A.51). Both reference the source series and SOP instances (Referenced Series
and Source Image sequences) and, being derived objects filed back beside their source, carry its
patient and study modules, which highdicom copies from the sources. Nothing else of ppi does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli import __version__
from ppi_cli.errors import DataError, MissingExtraError
from ppi_cli.files import atomic_path

__all__ = ["require_highdicom", "write_parametric_map", "write_segmentation", "MAP_SERIES_NUMBER",
           "SEG_SERIES_NUMBER"]

MAP_SERIES_NUMBER = 9902  # after the secondary capture's 9901: derived series sort after the acquired ones
SEG_SERIES_NUMBER = 9903
_MANUFACTURER = dict(manufacturer="ppi", manufacturer_model_name="ppi explain", software_versions=__version__,
                     device_serial_number="none")


def require_highdicom(flag: str) -> Any:
    """The highdicom module, or the one-line error naming the extra (before anything is written).

    Raises:
        MissingExtraError: highdicom is not installed.
    """
    try:
        import highdicom
    except ImportError:
        raise MissingExtraError(flag, "dicom-out", "highdicom") from None
    return highdicom


def write_parametric_map(path: str | Path, frames: np.ndarray, sources: Sequence[Any], description: str) -> Path:
    """Write float32 `frames` (one per source image, same order) as a DICOM Parametric Map, atomically.

    Args:
        path: Output `.dcm`.
        frames: (N, rows, cols) saliency on the source images' pixels.
        sources: N pydicom headers of single-frame images of one series (pixel data not needed).
        description: What the map is (method, model, score); becomes the content description.

    Raises:
        MissingExtraError: highdicom is not installed.
        DataError: highdicom cannot derive a map from these sources (the message says why).

    Example:
        >>> write_parametric_map("map.dcm", saliency[None], [header], "wbp saliency of tiny (score 0.91)")
    """
    hd = require_highdicom("--dicom-map")
    frames = np.ascontiguousarray(frames, dtype=np.float32)
    low, high = float(frames.min()), float(frames.max())
    half = max(abs(low), abs(high)) or 1.0
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="saliency", lut_explanation=description[:64], unit=hd.sr.CodedConcept("1", "UCUM", "no units"),
        value_range=(low, high), slope=1.0, intercept=0.0)
    window = hd.VOILUTTransformation(window_center=0.0, window_width=2.0 * half)
    return _save(path, lambda: hd.pm.ParametricMap(
        list(sources), frames, hd.UID(), MAP_SERIES_NUMBER, hd.UID(), 1, **_MANUFACTURER,
        contains_recognizable_visual_features=False, real_world_value_mappings=[mapping],
        voi_lut_transformations=[window], content_description=_lo(description), content_label="SALIENCY",
        series_description="ppi saliency map"), "--dicom-map")


def write_segmentation(path: str | Path, mask: np.ndarray, sources: Sequence[Any], description: str) -> Path:
    """Write a boolean `mask` (one frame per source image) as a binary DICOM Segmentation, atomically.

    The one segment is a saliency region (category "Spatial and relational concept", type DCM
    "Saliency"), made by an automatic algorithm named ppi; empty frames are left out unless all are.

    Raises:
        MissingExtraError: highdicom is not installed.
        DataError: highdicom cannot derive a segmentation from these sources (the message says why).

    Example:
        >>> write_segmentation("seg.dcm", saliency[None] >= 0.5 * saliency.max(), [header], "wbp saliency")
    """
    hd = require_highdicom("--dicom-seg")
    from pydicom.sr.codedict import codes

    mask = np.ascontiguousarray(mask, dtype=bool)
    algorithm = hd.AlgorithmIdentificationSequence(name="ppi explain", version=__version__,
                                                   family=codes.cid7162.ArtificialIntelligence)
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label="saliency", segmented_property_type=codes.DCM.Saliency,
        segmented_property_category=codes.cid7150.SpatialAndRelationalConcept,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm)
    return _save(path, lambda: hd.seg.Segmentation(
        list(sources), mask.astype(np.uint8), hd.seg.SegmentationTypeValues.BINARY, [segment], hd.UID(),
        SEG_SERIES_NUMBER, hd.UID(), 1, **_MANUFACTURER, content_description=_lo(description),
        content_label="SALIENCY", omit_empty_frames=bool(mask.any()), series_description="ppi saliency region"),
        "--dicom-seg")


def _save(path: str | Path, build: Any, flag: str) -> Path:
    """Build the object (highdicom checks the sources as it goes) and save it atomically."""
    try:
        dataset = build()
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{flag}: highdicom cannot derive this object from the input ({reason})",
                        hint="use --nifti-out or --dicom-out for this input") from None
    with atomic_path(path) as tmp:
        dataset.save_as(tmp, enforce_file_format=True)
    return Path(path)


def _lo(text: str) -> str:
    """A value for an LO attribute: at most 64 characters, no backslash."""
    return text.replace("\\", "/")[:64]
