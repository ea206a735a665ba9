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
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ppi_cli.config.loader import config_hash
from ppi_cli.console import log
from ppi_cli.data.cache import INFO_FILE, cache_kind, open_cache
from ppi_cli.errors import CacheError
from ppi_cli.files import write_json

__all__ = ["PARTS_DIR", "open_parts", "part_key", "install_staged", "cache_up_to_date", "per_site"]

PARTS_DIR = ".parts"


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
