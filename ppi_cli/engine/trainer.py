# SPDX-License-Identifier: MIT
"""`fit`: train one model on one split, with PPI or without, resumable, single process or DDP.

Writes into `out_dir`: `recipe.yaml` and `split.json` first, then after every epoch `last.pt`
(weights, optimiser, schedule, loss-weight state: everything a resume needs), `best.pt` when
the validation metric improves, and `metrics.csv` (one row per epoch: every loss term, the
weights α, β, γ in force, validation metric and loss, learning rate, seconds).

Determinism: everything random in an epoch (shuffling, augmentation, dropout, L_ad's
permutation, slice sampling) is seeded from (recipe seed, epoch), so a run resumed from
`last.pt` after a kill ends with the same weights as an uninterrupted one (CPU).

Example:
    >>> result = fit(recipe, cache_dir=None, split=split, out_dir=Path("runs/x"))
    >>> result.best_checkpoint
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ppi_cli.config.loader import config_hash, dump_yaml
from ppi_cli.config.recipe import SELECT_CHOICES, Recipe, select_choices
from ppi_cli.console import log, progress
from ppi_cli.data.datasets import build_dataset, dataset_manifest
from ppi_cli.data.splits import Split, save_split
from ppi_cli.device import keep_host_memory, seed_everything
from ppi_cli.engine.distributed import (
    DistContext,
    average_buffers,
    gather,
    init_distributed,
    shutdown_distributed,
    weights_digest,
)
from ppi_cli.engine.evaluate import (
    Predictions,
    joined,
    model_inputs,
    operating_threshold,
    predict,
    predict_in_other_looks,
    validation_metric,
)
from ppi_cli.engine.optim import attention_bias, build_optimizer, build_scheduler, grad_norm
from ppi_cli.engine.run_checks import baseline_rejection, check_training, fit_rejection, ppi_rejection
from ppi_cli.engine.run_meta import describe_cache, write_run_record
from ppi_cli.engine.run_state import (
    BEST,
    FALLBACK,
    LAST,
    METRICS,
    RECIPE,
    REJECTED,
    SPLIT,
    TrainResult,
    finished_run,
    fresh_state,
    resume_state,
    save_epoch,
)
from ppi_cli.engine.step import TrainStep
from ppi_cli.engine.train_log import report_epoch, report_findings
from ppi_cli.errors import ConfigError, ModelError
from ppi_cli.files import atomic_path, write_json, write_text
from ppi_cli.models import build_model, is_volume_model, load_model
from ppi_cli.ppi.intervention import missing_lesion_masks
from ppi_cli.ppi.losses import LossWeights
from ppi_cli.ppi.train_modes import freeze_batch_norm
from ppi_cli.saliency import check_wbp_supports

__all__ = ["fit", "epoch_seed", "dataset_config", "has_last_checkpoint"]


def selection_key(select: str, metric: float, val_loss: float, epoch: int) -> tuple[float, float]:
    """An epoch's rank for model selection under `eval.select`: the larger key wins, a tie keeps the earlier."""

    def finite(value: float) -> float:
        return value if math.isfinite(value) else -math.inf

    if select == "last":
        return (float(epoch), 0.0)
    if select == "loss":
        return (finite(-val_loss), finite(metric))
    return (finite(metric), finite(-val_loss))


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of everything random in one epoch (a function of the recipe seed and the epoch alone)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def dataset_config(recipe: Recipe) -> Any:
    """What `build_dataset` gets: the data section, or the whole recipe for volume models (K slices)."""
    return recipe if recipe.model.name == "multiview" else recipe.data


def fit(recipe: Recipe, *, cache_dir: Path | None, split: Split, out_dir: Path, device: str = "auto",
        resume: bool = False, without_ppi: Path | None = None) -> TrainResult:
    """Train `recipe`'s model on `split.train`, select on `split.val`, write checkpoints and metrics.

    Args:
        recipe: The experiment (model, data, ppi, optim, schedule, eval, seed).
        cache_dir: The prepared cache (None for the generated `synthetic` dataset).
        split: Manifest rows for training and validation (test rows are recorded, not used).
        out_dir: The run folder.
        device: auto, cpu, cuda or cuda:N (under torchrun each process takes its local GPU).
        resume: Continue from `out_dir/last.pt` (starts fresh, with a warning, when there is none).
        without_ppi: A run folder that may already hold this recipe trained without PPI on the same split and data
            (a study's baseline arm): where `ppi.fallback_drop` needs that run, it reads this one if it is
            finished and the same training, instead of training its own in `<run>/baseline-fallback/`.

    Raises:
        ConfigError: `out_dir` already holds a run and `resume` is off, or it holds another recipe's run.
        ModelError: Training diverged (a loss became NaN or infinite).
    """
    field = _selected_field(recipe)
    if field is not None:
        return _fit_each_choice(recipe, field, cache_dir=cache_dir, split=split, out_dir=Path(out_dir),
                                device=device, resume=resume, without_ppi=without_ppi)
    ctx = init_distributed(device)
    try:
        result = _fit(recipe, Path(cache_dir) if cache_dir is not None else None, split, Path(out_dir), ctx, resume)
    finally:
        shutdown_distributed(ctx)
    return _fall_back(recipe, result, cache_dir=cache_dir, split=split, device=device, resume=resume,
                      arm=without_ppi)


def _fall_back(recipe: Recipe, result: TrainResult, *, cache_dir: Path | None, split: Split, device: str,
               resume: bool, arm: Path | None) -> TrainResult:
    """`ppi.fallback_drop`: a rejected PPI run trains its recipe without PPI in `<run>/baseline-fallback/`, whose
    best.pt becomes the run's, and `ppi-rejected.json` says why (reports flag the run's cells); a run that stands
    keeps its own best.pt (and loses a marker an earlier run in its folder left). Under `ppi.fallback_against:
    baseline` the run without PPI trains first, whatever PPI did, and the decision compares the two kept epochs
    (`ppi.fallback_drop`) and the two runs' fit to their training images (`ppi.fallback_fit`, a rule of the same
    guard: off with it).
    Where `arm` already holds that run, finished (a study's baseline arm), it is read instead of trained again."""
    out_dir, sub, ppi = result.out_dir, result.out_dir / FALLBACK, recipe.ppi
    plain = dataclasses.replace(recipe, ppi=dataclasses.replace(ppi, enabled=False))

    def without_ppi() -> TrainResult:
        done = None if arm is None else finished_run(Path(arm), plain, cache_dir, split, is_main=result.is_main)
        if done is not None:
            log(f"{out_dir.name}: the recipe without PPI is the finished run in {arm}; not trained again")
            return done
        log(f"{out_dir.name}: training {recipe.name} without PPI in {sub}")
        return fit(plain, cache_dir=cache_dir, split=split, out_dir=sub, device=device,
                   resume=resume and has_last_checkpoint(sub))

    against_baseline = ppi.enabled and ppi.fallback_drop is not None and ppi.fallback_against == "baseline"
    rejected = result.rejected  # against the warm-up, decided in `_fit`
    kept = without_ppi() if against_baseline or rejected else None
    if kept is not None:
        where = os.path.relpath(kept.out_dir, out_dir)  # the messages and the record name the run replacing PPI
        if against_baseline:
            rejected = (baseline_rejection(recipe, (result.best_epoch, result.best_metric),
                                           (kept.best_epoch, kept.best_metric), fallback=where)
                        or fit_rejection(recipe, _epoch_rows(result), _epoch_rows(kept), fallback=where))
            if not rejected and result.is_main:
                log(f"{out_dir.name}: PPI kept: val {recipe.eval.metric} {result.best_metric:.3f} (epoch "
                    f"{result.best_epoch}) against {kept.best_metric:.3f} without PPI (epoch {kept.best_epoch})")
        else:
            rejected += f"; best.pt is the same recipe trained without PPI ({where}/)"
    if kept is None or not rejected:  # PPI stands
        if result.is_main:
            (out_dir / REJECTED).unlink(missing_ok=True)
        return result
    if result.is_main:
        report_findings(out_dir, [rejected])
    if kept.is_main:
        with atomic_path(out_dir / BEST) as staged:
            shutil.copyfile(kept.best_checkpoint, staged)
        write_json(out_dir / REJECTED, {"reason": rejected, "ppi_best_epoch": result.best_epoch,
                                        "ppi_best_metric": result.best_metric, "fallback": where,
                                        "fallback_best_epoch": kept.best_epoch})
    return dataclasses.replace(kept, out_dir=out_dir, best_checkpoint=out_dir / BEST, rejected=rejected)


def _epoch_rows(result: TrainResult) -> list[dict[str, Any]]:
    """A finished run's metrics.csv, one mapping per epoch (what `fit_rejection` reads)."""
    return pd.read_csv(result.metrics_csv).to_dict("records")


# a `select` of each field of SELECT_CHOICES trains each choice in `<prefix>-<choice>/` and records the pick in
# `<prefix>-select.json`; with both set, each batch-norm run chooses its look level
_CHOICE_PREFIX = {"intervened_norm": "norm", "look_level": "level"}


def _selected_field(recipe: Recipe) -> str | None:
    """The first PPI field of SELECT_CHOICES that `recipe` leaves to `select` (None: no choice, or no PPI)."""
    if not recipe.ppi.enabled:
        return None
    return next((name for name in SELECT_CHOICES if getattr(recipe.ppi, name) == "select"), None)


def _choice_dir(out_dir: Path, field: str, choice: str) -> Path:
    """Where a `select` of `field` trains its run with `choice`."""
    return out_dir / f"{_CHOICE_PREFIX[field]}-{choice}"


def has_last_checkpoint(out_dir: Path) -> bool:
    """Whether `out_dir` holds a training run to resume: its `last.pt`, or one of a `select`'s runs."""
    runs = [_choice_dir(out_dir, name, choice) for name, choices in SELECT_CHOICES.items() for choice in choices]
    return (out_dir / LAST).is_file() or any(has_last_checkpoint(run) for run in runs if run.is_dir())


def _fit_each_choice(recipe: Recipe, field: str, *, cache_dir: Path | None, split: Split, out_dir: Path,
                     device: str, resume: bool, without_ppi: Path | None) -> TrainResult:
    """`ppi.<field>: select` (`ppi.intervened_norm`, `ppi.look_level`): train once per choice of `select_choices`
    (`ppi.look_choices` names the look level's pair), each in `<prefix>-<choice>/`, and keep the run whose kept
    epoch ranks higher on the validation split under `eval.select`.

    The winner's `best.pt` is copied to `out_dir/best.pt`; `<prefix>-select.json` records every key. Each
    run resumes from its own `last.pt` with `resume`, so an interrupted choice continues where it stopped.
    """
    choices, prefix = select_choices(recipe.ppi, field), _CHOICE_PREFIX[field]
    if len(split.val) == 0:
        raise ConfigError(f"ppi.{field}: select chooses on the validation split, and this run has none",
                          hint=f"set data.val_fraction above 0, or choose {' or '.join(choices)}")
    results: dict[str, TrainResult] = {}
    for choice in choices:
        sub = _choice_dir(out_dir, field, choice)
        settings: dict[str, Any] = {field: choice}
        if field == "look_level":  # each run trains one level: the pair it came from is the parent's record
            settings["look_choices"] = "swap-keep"
        variant = dataclasses.replace(recipe, ppi=dataclasses.replace(recipe.ppi, **settings))
        log(f"ppi.{field}: select: training with {choice}")
        results[choice] = fit(variant, cache_dir=cache_dir, split=split, out_dir=sub, device=device,
                              resume=resume and has_last_checkpoint(sub), without_ppi=without_ppi)
    chosen = max(choices, key=lambda c: (tuple(results[c].best_key), -choices.index(c)))
    won = results[chosen]
    if not won.is_main:
        return won
    with atomic_path(out_dir / BEST) as staged:
        shutil.copyfile(won.best_checkpoint, staged)
    if won.rejected:  # the winner's own marker, where reports look for it
        write_text(out_dir / REJECTED, (won.out_dir / REJECTED).read_text(encoding="utf-8"))
    else:
        (out_dir / REJECTED).unlink(missing_ok=True)
    write_text(out_dir / RECIPE, dump_yaml(recipe))
    write_json(out_dir / f"{prefix}-select.json", {"chosen": chosen, "select": recipe.eval.select,
                                                   "keys": {c: list(r.best_key) for c, r in results.items()},
                                                   "best_epochs": {c: r.best_epoch for c, r in results.items()}})
    log(f"ppi.{field}: select: kept {chosen} (epoch {won.best_epoch}; validation under eval.select: "
        f"{recipe.eval.select}; {', '.join(f'{c} {_key_text(results[c].best_key, recipe)}' for c in choices)})")
    return dataclasses.replace(won, out_dir=out_dir, best_checkpoint=out_dir / BEST)


def _key_text(key: tuple[float, ...], recipe: Recipe) -> str:
    if recipe.eval.select == "loss" and key:
        return f"val loss {-key[0]:.4f}"
    if recipe.eval.select == "metric" and key:
        return f"val {recipe.eval.metric} {key[0]:.4f}"
    return "last epoch"


def _fit(recipe: Recipe, cache_dir: Path | None, split: Split, out_dir: Path, ctx: DistContext,
         resume: bool) -> TrainResult:
    kind, device = recipe.data.dataset, ctx.device
    cache = describe_cache(kind, cache_dir)
    _start_run_folder(out_dir, recipe, cache_dir, split, resume, ctx)
    if ctx.is_main:
        data_hash = cache.get("hash") or config_hash({"dataset": kind, "data": recipe.data})  # as StudyData's
        write_run_record(out_dir, recipe, data_hash, device=device)
    seed_everything(recipe.seed)
    cuda = device.type == "cuda"
    if not cuda:
        keep_host_memory()
    model = build_model(recipe.model).to(device)
    if recipe.ppi.enabled and recipe.ppi.saliency == "wbp":
        check_wbp_supports(model, recipe.model.name)  # before any data is read or an epoch runs
    channels_last = recipe.schedule.channels_last if cuda else recipe.schedule.channels_last_cpu
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, recipe.optim)
    scheduler = build_scheduler(optimizer, recipe.schedule)
    weights = LossWeights(recipe.ppi)
    amp = cuda and recipe.schedule.amp
    scaler = torch.amp.GradScaler("cuda") if amp and not torch.cuda.is_bf16_supported() else None
    state = resume_state(out_dir, recipe, model, optimizer, scheduler, weights, scaler) if resume else fresh_state()
    net: torch.nn.Module = model
    if ctx.enabled:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    binary = recipe.model.num_classes == 1
    step = TrainStep(model=model, net=net, cfg=recipe.ppi, weights=weights, binary=binary, device=device, amp=amp,
                     scaler=scaler, mask_model=_mask_model(recipe, model, device))
    data_cfg = dataset_config(recipe)
    if recipe.ppi.enabled and recipe.ppi.mask == "lesion":
        _require_lesion_masks(build_dataset(kind, cache_dir, split.train, data_cfg, train=True, seed=recipe.seed),
                              cache_dir)
    val_set = build_dataset(kind, cache_dir, split.val, data_cfg, train=False, seed=recipe.seed)
    volume = is_volume_model(model)
    last_plot = -math.inf  # when training.png was last drawn (monotonic seconds)
    for epoch in range(state["epoch"], recipe.schedule.epochs):
        started = time.monotonic()
        seed = epoch_seed(recipe.seed, epoch)
        torch.manual_seed(seed + ctx.rank)  # dropout
        generator = torch.Generator().manual_seed(seed + ctx.rank)  # L_ad permutations
        if volume:
            model.set_attention_bias(attention_bias(epoch, recipe.model.multiview))  # type: ignore[operator]
        model.train()
        ppi_epoch = step.uses_ppi(epoch, 2)  # past the warm-up, for batches of two or more
        if recipe.ppi.intervened_norm == "frozen" and ppi_epoch:
            freeze_batch_norm(model)
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        # the answer key's regions (lesion masks, a mark's box) only where the step reads them: PPI epochs
        for batch in _train_batches(kind, cache_dir, split, recipe, data_cfg, seed, ctx, epoch, ppi_epoch):
            x, positions = model_inputs(batch, device, non_blocking=cuda, channels_last=channels_last)
            labels = batch["label"].to(device)
            labels = labels.float() if binary else labels.long()
            optimizer.zero_grad(set_to_none=True)
            lesion = batch.get("mask")  # lesion masks, where the data has them (diagnostics; ppi.mask: lesion)
            values = step(x, labels, positions, epoch=epoch, generator=generator, lesion=lesion,
                          cue=batch.get("cue"))
            if not math.isfinite(values["loss"]):
                raise ModelError(f"training diverged at epoch {epoch + 1}: loss {values['loss']}",
                                 hint="lower optim.lr, or set ppi.alpha/beta/gamma lower")
            values["grad_norm"] = grad_norm(optimizer, scaler)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            for name, value in values.items():
                if math.isfinite(value):  # a diagnostic a batch could not measure (p_con without positives)
                    sums[name] = sums.get(name, 0.0) + value
                    counts[name] = counts.get(name, 0) + 1
        lr = optimizer.param_groups[-1]["lr"]
        scheduler.step()
        ranks = _check_ranks_agree(ctx, model)
        metric, val_loss, threshold = _validate(model, val_set, recipe, ctx, device, amp)
        row = {"epoch": epoch + 1, "ppi": int(ppi_epoch), "lr": lr,
               **{f"train_{k}": v / counts[k] for k, v in sums.items()},
               "alpha": weights.weight("con", epoch), "beta": weights.weight("reg", epoch),
               "gamma": weights.weight("ad", epoch),
               f"val_{recipe.eval.metric}": metric, "val_loss": val_loss, "seconds": time.monotonic() - started}
        key = selection_key(recipe.eval.select, metric, val_loss, epoch)
        # A PPI run's best.pt must be a PPI model: its first PPI epoch replaces any warm-up epoch.
        first_ppi_epoch = recipe.ppi.enabled and epoch == recipe.ppi.start_epoch > 0
        improved = (state["best_epoch"] < 1 or first_ppi_epoch or key > tuple(state["best_key"])
                    or len(split.val) == 0)
        if improved:
            state.update(best_epoch=epoch + 1, best_key=list(key), best_metric=metric)
        state["rows"].append(row)
        state["epoch"] = epoch + 1
        if ctx.is_main:
            save_epoch(out_dir, recipe, model, cache, split, state, row, improved, optimizer, scheduler, weights,
                       scaler, ranks, threshold)
            last_plot = report_epoch(out_dir, recipe, state["rows"], last_plot)
        ctx.barrier()
    rejected = ppi_rejection(recipe, state["rows"], state["best_epoch"])  # reported once `_fall_back` has its run
    if ctx.is_main:
        best = state["best_metric"]
        rule = {"metric": "", "loss": " (lowest val loss)", "last": " (the last epoch)"}[recipe.eval.select]
        log(f"best epoch {state['best_epoch']}{rule}: val {recipe.eval.metric} {best:.4f}" if math.isfinite(best) else
            f"kept epoch {state['best_epoch']}: no validation metric (no validation rows, or one class in them)")
        report_findings(out_dir, check_training(recipe, state["rows"], state["best_epoch"]))
    return TrainResult(out_dir=out_dir, best_checkpoint=out_dir / BEST, last_checkpoint=out_dir / LAST,
                       best_epoch=state["best_epoch"], best_metric=float(state["best_metric"]),
                       metrics_csv=out_dir / METRICS, is_main=ctx.is_main, best_key=tuple(state["best_key"]),
                       rejected=rejected)


def _start_run_folder(out_dir: Path, recipe: Recipe, cache_dir: Path | None, split: Split, resume: bool,
                      ctx: DistContext) -> None:
    if not resume and (out_dir / LAST).exists():
        raise ConfigError(f"{out_dir}: already holds a training run ({LAST})",
                          hint="pass --resume to continue it, or choose another --out")
    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text(out_dir / RECIPE, dump_yaml(recipe))
        subjects = dataset_manifest(recipe.data.dataset, cache_dir, dataset_config(recipe))["subject_id"]
        save_split(out_dir / SPLIT, split, subjects.astype(str).to_numpy())  # refuses a subject on two sides
    ctx.barrier()


def _mask_model(recipe: Recipe, model: torch.nn.Module, device: torch.device) -> torch.nn.Module | None:
    """The frozen model of `ppi.mask_model`, in eval mode, or None; refused in one line where it cannot explain
    the images the model in training sees (another input size, a volume model for an image one or back)."""
    path = recipe.ppi.mask_model
    if not (recipe.ppi.enabled and path):
        return None
    teacher, meta = load_model(Path(path).expanduser(), device)
    spec, own = meta.get("model", {}), recipe.model
    kind = "volumes" if is_volume_model(teacher) else "images"
    if is_volume_model(teacher) != is_volume_model(model) or spec.get("input_size") != own.input_size:
        raise ConfigError(f"ppi.mask_model: {Path(path).name} explains other images than this recipe's model "
                          f"(input size {spec.get('input_size')}, {kind})",
                          hint="give a checkpoint trained with this recipe on this data (e.g. the baseline's best.pt)")
    return teacher.requires_grad_(False)


def _require_lesion_masks(dataset: Any, cache_dir: Path | None) -> None:
    """`ppi.mask: lesion` takes its masks from the data: refuse, before the first epoch, data without them."""
    if len(dataset) and "mask" not in dataset[0]:
        raise missing_lesion_masks(cache_dir or "this data")


def _train_batches(kind: str, cache_dir: Path | None, split: Split, recipe: Recipe, data_cfg: Any, seed: int,
                   ctx: DistContext, epoch: int, regions: bool) -> Any:
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

    dataset = build_dataset(kind, cache_dir, split.train, data_cfg, train=True, seed=seed + ctx.rank, regions=regions)
    if ctx.enabled:
        sampler: Any = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed)
    else:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    loader = DataLoader(dataset, batch_size=recipe.data.batch_size, sampler=sampler,
                        num_workers=recipe.data.num_workers, pin_memory=ctx.device.type == "cuda",
                        persistent_workers=False)
    if not ctx.is_main:
        return loader
    return progress(loader, f"epoch {epoch + 1}/{recipe.schedule.epochs}")


def _validate(model: torch.nn.Module, dataset: Any, recipe: Recipe, ctx: DistContext, device: torch.device,
              amp: bool) -> tuple[float, float, dict[str, Any]]:
    """The validation metric and loss (over the clean images, and with `eval.select_on: looks` over them in each
    other's looks too), and the operating threshold chosen on the clean predictions."""
    result = None
    if ctx.is_main and len(dataset):
        pred = predict(model, dataset, device=device, batch_size=recipe.data.batch_size,
                       num_workers=recipe.data.num_workers, amp=amp)
        ranked = pred
        if recipe.eval.select_on == "looks":  # the clean images and each in another class's look
            ranked = joined(pred, predict_in_other_looks(
                model, dataset, kind=recipe.ppi.swap_look, sigma=recipe.ppi.look_sigma, level=recipe.ppi.look_level,
                device=device, batch_size=recipe.data.batch_size, num_workers=recipe.data.num_workers, amp=amp))
        result = (validation_metric(ranked, recipe.eval.metric), _log_loss(ranked), operating_threshold(pred))
    result = ctx.broadcast(result)
    return result if result is not None else (math.nan, math.nan, operating_threshold(None))


def _check_ranks_agree(ctx: DistContext, model: torch.nn.Module) -> dict[str, Any] | None:
    """Under DDP: average running statistics, then check every rank holds the same weights."""
    if not ctx.enabled:
        return None
    average_buffers(ctx, model)
    digests = gather(ctx, weights_digest(model))
    if len(set(digests)) != 1:
        raise ModelError(f"DDP ranks hold different weights ({len(set(digests))} versions)",
                         hint="a bug: report it with the recipe; train with one process meanwhile")
    return {"world_size": ctx.world_size, "weights_sha256": digests}


def _log_loss(pred: Predictions) -> float:
    eps = 1e-7
    if pred.binary:
        p = np.clip(pred.scores, eps, 1 - eps)
        return float(-np.mean(pred.labels * np.log(p) + (1 - pred.labels) * np.log(1 - p)))
    rows = np.arange(pred.labels.size)
    return float(-np.mean(np.log(np.clip(pred.scores[rows, pred.labels.astype(int)], eps, 1.0))))
