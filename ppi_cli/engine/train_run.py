# SPDX-License-Identifier: MIT
"""What `ppi train` does between parsing its options and `fit`: recipe, cache, split and run folder.

- recipe: `--recipe`, else the bundled default for the cache present (docs/train.md):
  `<kind>-ppi-wbp-cpu` on CPU and `<kind>-ppi-wbp` on CUDA for `lidc` and `ga` caches,
  `cub-ppi-wbp[-cpu]` for a `folder` cache, and `synthetic-ppi-wbp-cpu` when there is no cache;
- cache: `--data`, else the recipe's `data.cache`, else the workspace's `cache/<dataset>`;
- split: `--fold k` tests on fold k of `subject_folds` (eval.folds, seed) and holds out
  `data.val_fraction` of the remaining subjects for validation; without `--fold` only the
  validation subjects are held out;
- run folder: `--out`, else a new `runs/train-<dataset>-<recipe>-<time>` in the workspace
  (`--resume` without `--out`: the latest such folder).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli.config.recipe import Recipe, load_recipe, resolve_recipe_path
from ppi_cli.data.cache import INFO_FILE
from ppi_cli.data.datasets import dataset_manifest
from ppi_cli.data.splits import Split, holdout_split, subject_folds
from ppi_cli.engine.distributed import init_distributed, shutdown_distributed
from ppi_cli.engine.trainer import TrainResult, dataset_config, fit
from ppi_cli.errors import ConfigError
from ppi_cli.workspace import Workspace

__all__ = ["TrainRequest", "TrainRun", "train", "default_recipe", "make_split"]

_DEFAULTS = {"lidc": "lidc-ppi-wbp", "ga": "ga-ppi-wbp", "folder": "cub-ppi-wbp"}
NO_CACHE = ("synthetic",)


@dataclass(frozen=True)
class TrainRequest:
    """The options of `ppi train`, one-to-one."""

    recipe: str | None = None
    data: Path | None = None
    out: Path | None = None
    fold: int | None = None
    device: str = "auto"
    resume: bool = False
    workspace: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainRun:
    """A finished `ppi train`: the result, and what it read."""

    result: TrainResult
    recipe: Recipe
    cache_dir: Path | None
    split: Split
    read: list[Path]


def _cache_kind(folder: Path) -> str | None:
    try:
        return str(json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))["kind"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def default_recipe(data: Path | None, workspace: Workspace, cuda: bool) -> str:
    """The bundled recipe for the cache at `data` (or the first workspace cache found); synthetic without one."""
    candidates = [data] if data is not None else [workspace.cache(k) for k in ("lidc", "ga", "folder")]
    for folder in candidates:
        kind = _cache_kind(folder)
        if kind in _DEFAULTS:
            return _DEFAULTS[kind] + ("" if cuda else "-cpu")
    if data is not None:
        raise ConfigError(f"{data}: no prepared cache here (no readable {INFO_FILE})",
                          hint="build one with `ppi prepare ...`, or pass --recipe")
    return "synthetic-ppi-wbp-cpu"


def make_split(recipe: Recipe, cache_dir: Path | None, fold: int | None) -> Split:
    """Subject-grouped split of the manifest rows (see the module docstring)."""
    frame = dataset_manifest(recipe.data.dataset, cache_dir, dataset_config(recipe))
    labels = frame["label"].to_numpy()
    subjects = frame["subject_id"].astype(str).to_numpy()
    rows = np.arange(len(frame))
    test = np.zeros(0, dtype=np.int64)
    if fold is not None:
        if not 0 <= fold < recipe.eval.folds:
            raise ConfigError(f"--fold {fold}: the recipe has {recipe.eval.folds} folds (eval.folds)",
                              hint=f"use --fold 0 to {recipe.eval.folds - 1}")
        test = subject_folds(labels, subjects, recipe.eval.folds, recipe.seed)[fold]
        rows = np.setdiff1d(rows, test)
    if recipe.data.val_fraction > 0:
        train_rows, val = holdout_split(rows, labels, subjects, recipe.data.val_fraction, recipe.seed)
    else:
        train_rows, val = rows, np.zeros(0, dtype=np.int64)
    return Split(train=train_rows, val=val, test=test, fold=fold)


def train(request: TrainRequest) -> TrainRun:
    """Resolve recipe, cache, split and run folder, then `fit` (under torchrun: every rank agrees on them).

    Raises:
        ConfigError: Bad recipe, fold or folders. CacheError: Missing or stale cache.
    """
    ctx = init_distributed(request.device)
    try:
        ws = Workspace.resolve(request.workspace)
        ref = request.recipe or default_recipe(request.data, ws, ctx.device.type == "cuda")
        recipe = load_recipe(ref, request.overrides)
        kind = recipe.data.dataset
        cache_dir = None if kind in NO_CACHE else Path(request.data or recipe.data.cache or ws.cache(kind))
        out = request.out
        if out is None and request.resume:
            out = ws.latest_run("train", kind)
            if out is None:
                raise ConfigError(f"--resume: no train run for '{kind}' in {ws.runs}", hint="pass --out RUN_FOLDER")
        if out is None:
            out = ctx.broadcast(ws.new_run("train", kind, recipe.name))
        split = make_split(recipe, cache_dir, request.fold)
        result = fit(recipe, cache_dir=cache_dir, split=split, out_dir=Path(out), device=request.device,
                     resume=request.resume)
        read = [resolve_recipe_path(ref), *([cache_dir] if cache_dir is not None else [])]
        return TrainRun(result=result, recipe=recipe, cache_dir=cache_dir, split=split, read=read)
    finally:
        shutdown_distributed(ctx)
