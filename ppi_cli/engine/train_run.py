# SPDX-License-Identifier: MIT
"""What `ppi train` does between parsing its options and `fit`: the study path, then a run folder.

Recipe, cache and split come from `engine.study` exactly as for `ppi crossval` and `ppi cross-site`
(`resolve_study`, `study_split`): `--fold k` trains on the rows of crossval's fold k. The run
folder is `--out`, else a new `runs/train-<dataset>-<recipe>-<time>` in the workspace (`--resume`
without `--out`: the latest such folder). See docs/train.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ppi_cli.config.recipe import Recipe, resolve_recipe_path
from ppi_cli.data.splits import Split
from ppi_cli.engine.distributed import init_distributed, shutdown_distributed
from ppi_cli.engine.run_checks import check_study
from ppi_cli.engine.run_state import TrainResult
from ppi_cli.engine.study import predict_rows, resolve_study, study_split, test_summary
from ppi_cli.engine.trainer import fit
from ppi_cli.errors import ConfigError
from ppi_cli.workspace import Workspace

__all__ = ["TrainRequest", "TrainRun", "train"]


@dataclass(frozen=True)
class TrainRequest:
    """The options of `ppi train`, one-to-one."""

    recipe: str | None = None
    data: Path | None = None
    dataset: str | None = None  # which workspace cache when several exist
    out: Path | None = None
    fold: int | None = None
    device: str = "auto"
    resume: bool = False
    workspace: Path | None = None
    verify: bool = False  # re-hash every cache file (--verify)
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainRun:
    """A finished `ppi train`: the result, and what it read."""

    result: TrainResult
    recipe: Recipe
    cache_dir: Path | None
    split: Split
    read: list[Path]
    test: str | None = None  # with --fold k: the best model's result on fold k's test rows


def train(request: TrainRequest) -> TrainRun:
    """Resolve recipe, cache, split and run folder, then `fit` (under torchrun: every rank agrees on them).

    Raises:
        ConfigError: Bad recipe, fold or folders. CacheError: Missing or stale cache.
    """
    ctx = init_distributed(request.device)
    try:
        ws = Workspace.resolve(request.workspace)
        recipe, data = resolve_study(request.recipe, data=request.data, dataset=request.dataset,
                                     workspace=request.workspace,
                                     overrides=request.overrides, device=str(ctx.device),
                                     verify=request.verify)
        kind, cache_dir = recipe.data.dataset, data.cache_dir
        out = request.out
        if out is None and request.resume:
            out = ws.latest_run("train", kind)
            if out is None:
                raise ConfigError(f"--resume: no train run for '{kind}' in {ws.runs}", hint="pass --out RUN_FOLDER")
        if out is not None and request.resume and not Path(out).is_dir():
            raise ConfigError(f"--resume: {out} does not exist, so there is no run to continue; nothing was written",
                              hint="check the --out path, or drop --resume to start a new run there")
        if out is None:
            out = ctx.broadcast(ws.new_run("train", kind, recipe.name))
        split = study_split(data, fold=request.fold, folds=recipe.eval.folds, seed=recipe.seed,
                            val_fraction=recipe.data.val_fraction)
        if ctx.is_main:
            check_study(recipe, data, {f"fold {request.fold}": split.test} if request.fold is not None else {})
        result = fit(recipe, cache_dir=cache_dir, split=split, out_dir=Path(out), device=request.device,
                     resume=request.resume)
        test = None
        if request.fold is not None and result.is_main and split.test.size:
            _, labels, scores = predict_rows(result.best_checkpoint, recipe, data, split.test, device=request.device)
            test = f"fold {request.fold}: {test_summary(labels, scores)}"
        read = [resolve_recipe_path(request.recipe or recipe.name), *([cache_dir] if cache_dir is not None else [])]
        return TrainRun(result=result, recipe=recipe, cache_dir=cache_dir, split=split, read=read, test=test)
    finally:
        shutdown_distributed(ctx)
