# SPDX-License-Identifier: MIT
"""The dataset registry: one Dataset class per cache kind, one constructor, one sample layout.

Every registered class is built as `cls(cache_dir, indices, cfg, train=..., seed=..., regions=...)`
where `indices` are manifest row numbers and `cfg` is the recipe's `DataConfig`. Samples are dicts:

    "image"      float32 tensor, intensities windowed to [0, 1]
                 2D datasets: (C, H, W); volume datasets: (S, C, H, W), S B-scans
    "positions"  volume datasets only: int64 (S,), the B-scan position ids
    "label"      float32 scalar for binary tasks, int64 scalar for multi-class
    "index"      int, the manifest row
    "mask"       where the data has lesion masks and `regions` is true (training samples; the generated
                 `synthetic` task in evaluation too): float32, shaped like "image" with one channel
    "cue"        GA caches of a planted mark, training samples with `regions`: the mark's box, likewise

`regions` (default true) asks for the answer key's regions; the trainer asks only in epochs whose step
reads them (PPI epochs: the diagnostics and `ppi.mask: lesion`), so other epochs skip reading masks.

Model-specific normalisation (e.g. ImageNet mean/std) happens inside the model wrapper, so a
masked pixel is 0 here and saliency is taken with respect to these [0, 1] intensities.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Every Dataset module registers its kind on import (registry.py); this façade imports each once,
# so the registry never imports them back by name.
from ppi_cli.data.cache import read_manifest
from ppi_cli.data.folder import dataset as _folder  # noqa: F401  (registers folder)
from ppi_cli.data.ga import dataset as _ga  # noqa: F401  (registers ga)
from ppi_cli.data.lidc import dataset as _lidc  # noqa: F401  (registers lidc)
from ppi_cli.data.registry import MANIFEST_COLUMNS, dataset_class, dataset_kinds, register_dataset
from ppi_cli.data.synth import dataset as _synthetic  # noqa: F401  (registers synthetic)
from ppi_cli.data.table import dataset as _table  # noqa: F401  (registers table)
from ppi_cli.workspace import Workspace

__all__ = ["register_dataset", "build_dataset", "dataset_class", "dataset_kinds", "dataset_manifest",
           "MANIFEST_COLUMNS"]


def build_dataset(kind: str, cache_dir: Path | None, indices: Any, cfg: Any, *, train: bool, seed: int = 0,
                  regions: bool = True) -> Any:
    """Build the Dataset of `kind` over manifest rows `indices` of the cache at `cache_dir` (`regions`: see above)."""
    return dataset_class(kind)(cache_dir, indices, cfg, train=train, seed=seed, regions=regions)


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
    return read_manifest(Path(cache_dir) if cache_dir is not None else Workspace.resolve().cache(kind),
                         required=MANIFEST_COLUMNS)
