# SPDX-License-Identifier: MIT
"""The prepared-cache contract: a folder with `manifest.csv`, `.npy` arrays and `cache.json`.

`cache.json` records the cache kind, the preprocessing parameters and their hash, the toolkit
version, the number of samples and a SHA-256 per file. Opening a cache checks all of it and fails
with the exact rebuild command when anything is missing, changed or stale; nothing is pickled.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli import __version__
from ppi_cli.config.loader import config_hash
from ppi_cli.data.fingerprint import write_fingerprint
from ppi_cli.errors import CacheError
from ppi_cli.files import sha256_file, write_json

__all__ = ["CacheInfo", "write_cache_info", "open_cache", "cache_kind", "rebuild_hint", "read_manifest", "load_array",
           "CACHE_FORMAT"]

CACHE_FORMAT = 1
INFO_FILE = "cache.json"
MANIFEST_FILE = "manifest.csv"


@dataclass(frozen=True)
class CacheInfo:
    """What `cache.json` holds."""

    kind: str
    params: dict[str, Any]
    params_hash: str
    n_samples: int
    files: dict[str, str]  # file name -> sha256
    sizes: dict[str, int] = field(default_factory=dict)  # file name -> bytes (the fast check; absent in old caches)
    toolkit_version: str = __version__
    format: int = CACHE_FORMAT
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for `cache.json`."""
        return {
            "format": self.format, "kind": self.kind, "toolkit_version": self.toolkit_version,
            "created": self.created, "n_samples": self.n_samples, "params": self.params,
            "params_hash": self.params_hash, "files": self.files, "sizes": self.sizes, "extra": self.extra,
        }

    @property
    def content_hash(self) -> str:
        """One hash over every file's hash: changes when any cached byte changes."""
        return config_hash(self.files)


# How each kind of cache is built, for the hint of every error about one (the options it cannot know as `DIR`).
_PREPARE = {"lidc": "ppi prepare lidc --root DIR", "ga": "ppi prepare ga --manifest labels.csv",
            "folder": "ppi prepare folder --root DIR", "table": "ppi prepare table --manifest cohort.csv"}


def cache_kind(folder: Path) -> str | None:
    """The kind `cache.json` records (`lidc`, `ga`, `folder`, `table`), or None when the folder holds no readable one.

    The one reader of "what kind of cache is this"; `open_cache` then checks the rest.
    """
    try:
        kind = json.loads((Path(folder) / INFO_FILE).read_text(encoding="utf-8"))["kind"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return str(kind) if isinstance(kind, str) else None


def rebuild_hint(kind: str, folder: Path | None = None) -> str:
    """The command that (re)builds a cache of `kind` (at `folder`), as every error about a cache names it."""
    command = _PREPARE.get(kind, "ppi prepare ...")
    return f"{command} --out {folder}" if folder is not None else command


def write_cache_info(folder: Path, kind: str, params: Mapping[str, Any], n_samples: int,
                     files: Iterable[str], extra: Mapping[str, Any] | None = None) -> CacheInfo:
    """Hash the cache's files, write `fingerprint.json`, then `cache.json` last: its presence marks a complete cache.

    The fingerprint (`data.fingerprint`) is derived from the files and kept out of the content hash.
    """
    names = sorted(files)
    write_fingerprint(folder, kind, dict(params))
    info = CacheInfo(
        kind=kind, params=dict(params), params_hash=config_hash(params), n_samples=int(n_samples),
        files={name: sha256_file(folder / name) for name in names},
        sizes={name: (folder / name).stat().st_size for name in names},
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), extra=dict(extra or {}),
    )
    write_json(folder / INFO_FILE, info.to_dict())
    return info


def open_cache(folder: Path, kind: str, rebuild: str, params: Mapping[str, Any] | None = None,
               verify: bool = False) -> CacheInfo:
    """Open and check a cache.

    Args:
        folder: The cache folder.
        kind: The expected kind (`lidc`, `ga`, `folder`).
        rebuild: The command that (re)builds this cache; every error names it.
        params: When given, the parameters the caller expects; a different hash means stale.
        verify: Re-hash every file (slow on large caches); otherwise presence and sizes are checked and
            the manifest (small, and what pairs labels with array rows) is re-hashed.

    Raises:
        CacheError: Missing, incomplete, foreign, stale or modified cache.
    """
    info_path = folder / INFO_FILE
    if not folder.is_dir():
        raise CacheError(f"{folder}: no cache here", hint=f"build it with: {rebuild}")
    if not info_path.is_file():
        raise CacheError(f"{folder}: cache is incomplete (no {INFO_FILE}; was `prepare` interrupted?)",
                         hint=f"resume or rebuild it with: {rebuild}")
    try:
        raw = json.loads(info_path.read_text(encoding="utf-8"))
        info = CacheInfo(**{k: raw[k] for k in ("kind", "params", "params_hash", "n_samples", "files")},
                         sizes=dict(raw.get("sizes") or {}), toolkit_version=raw.get("toolkit_version", "?"),
                         format=raw.get("format", 0),
                         created=raw.get("created", ""), extra=raw.get("extra", {}))
    except (ValueError, KeyError, TypeError) as exc:
        raise CacheError(f"{info_path}: unreadable cache description ({exc})",
                         hint=f"rebuild with: {rebuild}") from None
    if info.format != CACHE_FORMAT:
        raise CacheError(f"{folder}: cache format {info.format} is not {CACHE_FORMAT} (written by ppi "
                         f"{info.toolkit_version})", hint=f"stale cache, rebuild with: {rebuild}")
    if info.kind != kind:
        raise CacheError(f"{folder}: this is a '{info.kind}' cache, not '{kind}'", hint="point --data at a "
                         f"{kind} cache, or build one with: {rebuild}")
    if params is not None and config_hash(params) != info.params_hash:
        changed = sorted(k for k in set(params) | set(info.params) if params.get(k) != info.params.get(k))
        raise CacheError(f"{folder}: stale cache, built with different parameters ({', '.join(changed)})",
                         hint=f"rebuild with: {rebuild}")
    for name, digest in info.files.items():
        path = folder / name
        if not path.is_file():
            raise CacheError(f"{folder}: cache file {name} is missing", hint=f"rebuild with: {rebuild}")
        if name in info.sizes and path.stat().st_size != info.sizes[name]:
            raise CacheError(f"{folder}: cache file {name}: size changed since the cache was built",
                             hint=f"rebuild with: {rebuild}")
        # The manifest is small and decides which label goes with which array row: always re-hashed.
        if (verify or name == MANIFEST_FILE) and sha256_file(path) != digest:
            raise CacheError(f"{folder}: cache file {name}: content changed since the cache was built",
                             hint=f"rebuild with: {rebuild}")
    return info


def read_manifest(folder: Path, required: Sequence[str] = ()) -> Any:
    """Read `manifest.csv` as a pandas DataFrame and check it has the `required` columns."""
    import pandas as pd

    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise CacheError(f"{path}: manifest is missing", hint="rebuild the cache with `ppi prepare ...`")
    frame = pd.read_csv(path, dtype={"patient_id": str, "subject_id": str, "series_uid": str, "site": str})
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise CacheError(f"{path}: missing column(s) {', '.join(missing)}",
                         hint="rebuild the cache with `ppi prepare ...`")
    return frame


def load_array(folder: Path, name: str, mmap: bool = True) -> np.ndarray:
    """Open a cached `.npy` array memory-mapped (read-only); pickled arrays are refused."""
    path = folder / name
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CacheError(f"{path}: cannot read cached array ({exc})",
                         hint="rebuild the cache with `ppi prepare ...`") from None
