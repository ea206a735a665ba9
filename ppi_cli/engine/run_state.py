# SPDX-License-Identifier: MIT
"""A training run's folder: the files `fit` writes there, saving an epoch and resuming from one, and reading a
finished run back (`finished_run`, what `ppi.fallback_drop` compares with).

    recipe.yaml, split.json   written first
    last.pt                   after every epoch: weights, optimiser, schedule, loss-weight state and progress
    best.pt                   when the kept epoch changes
    metrics.csv               one row per epoch
    baseline-fallback/        ppi.fallback_drop: the recipe trained without PPI, and ppi-rejected.json why
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ppi_cli.checkpoint import load_checkpoint, save_checkpoint
from ppi_cli.config.loader import changed_settings
from ppi_cli.config.recipe import Recipe
from ppi_cli.console import log, warn
from ppi_cli.data.splits import Split, load_split
from ppi_cli.engine.run_meta import checkpoint_meta, describe_cache
from ppi_cli.errors import ConfigError
from ppi_cli.files import write_csv
from ppi_cli.ppi.losses import LossWeights

__all__ = ["LAST", "BEST", "METRICS", "RECIPE", "SPLIT", "FALLBACK", "REJECTED", "TrainResult", "ppi_rejected",
           "finished_run", "fresh_state", "resume_state", "save_epoch"]

LAST, BEST, METRICS, RECIPE, SPLIT = "last.pt", "best.pt", "metrics.csv", "recipe.yaml", "split.json"
FALLBACK, REJECTED = "baseline-fallback", "ppi-rejected.json"  # ppi.fallback_drop: the run without PPI, and why


@dataclass(frozen=True)
class TrainResult:
    """Where a finished training run put its outputs, and how good its best epoch was."""

    out_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    best_epoch: int
    best_metric: float
    metrics_csv: Path
    is_main: bool = True  # False on torchrun ranks other than 0, which write nothing
    best_key: tuple[float, ...] = ()  # the kept epoch's `selection_key` (how runs of one recipe are compared)
    rejected: str = ""  # ppi.fallback_drop: why the PPI model was rejected (best.pt was then trained without PPI)


def ppi_rejected(run_dir: Path) -> bool:
    """Whether `ppi.fallback_drop` rejected the PPI model of the run in `run_dir`, whose best.pt is then the recipe
    trained without PPI."""
    return (Path(run_dir) / REJECTED).is_file()


def finished_run(run_dir: Path, recipe: Recipe, cache_dir: Path | None, split: Split, *,
                 is_main: bool = True) -> TrainResult | None:
    """The result of the run in `run_dir` when it is `recipe` (a recipe without PPI) trained to its last epoch on
    `split` of the same data, read from its files; None when it is not, or not finished yet (a sweep's baseline arm
    may still be training in another worker). Fields under `ppi.` may differ, `ppi.enabled` aside: a run without
    PPI reads none of them, so every variant of a sweep shares its seed's baseline arm; so may the recipe's name
    and description (`ga-baseline-cpu` is `ga-ppi-wbp-cpu` without PPI)."""
    last, best = run_dir / LAST, run_dir / BEST
    if recipe.ppi.enabled or not (last.is_file() and best.is_file() and (run_dir / SPLIT).is_file()):
        return None
    payload = load_checkpoint(last)
    meta, progress = payload["meta"], payload.get("progress") or {}
    changed = [k for k in changed_settings(meta.get("recipe") or {}, recipe)
               if k == "ppi.enabled" or not (k.startswith("ppi.") or k in ("name", "description"))]
    if changed or progress.get("epoch") != recipe.schedule.epochs:
        return None
    if meta.get("data_hash") != describe_cache(recipe.data.dataset, cache_dir).get("hash"):
        return None
    recorded = load_split(run_dir / SPLIT)
    if not all(np.array_equal(getattr(recorded, part), np.asarray(getattr(split, part), dtype=np.int64))
               for part in ("train", "val", "test")):
        return None
    return TrainResult(out_dir=run_dir, best_checkpoint=best, last_checkpoint=last,
                       best_epoch=int(progress["best_epoch"]), best_metric=float(progress["best_metric"]),
                       metrics_csv=run_dir / METRICS, is_main=is_main, best_key=tuple(progress["best_key"]))


def fresh_state() -> dict[str, Any]:
    """The progress of a run before its first epoch (what `last.pt` holds as `progress`)."""
    return {"epoch": 0, "best_epoch": 0, "best_key": [-math.inf, -math.inf], "best_metric": math.nan, "rows": []}


def resume_state(out_dir: Path, recipe: Recipe, model: torch.nn.Module, optimizer: Any, scheduler: Any,
                 weights: LossWeights, scaler: Any) -> dict[str, Any]:
    """Load `out_dir/last.pt` into the model, optimiser, schedule, loss weights and scaler, and return its progress
    (fresh without one); refuse a run of another recipe."""
    path = out_dir / LAST
    if not path.exists():
        warn(f"--resume: {out_dir} holds no {LAST} (no epoch finished there yet); starting from epoch 1")
        return fresh_state()
    payload = load_checkpoint(path)
    if changed_settings(payload["meta"].get("recipe") or {}, recipe):
        raise ConfigError(f"{path}: was trained with another recipe (or overrides) than this one",
                          hint=f"resume with the same recipe as {out_dir / RECIPE}, or choose another --out")
    model.load_state_dict(payload["state_dict"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    weights.load_state_dict(payload["loss_weights"])
    if scaler is not None and payload.get("scaler"):
        scaler.load_state_dict(payload["scaler"])
    state = dict(payload["progress"])
    state["rows"] = [dict(r) for r in payload["progress"]["rows"]]
    log(f"resuming {out_dir} after epoch {state['epoch']}")
    return state


def save_epoch(out_dir: Path, recipe: Recipe, model: torch.nn.Module, cache: Any, split: Split,
               state: dict[str, Any], row: dict[str, Any], improved: bool, optimizer: Any, scheduler: Any,
               weights: LossWeights, scaler: Any, ranks: dict[str, Any] | None, threshold: dict[str, Any]) -> None:
    """After an epoch: `best.pt` when it `improved`, `last.pt` with everything a resume needs, and metrics.csv."""
    import pandas as pd

    metrics = {k: float(v) for k, v in row.items() if k.startswith(("val_", "train_"))}
    meta = checkpoint_meta(recipe, model, cache, epoch=state["epoch"], metrics=metrics, fold=split.fold,
                           threshold=threshold)
    if ranks is not None:
        meta["distributed"] = ranks
    weights_now = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if improved:
        save_checkpoint(out_dir / BEST, weights_now, meta)
    progress_state = {k: state[k] for k in ("epoch", "best_epoch", "best_key", "best_metric", "rows")}
    save_checkpoint(out_dir / LAST, weights_now, meta, optimizer=optimizer.state_dict(),
                    scheduler=scheduler.state_dict(), loss_weights=weights.state_dict(),
                    scaler=scaler.state_dict() if scaler is not None else {}, progress=progress_state)
    write_csv(out_dir / METRICS, pd.DataFrame(state["rows"]))
