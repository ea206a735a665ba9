# SPDX-License-Identifier: MIT
"""The one path from options to rows for every verb that trains (`train`, `crossval`, `cross-site`),
and what studies share: a study record, one training run, and predictions written to files.

- `resolve_study` resolves recipe and cache: `--recipe`, else `default_recipe` of the dataset;
  the dataset is `--dataset`, else the kind of `--data` (`cache_kind`), else the one prepared
  cache of the workspace, else the generated `synthetic` task; the cache is `--data`, else the
  recipe's `data.cache`, else the workspace's `cache/<dataset>`.
- `study_split` makes the rows of one training run: test = fold k of `subject_folds(folds, seed)`,
  validation = a subject-grouped hold-out of the rest seeded with `seed + 1000 + k` (`seed`
  without a fold). `ppi train --fold k` and fold k of `ppi crossval` train on the same rows.

A study folder holds `study.json` (what was run: recipe hash, data hash, folds/seed) and the resolved
`recipe.yaml`. Every fold or cell leaves `predictions.csv` behind, so collecting and comparing
work from files, on any machine, after any number of separate jobs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ppi_cli.config import Recipe, config_hash, dump_yaml, load_recipe
from ppi_cli.config.loader import changed_settings, read_yaml
from ppi_cli.console import log
from ppi_cli.data.cache import INFO_FILE, cache_kind, open_cache, read_manifest, rebuild_hint
from ppi_cli.data.datasets import build_dataset, dataset_class
from ppi_cli.data.splits import Split, holdout_split, subject_folds
from ppi_cli.device import select_device
from ppi_cli.engine.evaluate import predict
from ppi_cli.engine.run_meta import RUN_RECORD, run_record
from ppi_cli.engine.trainer import dataset_config, fit, has_last_checkpoint
from ppi_cli.errors import CacheError, ConfigError, DataError
from ppi_cli.files import write_json, write_text
from ppi_cli.models import load_model
from ppi_cli.reports.metrics import binary_metrics, cell_flag
from ppi_cli.workspace import Workspace

__all__ = ["StudyClock", "StudyData", "resolve_study", "load_study_data", "default_recipe", "study_split",
           "fold_splits", "write_study_record", "train_once", "predict_rows", "test_summary", "TRAINED_FILE",
           "DEFAULT_RECIPES", "check_twin", "TWIN_HINT"]

TRAINED_FILE = "trained.json"  # written after training finishes; its presence lets a re-run skip training
CACHE_KINDS = ("lidc", "ga", "folder", "table")
# The default recipe of each dataset: PPI+WBP on the paper's backbone, with a `-cpu` twin for the CPU.
DEFAULT_RECIPES = {"lidc": "lidc-ppi-wbp", "ga": "ga-ppi-wbp", "folder": "cub-ppi-wbp", "table": "table-ppi-wbp"}
SYNTHETIC_RECIPE = "synthetic-ppi-wbp-cpu"  # the generated task has only a CPU-sized recipe


@dataclass(frozen=True)
class StudyData:
    """The rows a study splits: one label, subject and site per manifest row of the cache."""

    kind: str  # dataset kind: lidc, ga, folder, table or synthetic
    cache_dir: Path | None  # None for the in-memory synthetic dataset
    labels: np.ndarray  # (N,) int
    subjects: np.ndarray  # (N,) str: patient / eye; folds and hold-outs never split one
    sites: np.ndarray  # (N,) str: acquisition site ("na" where the data has none)
    data_hash: str  # the cache's content hash (changes when any cached byte changes)

    @property
    def name(self) -> str:
        """A short label for reports: the cache folder's name, or the dataset kind."""
        return self.cache_dir.name if self.cache_dir is not None else self.kind


def default_recipe(dataset: str, *, cuda: bool) -> str:
    """The default recipe of a dataset: PPI+WBP on the paper's backbone with CUDA, its `-cpu` twin without.

    Raises:
        ConfigError: A dataset without a default recipe.
    """
    if dataset == "synthetic":
        return SYNTHETIC_RECIPE
    if dataset not in DEFAULT_RECIPES:
        raise ConfigError(f"no default recipe for dataset '{dataset}'", hint="pass --recipe, e.g. cub-ppi-wbp-cpu")
    return DEFAULT_RECIPES[dataset] + ("" if cuda else "-cpu")


def _detect_dataset(workspace: Workspace, data: Path | None, wanted: str | None) -> str:
    if wanted:
        return wanted
    if data is not None:
        kind = cache_kind(data)
        if kind is None:
            raise CacheError(f"{data}: not a prepared cache (no readable {INFO_FILE})",
                             hint="point --data at a folder written by `ppi prepare ...`, or pass --recipe")
        return kind
    present = [kind for kind in CACHE_KINDS if (workspace.cache(kind) / INFO_FILE).is_file()]
    if len(present) > 1:
        raise ConfigError(f"{workspace.root}: several prepared caches ({', '.join(present)})",
                          hint=f"choose with --dataset {' or --dataset '.join(present)}")
    if present:
        return present[0]
    log(f"no prepared cache in {workspace.root} (cache/lidc, cache/ga, cache/folder, cache/table): the generated task; "
        "prepare one with `ppi prepare ...` or pass --data")
    return "synthetic"


def resolve_study(recipe_ref: str | None, *, data: Path | None = None, dataset: str | None = None,
                  workspace: Path | None = None, overrides: Mapping[str, Any] | None = None,
                  device: str = "auto", verify: bool = False) -> tuple[Recipe, StudyData]:
    """The recipe and data of a training verb from explicit options, else the workspace defaults.

    Without `--recipe`, the dataset is `--dataset`, else the kind of `--data`, else the one prepared
    cache in the workspace, else the generated task, and the recipe is that dataset's default
    (`default_recipe`, its `-cpu` twin unless `device` is CUDA).

    Raises:
        ConfigError: `--dataset` contradicts the recipe, or several workspace caches exist.
        CacheError: `--data` is no cache, or the cache is missing, stale or foreign.
    """
    ws = Workspace.resolve(workspace)
    if recipe_ref is None:
        kind = _detect_dataset(ws, data, dataset)
        recipe_ref = default_recipe(kind, cuda=select_device(device).type == "cuda")
        log(f"recipe: {recipe_ref} (the default for {kind}; choose another with --recipe)")
    recipe = load_recipe(recipe_ref, overrides)
    if dataset and dataset != recipe.data.dataset:
        raise ConfigError(f"--dataset {dataset}: recipe '{recipe.name}' trains on '{recipe.data.dataset}'",
                          hint=f"drop --dataset, or use a {dataset} recipe such as {dataset}-ppi-wbp-cpu")
    kind = recipe.data.dataset
    cache_dir = None
    if kind in CACHE_KINDS:
        cache_dir = data or (Path(recipe.data.cache) if recipe.data.cache else ws.cache(kind))
    return recipe, load_study_data(recipe, cache_dir, verify=verify)


def load_study_data(recipe: Recipe, cache_dir: Path | None, verify: bool = False) -> StudyData:
    """Labels, subjects and sites of every row of the recipe's data (the cache's manifest).

    `verify` re-hashes every cache file (`--verify`); by default sizes and the manifest's hash are checked.
    """
    kind = recipe.data.dataset
    if kind not in CACHE_KINDS:
        return _in_memory_data(recipe)
    info = open_cache(cache_dir, kind, rebuild_hint(kind, cache_dir), verify=verify)
    frame = read_manifest(cache_dir, required=("label",))
    subject_column = next((c for c in ("subject_id", "patient_id", "sample_id") if c in frame.columns), None)
    if subject_column is None:
        raise CacheError(f"{cache_dir / 'manifest.csv'}: no subject_id or patient_id column",
                         hint=rebuild_hint(kind, cache_dir))
    labels = pd.to_numeric(frame["label"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(labels) | (labels != np.round(labels))
    if bad.any():  # the value itself is not quoted: manifests hold subject data
        raise DataError(f"{cache_dir / 'manifest.csv'}:{int(np.flatnonzero(bad)[0]) + 2}: column label holds a value "
                        "that is not an integer class", hint=f"rebuild with: {rebuild_hint(kind, cache_dir)}")
    if "sample_id" in frame.columns and frame["sample_id"].duplicated().any():
        line = int(np.flatnonzero(frame["sample_id"].duplicated().to_numpy())[0]) + 2
        raise DataError(f"{cache_dir / 'manifest.csv'}:{line}: duplicated sample_id (a row appears twice)",
                        hint=f"rebuild with: {rebuild_hint(kind, cache_dir)}")
    sites = frame["site"].fillna("na").astype(str).to_numpy() if "site" in frame.columns else np.full(len(frame), "na")
    return StudyData(kind, Path(cache_dir), labels.astype(np.int64), frame[subject_column].astype(str).to_numpy(),
                     sites, info.content_hash)


TWIN_HINT = ("make the twin with the same `ppi synth` options and seed as --data, changing only --shortcut or "
             "--correlation, and prepare it the same way")


def check_twin(data: StudyData, twin: StudyData) -> None:
    """Refuse a twin (`ppi sweep --twin`) whose rows are not `data`'s: the same count, and row by row the same
    label, subject and site, so a split of one is the same split of the other.

    Raises:
        DataError: Naming the twin and the first row or field that differs.
    """
    name, other = (str(d.cache_dir) if d.cache_dir is not None else d.name for d in (twin, data))
    if twin.labels.shape != data.labels.shape:
        raise DataError(f"{name}: {twin.labels.size} rows where {other} has {data.labels.size}", hint=TWIN_HINT)
    for field_name in ("labels", "subjects", "sites"):
        differs = np.flatnonzero(np.asarray(getattr(twin, field_name)) != np.asarray(getattr(data, field_name)))
        if differs.size:
            raise DataError(f"{name}: row {int(differs[0]) + 1} has another {field_name[:-1]} than in {other}",
                            hint=TWIN_HINT)


def _in_memory_data(recipe: Recipe) -> StudyData:
    cls = dataset_class(recipe.data.dataset)
    manifest_of = getattr(cls, "manifest_without_cache", None)
    if manifest_of is None:
        raise ConfigError(f"data.dataset: '{recipe.data.dataset}' has no manifest to split",
                          hint="use a prepared cache (lidc, ga, folder, table) or the synthetic dataset")
    frame = manifest_of(recipe.data)
    return StudyData(recipe.data.dataset, None, frame["label"].to_numpy(dtype=np.int64),
                     frame["subject_id"].astype(str).to_numpy(), frame["site"].astype(str).to_numpy(),
                     config_hash({"dataset": recipe.data.dataset, "data": recipe.data}))


def _split_of(data: StudyData, tests: list[np.ndarray] | None, fold: int | None, seed: int,
              val_fraction: float) -> Split:
    rows = np.arange(len(data.labels))
    test = np.zeros(0, dtype=np.int64)
    if tests is not None and fold is not None:
        test = tests[fold]
        rows = np.setdiff1d(rows, test)
    hold_out_seed = seed if fold is None else seed + 1000 + fold  # a different hold-out per fold
    train, val = holdout_split(rows, data.labels, data.subjects, val_fraction, hold_out_seed)
    return Split(train, val, test, fold=fold)


def study_split(data: StudyData, *, fold: int | None, folds: int, seed: int, val_fraction: float) -> Split:
    """The rows of one training run: fold `fold` of `folds` tested, a validation hold-out of the rest.

    The one rule for `ppi train --fold k` and fold k of `ppi crossval` (see the module docstring);
    without a fold nothing is tested and only the validation subjects are held out.

    Raises:
        ConfigError: `fold` outside 0 .. folds-1. DataError: Fewer subjects than folds.
    """
    if fold is None:
        return _split_of(data, None, None, seed, val_fraction)
    if not 0 <= fold < folds:
        raise ConfigError(f"--fold {fold}: folds are numbered 0 to {folds - 1} (eval.folds: {folds})",
                          hint=f"use --fold 0 to {folds - 1}")
    return _split_of(data, subject_folds(data.labels, data.subjects, folds, seed), fold, seed, val_fraction)


def fold_splits(data: StudyData, n_folds: int, seed: int, val_fraction: float) -> list[Split]:
    """`study_split` of every fold (the folds computed once): no subject in two parts, nor in two test folds."""
    tests = subject_folds(data.labels, data.subjects, n_folds, seed)
    return [_split_of(data, tests, k, seed, val_fraction) for k in range(n_folds)]


def write_study_record(out: Path, record: Mapping[str, Any], recipes: Mapping[str, Recipe]) -> list[Path]:
    """Write `study.json` and the resolved recipes, or check that an existing study used the same settings.

    Separate jobs of one study (`--fold k`, single cross-site cells) must agree on everything that
    changes results; a folder holding another study is refused rather than mixed.

    Raises:
        ConfigError: The folder holds a study with other settings.
    """
    path = out / "study.json"
    record = dict(record) | {"recipes": {name: config_hash(r) for name, r in recipes.items()}}
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            old = {}
        changed = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k))
        if changed == ["recipes"] and _same_recipes(out, recipes):  # fields added since, at their defaults
            changed = []
        if changed:
            raise ConfigError(f"{out}: this folder holds a study run with other settings ({', '.join(changed)})",
                              hint="use another --out, or repeat the original options")
        return [_write_study_run(out, record)]
    out.mkdir(parents=True, exist_ok=True)
    written = [write_json(path, record), _write_study_run(out, record)]
    for name, recipe in recipes.items():
        written.append(write_text(_recipe_file(out, name, recipes), dump_yaml(recipe)))
    return written


def _recipe_file(out: Path, name: str, recipes: Mapping[str, Recipe]) -> Path:
    return out / ("recipe.yaml" if len(recipes) == 1 else f"recipe-{name}.yaml")


def _same_recipes(out: Path, recipes: Mapping[str, Recipe]) -> bool:
    """Whether the recipes a study folder recorded (its recipe YAMLs) are these, up to fields added since."""
    for name, recipe in recipes.items():
        try:
            recorded = read_yaml(_recipe_file(out, name, recipes))
        except ConfigError:
            return False
        if changed_settings(recorded, recipe):
            return False
    return True


def _write_study_run(out: Path, record: Mapping[str, Any]) -> Path:
    """`run.json` of a study folder: this invocation's command and environment, with the study's hashes."""
    hashes = dict(record.get("recipes") or {})
    recipe_hash = next(iter(hashes.values())) if len(hashes) == 1 else (hashes or None)
    return write_json(out / RUN_RECORD, run_record(seed=record.get("seed"), recipe_hash=recipe_hash,
                                                   data_hash=record.get("data_hash")))


def train_once(recipe: Recipe, data: StudyData, split: Any, run_dir: Path, *, device: str,
               without_ppi: Path | None = None) -> Path:
    """Train on `split` into `run_dir` and return the best checkpoint; a finished run is not trained again.

    An interrupted run resumes from its last checkpoint (the trainer's `resume`). `without_ppi`: the study's run
    of the recipe without PPI on the same split (its baseline arm), which `ppi.fallback_drop` reads when finished
    instead of training the same run again (`fit`).
    """
    marker = run_dir / TRAINED_FILE
    if marker.is_file():
        best = Path(json.loads(marker.read_text(encoding="utf-8"))["best_checkpoint"])
        best = best if best.is_absolute() else run_dir / best
        if best.is_file():
            log(f"{run_dir.name}: already trained, reusing {best.name}")
            return best
    run_dir.mkdir(parents=True, exist_ok=True)
    resume = has_last_checkpoint(run_dir)
    result = fit(recipe, cache_dir=data.cache_dir, split=split, out_dir=run_dir, device=device, resume=resume,
                 without_ppi=without_ppi)
    best = Path(result.best_checkpoint)
    write_json(marker, {"best_checkpoint": best.name if best.parent == run_dir else str(best),
                        "best_epoch": result.best_epoch, "best_metric": result.best_metric})
    return best


class StudyClock:
    """The whole study's ETA, one line per finished training: `study: 2 of 5 trainings done, 41 s; ETA 62 s`.

    The estimate is the mean duration of the trainings finished in this call times the number left
    (a resumed study counts only what it still has to train).

    Example:
        >>> clock = StudyClock(5); ...; clock.done()   # after each fold or cross-site row
        'study: 1 of 5 trainings done, 20 s; ETA 80 s'
    """

    def __init__(self, total: int) -> None:
        import time

        self.total, self.finished, self._now = total, 0, time.monotonic
        self.started = self._now()

    def done(self) -> str:
        """Count one finished training and return the study line."""
        self.finished += 1
        spent = self._now() - self.started
        left = self.total - self.finished
        eta = f"ETA {spent / self.finished * left:.0f} s" if left else "all trained"
        return f"study: {self.finished} of {self.total} trainings done, {spent:.0f} s; {eta}"


def test_summary(labels: Any, scores: Any) -> str:
    """`test AUC 0.873 on 40 cases (12 positive)` (accuracy for multi-class scores), flagged when degenerate."""
    labels = np.asarray(labels)
    if np.ndim(scores) == 1:
        metrics = binary_metrics(labels.tolist(), np.asarray(scores).tolist())
        flag = cell_flag(metrics.auc, metrics.n, metrics.n_positive)
        return (f"test AUC {metrics.auc:.3f} on {metrics.n} cases ({metrics.n_positive} positive)"
                + (f", flagged: {flag}" if flag else ""))
    accuracy = float(np.mean(np.argmax(scores, axis=1) == labels)) if labels.size else math.nan
    return f"test accuracy {accuracy:.3f} on {labels.size} cases"


def predict_rows(checkpoint: Path, recipe: Recipe, data: StudyData, rows: np.ndarray, *,
                 device: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores of a trained model on manifest rows: (indices, labels, scores), sorted by manifest row."""
    target = select_device(device)
    model, _ = load_model(checkpoint, device=target)
    dataset = build_dataset(data.kind, data.cache_dir, np.sort(rows), dataset_config(recipe), train=False,
                            seed=recipe.seed)
    out = predict(model, dataset, device=target, batch_size=recipe.data.batch_size,
                  amp=target.type == "cuda" and recipe.schedule.amp)
    order = np.argsort(np.asarray(out.indices))
    return (np.asarray(out.indices)[order], np.asarray(out.labels)[order], np.asarray(out.scores)[order])
