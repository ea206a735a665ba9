# SPDX-License-Identifier: MIT
"""`ppi prepare table`: a hospital cohort listed in a CSV becomes one `table` cache of multi-view samples.

Each row's image (any format `read_table_image` knows; 2-D or 3-D) is normalised (`normalise_image`:
slice picks, intensity window, spacing-aware in-plane fit) and stored as a part file in
`<out>/.parts/`, so an interrupted or repeated run skips the rows already done (`data/parts.py`, as
`prepare ga` does). Then the parts are assembled (design.md "Cache"): `volumes.npy`
(N, S, size, size) uint8 in the GA layout, so the multi-view model and the GA Dataset serve both;
`masks.npy` when the table has masks; `manifest.csv`; `errors.csv` listing every bad row with its
reason; `cache.json` last. S is `n_slices` when any image is a volume (a 2-D image is then repeated
S times: its S identical slices give the same score as the image alone, whatever the attention
weights), else 1. Subject IDs go into `manifest.csv` only; no DICOM header value is read into anything.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli import console
from ppi_cli.data.cache import INFO_FILE, read_manifest, write_cache_info
from ppi_cli.data.parts import (
    ERRORS_FILE,
    VOLUMES_FILE,
    assemble_volumes,
    cache_up_to_date,
    open_parts,
    part_key,
    per_site,
)
from ppi_cli.data.table.images import read_table_image
from ppi_cli.data.table.manifest import BadRow, TableRow, read_table_manifest
from ppi_cli.data.table.normalise import DEFAULT_PERCENTILES, normalise_image, normalise_image_mask
from ppi_cli.errors import ConfigError, DataError, PpiError
from ppi_cli.files import (
    atomic_write,
    output_lock,
    remove_stale_tmp,
    sha256_file,
    shareable_text,
    write_csv,
)

__all__ = ["TablePrepareConfig", "TablePrepareResult", "prepare_table", "rebuild_command", "ERRORS_FILE"]



@dataclass(frozen=True)
class TablePrepareConfig:
    """Options of `ppi prepare table`, one field per flag."""

    manifest: Path  # the cohort CSV; image paths are relative to it
    out: Path  # the cache folder
    size: int = 299  # side of the cached square slices (ours: Inception_v3's input, as GA)
    n_slices: int = 16  # slices kept per volume (ours: enough to cover a scan, small enough for a batch)
    window: tuple[float, float] | None = None  # intensity window in the images' units; None: percentiles
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES  # the window of each image when `window` is None
    strict: bool = False  # stop at the first bad row instead of listing it in errors.csv


@dataclass
class TablePrepareResult:
    """What `prepare_table` did."""

    out: Path
    n_samples: int
    n_errors: int
    n_slices: int
    reused: int  # rows taken from an earlier run's parts
    up_to_date: bool  # the cache already matched table and parameters: nothing was done
    per_site: dict[str, dict[str, int]] = field(default_factory=dict)  # site -> volumes, positives, errors
    written: list[Path] = field(default_factory=list)


def rebuild_command(cfg: TablePrepareConfig) -> str:
    """The command that builds this cache again (named by every cache error)."""
    window = f" --window {cfg.window[0]:g},{cfg.window[1]:g}" if cfg.window else ""
    return (f"ppi prepare table --manifest {cfg.manifest} --out {cfg.out} --size {cfg.size} "
            f"--n-slices {cfg.n_slices}{window}")


def prepare_table(cfg: TablePrepareConfig) -> TablePrepareResult:
    """Build (or resume, or confirm) a `table` cache from a cohort CSV; see the module docstring.

    Example:
        >>> prepare_table(TablePrepareConfig(Path("cohort.csv"), Path("cache/table"), size=64, n_slices=8))

    Raises:
        DataError: Unreadable table; with `strict`, the first bad row; no usable row at all.
        CacheError: `out` holds a cache of another kind.
    """
    if cfg.size < 8 or cfg.n_slices < 1:
        raise ConfigError(f"--size {cfg.size} / --n-slices {cfg.n_slices}: at least 8 pixels and 1 slice",
                          hint="--size 299 --n-slices 16")
    if os.path.realpath(cfg.out) == os.path.realpath(cfg.manifest.parent):
        raise ConfigError(f"--out is the folder of the table {cfg.manifest.name}: the cache would be written among "
                          "its images; nothing was written", hint="choose another --out, e.g. cache/table")
    rows, bad, extra_columns = read_table_manifest(cfg.manifest)
    if cfg.strict and bad:
        raise DataError(f"{cfg.manifest}:{bad[0].line}: {bad[0].reason}",
                        hint="fix or remove the row, or run without --strict to list it in errors.csv")
    params = {"size": cfg.size, "n_slices": cfg.n_slices, "window": list(cfg.window) if cfg.window else None,
              "percentiles": list(cfg.percentiles), "format": "table-v1"}
    manifest_hash = sha256_file(cfg.manifest)
    with output_lock(cfg.out):
        if removed := remove_stale_tmp(cfg.out):
            console.log(f"removed {removed} temporary file(s) left by an interrupted run")
        if cache_up_to_date(cfg.out, "table", rebuild_command(cfg), params, manifest_hash):
            console.log(f"{cfg.out}: cache is up to date with {cfg.manifest.name} and these parameters; nothing to do")
            frame = read_manifest(cfg.out, required=("sample_id", "site", "label"))
            failed_sites = _failed_sites(cfg.out)
            depth = int(np.load(cfg.out / VOLUMES_FILE, mmap_mode="r").shape[1])
            return TablePrepareResult(cfg.out, len(frame), len(failed_sites), depth, len(frame), True,
                                      per_site(frame, failed_sites))
        parts = open_parts(cfg.out, params)
        keys = {row.line: parts / f"{part_key({'image': row.path, 'mask': row.mask_path})}.npz" for row in rows}
        pending = [row for row in rows if not keys[row.line].is_file()]
        reused = len(rows) - len(pending)
        if reused:
            console.log(f"resuming: {reused} of {len(rows)} images were prepared by an earlier run")
        for row in console.progress(pending, "images"):
            reason = _prepare_one(row, keys[row.line], cfg)
            if reason is not None:
                if cfg.strict:
                    raise DataError(f"{cfg.manifest}:{row.line}: {reason}",
                                    hint="fix or remove the row, or run without --strict to list it in errors.csv")
                bad.append(BadRow(row.line, row.rel_path, row.site, reason))
        result = _assemble(cfg, rows, keys, bad, extra_columns, params, manifest_hash)
        result.reused = reused
        shutil.rmtree(parts, ignore_errors=True)
        return result


def _prepare_one(row: TableRow, part: Path, cfg: TablePrepareConfig) -> str | None:
    """Read, normalise and store one image as a part file; returns the reason it failed, or None.

    The reason goes into errors.csv, so it names files relative to the table's folder (never a full path).
    """
    try:
        image = read_table_image(row.path)
        array, record = normalise_image(image, cfg.n_slices, cfg.size, cfg.window, cfg.percentiles)
        payload: dict[str, Any] = {"volume": array, "record": np.array(json.dumps(record))}
        if row.mask_path is not None:
            payload["mask"] = normalise_image_mask(read_table_image(row.mask_path), image, cfg.n_slices, cfg.size)
    except PpiError as exc:
        return shareable_text(exc.one_line(), [row.path, row.mask_path], cfg.manifest.parent)
    except (MemoryError, ValueError) as exc:  # a decoder's last word on a damaged file
        return shareable_text(f"unreadable image ({type(exc).__name__})", [row.path], cfg.manifest.parent)
    with atomic_write(part, "wb") as fh:
        np.savez(fh, **payload)
    return None


def _assemble(cfg: TablePrepareConfig, rows: list[TableRow], keys: dict[int, Path], bad: list[BadRow],
              extra_columns: list[str], params: dict[str, Any], manifest_hash: str) -> TablePrepareResult:
    import pandas as pd

    out = cfg.out
    failed = {b.line for b in bad}
    done = [row for row in rows if row.line not in failed]
    bad = sorted(bad, key=lambda b: b.line)
    error_rows = pd.DataFrame([{"line": b.line, "path": b.path, "site": b.site, "reason": b.reason} for b in bad],
                              columns=["line", "path", "site", "reason"])
    if not done:
        out.mkdir(parents=True, exist_ok=True)
        write_csv(out / ERRORS_FILE, error_rows)
        first = f" (first: line {bad[0].line}: {bad[0].reason})" if bad else ""
        total = len({row.line for row in rows} | failed)
        raise DataError(f"{cfg.manifest}: no usable row among {total}{first}",
                        hint=f"see {out / ERRORS_FILE}")
    if bad:
        console.warn(f"{len(bad)} row(s) left out; they are listed with their reasons in {out / ERRORS_FILE}")
    depths = {row.line: _part_depth(keys[row.line]) for row in done}
    n_slices = cfg.n_slices if any(d > 1 for d in depths.values()) else 1
    with_masks = any(row.mask_path is not None for row in done)
    shape = (len(done), n_slices, cfg.size, cfg.size)
    files, frame = assemble_volumes(out, [keys[row.line] for row in done], shape, with_masks,
                                    lambda records: _cache_manifest(done, records, extra_columns, with_masks),
                                    error_rows if bad else None)
    write_cache_info(out, "table", params, len(done), files, extra={
        "manifest": str(cfg.manifest), "manifest_sha256": manifest_hash, "n_errors": len(bad),
        "n_slices": n_slices, "size": cfg.size, "classes": ["negative", "positive"], "rebuild": rebuild_command(cfg),
        # What a checkpoint's input spec reads (engine/run_meta.py), in the GA cache's words.
        "n_bscans": n_slices, "bscan_size": [cfg.size, cfg.size]})
    return TablePrepareResult(out, len(done), len(bad), n_slices, 0, False,
                              per_site(frame, [b.site for b in bad]),
                              [out / f for f in files] + [out / INFO_FILE])


def _part_depth(part: Path) -> int:
    """Slices in a part (1 for a 2-D image), from its small record: the pixels are not decompressed."""
    with np.load(part, allow_pickle=False) as data:
        return int(json.loads(str(data["record"]))["slices"])


def _cache_manifest(done: list[TableRow], records: list[dict[str, Any]], extra_columns: list[str],
                    with_masks: bool) -> Any:
    import pandas as pd

    table = []
    for row, record in zip(done, records, strict=True):
        entry: dict[str, Any] = {"sample_id": row.sample_id, "subject_id": row.subject_id, "site": row.site,
                                 "label": row.label, "split": row.split, "path": row.rel_path}
        if with_masks:
            entry.update(mask_path=row.rel_mask, has_mask=int(row.mask_path is not None))
        entry.update({k: record.get(k, "") for k in ("source_format", "orig_shape", "spacing_mm", "intensity",
                                                     "intensity_low", "intensity_high", "resample")})
        for column in extra_columns:  # the user's own columns; never let one overwrite ours
            entry[column if column not in entry else f"manifest_{column}"] = row.extra[column]
        table.append(entry)
    return pd.DataFrame(table)


def _failed_sites(out: Path) -> list[str]:
    """The site of every row listed in the cache's errors.csv."""
    import pandas as pd

    path = out / ERRORS_FILE
    return pd.read_csv(path, dtype=str, keep_default_na=False)["site"].tolist() if path.is_file() else []
