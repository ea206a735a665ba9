# SPDX-License-Identifier: MIT
"""`ppi prepare ga`: a multi-site OCT manifest becomes one GA cache of equally shaped volumes.

Each volume is read (any format `read_volume` knows), normalised by its site config
(`normalise_volume`) and stored as a part file in `<out>/.parts/`, so an interrupted run resumes
where it stopped. When every volume is done, the parts are assembled into the cache (design.md
"Cache"): `volumes.npy` (N, n_bscans, H, W) uint8, `masks.npy` when the manifest has masks,
`manifest.csv` (one row per volume, with what was done to it), `errors.csv` for volumes that could
not be read, and `cache.json` last. Subject IDs go into `manifest.csv` only, never into a message.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli import console
from ppi_cli.config.loader import to_dict
from ppi_cli.config.resources import bundled_dir
from ppi_cli.config.site import SiteConfig, load_site_configs
from ppi_cli.data.cache import INFO_FILE, MANIFEST_FILE, read_manifest, write_cache_info
from ppi_cli.data.ga.manifest import ManifestRow, read_ga_manifest
from ppi_cli.data.ga.normalise import normalise_mask, normalise_volume, preprocess_volume
from ppi_cli.data.oct.readers import read_volume
from ppi_cli.data.parts import (
    ERRORS_FILE,
    MASKS_FILE,
    PARTS_DIR,
    VOLUMES_FILE,
    assemble_volumes,
    cache_up_to_date,
    open_parts,
    part_key,
    per_site,
)
from ppi_cli.errors import ConfigError, DataError, PpiError
from ppi_cli.files import (
    atomic_write,
    check_outputs,
    output_lock,
    remove_stale_tmp,
    sha256_file,
    shareable_path,
    shareable_text,
    write_csv,
)

__all__ = ["GaPrepareConfig", "GaPrepareResult", "prepare_ga", "resolve_sites_dir", "normalise_volume",
           "preprocess_volume", "rebuild_command", "PARTS_DIR"]



@dataclass(frozen=True)
class GaPrepareConfig:
    """Options of `ppi prepare ga`, one field per flag."""

    manifest: Path  # labels CSV; volume paths are relative to it
    out: Path  # cache folder
    sites: Path | None = None  # site config folder; None: site_configs/ beside the manifest, else the bundled ones
    bscan_size: tuple[int, int] = (299, 299)  # (H, W) of cached B-scans; 299 is Inception-v3's input (paper)
    n_bscans: int = 100  # B-scans per cached volume (A2A protocol: 100)
    workers: int = 0  # worker processes; 0 reads in this process
    strict: bool = False  # stop at the first unreadable volume instead of listing it in errors.csv
    allow_outside_root: bool = False  # accept manifest paths outside the manifest's folder


@dataclass
class GaPrepareResult:
    """What `prepare_ga` did (printed by the CLI as a table, or as JSON)."""

    out: Path
    sites_dir: Path
    n_volumes: int
    n_errors: int
    reused: int  # volumes taken from an interrupted earlier run
    up_to_date: bool  # the cache already matched manifest and parameters: nothing was done
    per_site: dict[str, dict[str, int]] = field(default_factory=dict)  # site -> volumes, positives, errors
    written: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for `--json`)."""
        return {"out": str(self.out), "sites_dir": str(self.sites_dir), "n_volumes": self.n_volumes,
                "n_errors": self.n_errors, "reused": self.reused, "up_to_date": self.up_to_date,
                "per_site": self.per_site, "written": [str(p) for p in self.written]}


@dataclass(frozen=True)
class _Task:
    """One volume's work, sent to a worker process (plain, picklable data)."""

    path: Path
    mask_path: Path | None
    site_cfg: SiteConfig
    n_bscans: int
    bscan_size: tuple[int, int]
    part: Path
    root: Path  # the manifest's folder: errors name volumes relative to it


def rebuild_command(cfg: GaPrepareConfig) -> str:
    """The command that builds this cache again (named by every cache error)."""
    height, width = cfg.bscan_size
    return (f"ppi prepare ga --manifest {cfg.manifest} --out {cfg.out} --bscan-size {height}x{width} "
            f"--n-bscans {cfg.n_bscans}")


def resolve_sites_dir(explicit: Path | None, manifest: Path) -> Path:
    """`--sites`, else a `site_configs/` folder beside the manifest (as `ppi synth ga` writes), else the bundled."""
    if explicit is not None:
        return explicit
    beside = manifest.parent / "site_configs"
    return beside if beside.is_dir() else bundled_dir("site_configs")


def prepare_ga(cfg: GaPrepareConfig) -> GaPrepareResult:
    """Build (or resume, or confirm) a GA cache from a manifest; see the module docstring.

    Example:
        >>> prepare_ga(GaPrepareConfig(Path("labels.csv"), Path("cache/ga"), bscan_size=(64, 64), n_bscans=32))

    Raises:
        DataError: Bad manifest; with `strict`, the first unreadable volume; no readable volume at all.
        ConfigError: Bad site configs.
        CacheError: `out` holds a cache of another kind.
    """
    sites_dir = resolve_sites_dir(cfg.sites, cfg.manifest)
    site_cfgs = load_site_configs(sites_dir)
    rows, extra_columns = read_ga_manifest(cfg.manifest, site_cfgs, allow_outside_root=cfg.allow_outside_root)
    height, width = cfg.bscan_size
    params = {"n_bscans": cfg.n_bscans, "bscan_height": height, "bscan_width": width,
              "sites": {s: to_dict(site_cfgs[s]) for s in sorted({r.site for r in rows})}}
    manifest_hash = sha256_file(cfg.manifest)
    _check_out(cfg, rows, sites_dir)
    with output_lock(cfg.out):
        return _prepare_locked(cfg, rows, extra_columns, site_cfgs, sites_dir, params, manifest_hash)


def _check_out(cfg: GaPrepareConfig, rows: list[ManifestRow], sites_dir: Path) -> None:
    """The cache never goes into the manifest's own folder, and none of its files is an input."""
    if os.path.realpath(cfg.out) == os.path.realpath(cfg.manifest.parent):
        raise ConfigError(f"--out is the folder of the manifest {cfg.manifest.name}: the cache would overwrite "
                          "its inputs there; nothing was written", hint="choose another --out, e.g. cache/ga")
    inputs: dict[str, Path | None] = {"the manifest (--manifest)": cfg.manifest, "the site configs": sites_dir}
    for row in rows:
        inputs[f"the volume on manifest line {row.line}"] = row.path
        inputs[f"the mask on manifest line {row.line}"] = row.mask_path
    outputs = {f"--out ({name})": cfg.out / name for name in
               (MANIFEST_FILE, VOLUMES_FILE, MASKS_FILE, ERRORS_FILE, INFO_FILE, PARTS_DIR)}
    check_outputs(outputs, inputs)


def _prepare_locked(cfg: GaPrepareConfig, rows: list[ManifestRow], extra_columns: list[str],
                    site_cfgs: dict[str, SiteConfig], sites_dir: Path, params: dict[str, Any],
                    manifest_hash: str) -> GaPrepareResult:
    out = cfg.out
    height, width = cfg.bscan_size
    if removed := remove_stale_tmp(out):
        console.log(f"removed {removed} temporary file(s) left by an interrupted run")
    if _up_to_date(cfg, params, manifest_hash):
        console.log(f"{out}: cache is up to date with {cfg.manifest.name} and these parameters; nothing to do")
        frame, failed_sites = _read_cache_tables(out)
        return GaPrepareResult(out, sites_dir, len(frame), len(failed_sites), len(frame), True,
                               per_site(frame, failed_sites))
    parts = open_parts(out, params)
    tasks = [_Task(r.path, r.mask_path, site_cfgs[r.site], cfg.n_bscans, (height, width),
                   parts / f"{_part_key(r)}.npz", cfg.manifest.parent) for r in rows]
    pending = [(r, t) for r, t in zip(rows, tasks, strict=True) if not t.part.is_file()]
    reused = len(rows) - len(pending)
    if reused:
        console.log(f"resuming: {reused} of {len(rows)} volumes were prepared by an earlier run")
    errors = _run(pending, cfg)
    result = _assemble(cfg, rows, tasks, errors, extra_columns, params, manifest_hash, sites_dir)
    result.reused = reused
    shutil.rmtree(parts, ignore_errors=True)
    return result


def _prepare_one(task: _Task) -> str | None:
    """Read, normalise and store one volume as a part file; returns the error line, or None.

    The error line goes into errors.csv, so it names files relative to the manifest's folder (never a full path).
    """
    try:
        volume = read_volume(task.path)
        array, record = normalise_volume(volume.array, task.site_cfg, task.n_bscans, task.bscan_size)
        record.update(source_format=volume.source_format, reader_notes=volume.notes,
                      spacing_mm="x".join(f"{s:g}" for s in volume.spacing_mm) if volume.spacing_mm else "")
        payload = {"volume": array, "record": np.array(json.dumps(record))}
        if task.mask_path is not None:
            raw_mask = read_volume(task.mask_path).array
            payload["mask"] = normalise_mask(raw_mask, record, task.site_cfg, task.n_bscans, task.bscan_size)
    except PpiError as exc:
        return shareable_text(exc.one_line(), [task.path, task.mask_path], task.root)
    with atomic_write(task.part, "wb") as fh:
        np.savez(fh, **payload)
    return None


def _run(pending: Sequence[tuple[ManifestRow, _Task]], cfg: GaPrepareConfig) -> dict[int, str]:
    """Prepare the pending volumes (in workers when asked); returns manifest line -> error."""
    errors: dict[int, str] = {}
    if not pending:
        return errors
    with console.progress_bar("GA volumes", total=len(pending)) as bar:
        task_id = bar.task_ids[0]

        def done(row: ManifestRow, error: str | None) -> None:
            bar.advance(task_id)
            if error is None:
                return
            if cfg.strict:
                raise DataError(f"{cfg.manifest}:{row.line} ({row.sample_id}): {error}",
                                hint="fix or remove the row, or run without --strict to list it in errors.csv")
            errors[row.line] = error

        if cfg.workers <= 0 or len(pending) == 1:
            for row, task in pending:
                done(row, _prepare_one(task))
            return errors
        # spawn: a forked child would inherit the parent's threads (torch, rich) mid-state.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(cfg.workers, len(pending)), mp_context=context) as pool:
            futures = {pool.submit(_prepare_one, task): row for row, task in pending}
            try:
                for future in as_completed(futures):
                    done(futures[future], future.result())
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    return errors


def _assemble(cfg: GaPrepareConfig, rows: list[ManifestRow], tasks: list[_Task], errors: dict[int, str],
              extra_columns: list[str], params: dict[str, Any], manifest_hash: str,
              sites_dir: Path) -> GaPrepareResult:
    import pandas as pd

    out = cfg.out
    done = [(r, t) for r, t in zip(rows, tasks, strict=True) if r.line not in errors]
    failed = [r for r in rows if r.line in errors]
    errors_path = out / ERRORS_FILE
    error_rows = pd.DataFrame([{"line": r.line, "sample_id": r.sample_id, "site": r.site,
                                "path": shareable_path(r.path, cfg.manifest.parent), "error": errors[r.line]}
                               for r in failed])
    if not done:
        write_csv(errors_path, error_rows)
        raise DataError(f"{cfg.manifest}: none of the {len(rows)} volumes could be read", hint=f"see {errors_path}")
    if failed:
        console.warn(f"{len(failed)} of {len(rows)} volumes could not be read; they are listed in {errors_path}")
    with_masks = any(r.mask_path is not None for r in rows)
    height, width = cfg.bscan_size
    shape = (len(done), cfg.n_bscans, height, width)
    files, frame = assemble_volumes(
        out, [task.part for _row, task in done], shape, with_masks,
        lambda records: _cache_manifest(done, records, extra_columns, with_masks, any(r.visit for r in rows)),
        error_rows if failed else None)
    write_cache_info(out, "ga", params, len(done), files, extra={
        "manifest": str(cfg.manifest), "manifest_sha256": manifest_hash, "sites_dir": str(sites_dir),
        "n_errors": len(failed), "rebuild": rebuild_command(cfg)})
    return GaPrepareResult(out, sites_dir, len(done), len(failed), 0, False, per_site(frame, [r.site for r in failed]),
                           [out / f for f in files] + [out / INFO_FILE])


def _cache_manifest(done: list[tuple[ManifestRow, _Task]], records: list[dict[str, Any]], extra_columns: list[str],
                    with_masks: bool, with_visit: bool) -> Any:
    import pandas as pd

    table = []
    for (row, _task), record in zip(done, records, strict=True):
        entry: dict[str, Any] = {"sample_id": row.sample_id, "subject_id": row.subject_id, "eye": row.eye,
                                 "site": row.site, "label": row.label}
        if with_visit:
            entry["visit"] = row.visit
        entry["path"] = row.rel_path
        if with_masks:
            entry.update(mask_path=row.rel_mask, has_mask=int(row.mask_path is not None))
        entry.update({k: record.get(k, "") for k in ("source_format", "orig_shape", "spacing_mm", "reader_notes",
                                                     "intensity", "intensity_low", "intensity_high", "padding",
                                                     "pad_left", "pad_right", "resample")})
        for column in extra_columns:  # the user's own columns; never let one overwrite ours
            entry[column if column not in entry else f"manifest_{column}"] = row.extra[column]
        table.append(entry)
    return pd.DataFrame(table)


def _up_to_date(cfg: GaPrepareConfig, params: dict[str, Any], manifest_hash: str) -> bool:
    return cache_up_to_date(cfg.out, "ga", rebuild_command(cfg), params, manifest_hash)


def _part_key(row: ManifestRow) -> str:
    """Names a part by what it depends on: the source (and its size and time), the mask and the site."""
    return part_key({"volume": row.path, "mask": row.mask_path}, site=row.site)


def _read_cache_tables(out: Path) -> tuple[Any, list[str]]:
    """The cache manifest and the sites of the volumes listed in errors.csv."""
    import pandas as pd

    frame = read_manifest(out, required=("sample_id", "site", "label"))
    errors_path = out / ERRORS_FILE
    failed = pd.read_csv(errors_path, dtype=str)["site"].tolist() if errors_path.is_file() else []
    return frame, failed
