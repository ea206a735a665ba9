# SPDX-License-Identifier: MIT
"""Resumable prepares from a manifest (`prepare ga`, `prepare table`): part files, their keys, the move-in.

Each manifest row is prepared into its own part file under `<out>/.parts/`, named by what it depends
on (`part_key`), so a re-run skips every row already done; parts made with other parameters are
discarded, never mixed in (`open_parts`). The finished cache files are written beside the parts and
moved in together (`install_staged`): until then a previous cache, with its `cache.json`, stays valid.
A cache that already matches the manifest and the parameters is left alone (`cache_up_to_date`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli.config.loader import config_hash
from ppi_cli.console import log, progress
from ppi_cli.data.cache import INFO_FILE, MANIFEST_FILE, cache_kind, open_cache
from ppi_cli.errors import CacheError, DataError
from ppi_cli.files import write_csv, write_json, write_npy_rows

__all__ = ["PARTS_DIR", "VOLUMES_FILE", "MASKS_FILE", "ERRORS_FILE", "read_manifest_csv", "open_parts", "part_key",
           "assemble_volumes", "install_staged", "cache_up_to_date", "per_site"]

PARTS_DIR = ".parts"
VOLUMES_FILE = "volumes.npy"
MASKS_FILE = "masks.npy"
ERRORS_FILE = "errors.csv"


def read_manifest_csv(path: Path, required: Sequence[str], optional: Sequence[str], *, noun: str, example: str,
                      row_hint: str, hint: str) -> tuple[Any, list[str]]:
    """A manifest CSV as text columns (stripped names), checked for its `required` columns and for rows.

    Returns:
        The DataFrame and the names of the columns neither required nor optional (kept by the caller).

    Raises:
        DataError: No such file, not a CSV, a required column missing, or no rows.
    """
    import pandas as pd

    if not path.is_file():
        raise DataError(f"{path}: no such {noun}", hint=f"pass --manifest {example} (columns: {', '.join(required)})")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})", hint=hint) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}",
                        hint=f"the {noun} needs the columns {', '.join(required)}; {hint}")
    if frame.empty:
        raise DataError(f"{path}: the {noun} has no rows", hint=row_hint)
    return frame, [c for c in frame.columns if c not in (*required, *optional)]


def open_parts(out: Path, params: Mapping[str, Any]) -> Path:
    """The resume folder; parts made with other parameters are discarded, never mixed in."""
    parts = out / PARTS_DIR
    stamp = parts / "params.json"
    digest = config_hash(dict(params))
    if parts.is_dir():
        try:
            previous = json.loads(stamp.read_text(encoding="utf-8")).get("params_hash")
        except (OSError, ValueError, AttributeError):
            previous = None
        if previous != digest:
            log("discarding the parts of an interrupted run made with other parameters")
            shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    if not stamp.is_file():
        write_json(stamp, {"params_hash": digest, "params": dict(params)})
    return parts


def part_key(files: Mapping[str, Path | None], **other: Any) -> str:
    """Names a part by what it depends on: each source file (its resolved path, size and time) and `other`."""
    def signature(path: Path | None) -> list[Any]:
        if path is None:
            return []
        stat = path.stat()
        return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]

    return config_hash({name: signature(path) for name, path in files.items()} | other)


def assemble_volumes(out: Path, parts: Sequence[Path], shape: tuple[int, ...], with_masks: bool,
                     manifest: Callable[[list[dict[str, Any]]], Any], errors: Any | None) -> tuple[list[str], Any]:
    """Write `volumes.npy` (and `masks.npy`) from the part files, the manifest and errors.csv, and move them in.

    Every part holds `volume` (S, H, W) or (1, H, W), repeated to S, its JSON `record` and optionally `mask`.
    `manifest(records)` builds the cache manifest from the parts' records, in part order. `cache.json` is
    the caller's to write next. Until then a previous cache in `out` stays as it was.

    Returns:
        The names of the files moved in, and the manifest frame.
    """
    records: list[dict[str, Any]] = []

    def blocks(key: str) -> Iterator[np.ndarray]:  # one (1, S, H, W) block per part
        for path in progress(parts, f"writing {key}s"):
            with np.load(path, allow_pickle=False) as part:
                if key == "volume":
                    records.append(json.loads(str(part["record"])))
                array = part[key] if key in part.files else np.zeros((1, *shape[2:]), np.uint8)
            yield np.ascontiguousarray(np.broadcast_to(array, shape[1:]))[None]

    # The new files are written beside the parts and moved in together: until they are all complete,
    # a full disk or a kill leaves the previous cache (and its cache.json) as it was.
    staged = out / PARTS_DIR / "assembled"
    staged.mkdir(parents=True, exist_ok=True)
    files = [MANIFEST_FILE, VOLUMES_FILE] + ([MASKS_FILE] if with_masks else []) + \
        ([ERRORS_FILE] if errors is not None else [])
    try:
        write_npy_rows(staged / VOLUMES_FILE, shape, np.uint8, blocks("volume"))
        if with_masks:
            write_npy_rows(staged / MASKS_FILE, shape, np.uint8, blocks("mask"))
        frame = manifest(records)
        write_csv(staged / MANIFEST_FILE, frame)
        if errors is not None:
            write_csv(staged / ERRORS_FILE, errors)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    install_staged(out, staged, files, stale=(MASKS_FILE, ERRORS_FILE))
    return files, frame


def install_staged(out: Path, staged: Path, files: Iterable[str], stale: Iterable[str] = ()) -> None:
    """Move the staged cache files into `out` together; `cache.json` is removed first and written by the caller.

    `stale` names files of an older cache that this one does not have (an old `errors.csv`, masks).
    """
    (out / INFO_FILE).unlink(missing_ok=True)  # from here until cache.json the folder reads as incomplete
    for name in stale:
        (out / name).unlink(missing_ok=True)
    for name in files:
        os.replace(staged / name, out / name)


def cache_up_to_date(out: Path, kind: str, rebuild: str, params: Mapping[str, Any], manifest_hash: str) -> bool:
    """Whether `out` holds a complete `kind` cache built with `params` from a manifest with this hash.

    Raises:
        CacheError: `out` holds a cache of another kind (it is never overwritten).
    """
    if not (out / INFO_FILE).is_file():
        return False
    found = cache_kind(out)
    if found not in (None, kind):
        raise CacheError(f"{out}: holds a '{found}' cache, not a {kind} cache",
                         hint=f"choose another --out for the {kind} cache")
    try:
        info = open_cache(out, kind, rebuild, params=params)
    except CacheError as exc:
        log(f"rebuilding: {exc.message}")
        return False
    if info.extra.get("manifest_sha256") != manifest_hash:
        log("rebuilding: the manifest changed since the cache was built")
        return False
    return True


def per_site(frame: Any, failed_sites: list[str]) -> dict[str, dict[str, int]]:
    """Per site of a cache manifest (`site`, `label`): volumes, positives, and errors (one per failed row's site)."""
    table: dict[str, dict[str, int]] = {}
    for site, label in zip(frame["site"].astype(str), frame["label"].astype(int), strict=True):
        entry = table.setdefault(site, {"volumes": 0, "positives": 0, "errors": 0})
        entry["volumes"] += 1
        entry["positives"] += int(label)
    for site in failed_sites:
        table.setdefault(site, {"volumes": 0, "positives": 0, "errors": 0})["errors"] += 1
    return dict(sorted(table.items()))
