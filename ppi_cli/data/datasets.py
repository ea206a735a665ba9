# SPDX-License-Identifier: MIT
"""The dataset registry: one Dataset class per cache kind, one constructor, one sample layout.

Every registered class is built as `cls(cache_dir, indices, cfg, train=..., seed=...)` where
`indices` are manifest row numbers and `cfg` is the recipe's `DataConfig`. Samples are dicts:

    "image"      float32 tensor, intensities windowed to [0, 1]
                 2D datasets: (C, H, W); volume datasets: (S, C, H, W), S B-scans
    "positions"  volume datasets only: int64 (S,), the B-scan position ids
    "label"      float32 scalar for binary tasks, int64 scalar for multi-class
    "index"      int, the manifest row

Model-specific normalisation (e.g. ImageNet mean/std) happens inside the model wrapper, so a
masked pixel is 0 here and saliency is taken with respect to these [0, 1] intensities.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ppi_cli.errors import ConfigError

__all__ = ["register_dataset", "build_dataset", "dataset_class", "dataset_manifest", "DATASET_MODULES",
           "MANIFEST_COLUMNS"]

# Columns every manifest has, whatever the dataset (splits need subjects and labels).
MANIFEST_COLUMNS = ("sample_id", "subject_id", "label")

# kind -> module that registers it on import (imported lazily: readers pull in heavy packages).
DATASET_MODULES: dict[str, str] = {
    "lidc": "ppi_cli.data.lidc.dataset",
    "ga": "ppi_cli.data.ga.dataset",
    "folder": "ppi_cli.data.folder.dataset",
    "synthetic": "ppi_cli.data.synth.dataset",
}
_REGISTRY: dict[str, type] = {}


def register_dataset(kind: str) -> Callable[[type], type]:
    """Class decorator registering a Dataset for a cache kind; a duplicate kind is an error."""

    def wrap(cls: type) -> type:
        if kind in _REGISTRY:
            raise ValueError(f"dataset kind '{kind}' is registered twice")
        _REGISTRY[kind] = cls
        return cls

    return wrap


def dataset_class(kind: str) -> type:
    """The Dataset class of a cache kind, importing its module on first use."""
    if kind not in _REGISTRY and kind in DATASET_MODULES:
        try:
            importlib.import_module(DATASET_MODULES[kind])
        except ModuleNotFoundError as exc:
            if exc.name != DATASET_MODULES[kind]:
                raise
    if kind not in _REGISTRY:
        known = ", ".join(sorted(k for k in DATASET_MODULES if k in _REGISTRY or _importable(k)))
        raise ConfigError(f"data.dataset: no dataset of kind '{kind}'", hint=f"use one of: {known}")
    return _REGISTRY[kind]


def build_dataset(kind: str, cache_dir: Path | None, indices: Any, cfg: Any, *, train: bool, seed: int = 0) -> Any:
    """Build the Dataset of `kind` over manifest rows `indices` of the cache at `cache_dir`."""
    return dataset_class(kind)(cache_dir, indices, cfg, train=train, seed=seed)


def dataset_manifest(kind: str, cache_dir: Path | None, cfg: Any) -> Any:
    """The manifest rows a split is made from: a DataFrame with at least sample_id, subject_id, label.

    A dataset class with a static `manifest_without_cache(cfg)` (the generated `synthetic` one) describes itself
    without a cache; every other kind reads its cache's `manifest.csv`.

    Raises:
        CacheError: The cache has no manifest or it lacks a required column.
    """
    cls = dataset_class(kind)
    if callable(getattr(cls, "manifest_without_cache", None)):
        return cls.manifest_without_cache(cfg)
    from ppi_cli.data.cache import read_manifest
    from ppi_cli.workspace import Workspace

    return read_manifest(Path(cache_dir) if cache_dir is not None else Workspace.resolve().cache(kind),
                         required=MANIFEST_COLUMNS)


def _importable(kind: str) -> bool:
    return importlib.util.find_spec(DATASET_MODULES[kind]) is not None
