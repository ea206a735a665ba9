# SPDX-License-Identifier: MIT
"""What cross-validation and cross-site studies share: inputs from the workspace, a study record,
one training run, and predictions written to files.

A study folder holds `study.json` (what was run: recipe hash, data hash, folds/seed) and the resolved
`recipe.yaml`. Every fold or cell leaves `predictions.csv` behind, so collecting and comparing
work from files, on any machine, after any number of separate jobs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli.config import Recipe, config_hash, dump_yaml, load_recipe
from ppi_cli.console import log
from ppi_cli.errors import CacheError, ConfigError, DataError
from ppi_cli.files import write_json, write_text
from ppi_cli.workspace import Workspace

__all__ = ["StudyData", "resolve_study", "load_study_data", "default_recipe_name", "write_study_record",
           "train_once", "predict_rows", "TRAINED_FILE"]

TRAINED_FILE = "trained.json"  # written after training finishes; its presence lets a re-run skip training
CACHE_KINDS = ("lidc", "ga", "folder")


@dataclass(frozen=True)
class StudyData:
    """The rows a study splits: one label, subject and site per manifest row of the cache."""

    kind: str  # dataset kind: lidc, ga, folder or synthetic
    cache_dir: Path | None  # None for the in-memory synthetic dataset
    labels: np.ndarray  # (N,) int
    subjects: np.ndarray  # (N,) str: patient / eye; folds and hold-outs never split one
    sites: np.ndarray  # (N,) str: acquisition site ("na" where the data has none)
    data_hash: str  # the cache's content hash (changes when any cached byte changes)

    @property
    def name(self) -> str:
        """A short label for reports: the cache folder's name, or the dataset kind."""
        return self.cache_dir.name if self.cache_dir is not None else self.kind


def default_recipe_name(dataset: str) -> str:
    """The default recipe of a dataset: PPI+WBP on the paper's backbone with CUDA, its `-cpu` twin without."""
    import torch

    if dataset not in ("lidc", "ga"):
        raise ConfigError(f"no default recipe for dataset '{dataset}'", hint="pass --recipe, e.g. cub-ppi-wbp-cpu")
    return f"{dataset}-ppi-wbp" if torch.cuda.is_available() else f"{dataset}-ppi-wbp-cpu"


def _detect_dataset(workspace: Workspace, data: Path | None, wanted: str | None) -> str:
    if wanted:
        return wanted
    if data is not None:
        info = data / "cache.json"
        if info.is_file():
            try:
                return str(json.loads(info.read_text(encoding="utf-8"))["kind"])
            except (ValueError, KeyError):
                pass  # open_cache reports the damage with its rebuild command
        raise CacheError(f"{data}: not a prepared cache (no readable cache.json)",
                         hint="point --data at a folder written by `ppi prepare ...`")
    present = [kind for kind in ("lidc", "ga") if (workspace.cache(kind) / "cache.json").is_file()]
    if len(present) == 1:
        return present[0]
    if not present:
        raise CacheError(f"{workspace.root}: no prepared cache in the workspace (looked for cache/lidc, cache/ga)",
                         hint="run `ppi prepare lidc --root DIR` or `ppi prepare ga --manifest labels.csv` first, "
                              "or pass --data")
    raise ConfigError(f"{workspace.root}: both the LIDC and the GA cache exist", hint="choose with --dataset lidc "
                      "or --dataset ga")


def resolve_study(recipe_ref: str | None, *, data: Path | None = None, dataset: str | None = None,
                  workspace: Path | None = None,
                  overrides: Mapping[str, Any] | None = None) -> tuple[Recipe, StudyData]:
    """The recipe and data of a study from explicit options, else the workspace defaults.

    Without `--recipe`, the dataset is `--dataset`, else the kind of `--data`, else the one prepared
    cache in the workspace, and the recipe is that dataset's PPI+WBP default (`default_recipe_name`).

    Raises:
        ConfigError: `--dataset` contradicts the recipe, or both workspace caches exist.
        CacheError: No cache to study.
    """
    ws = Workspace.resolve(workspace)
    if recipe_ref is None:
        kind = _detect_dataset(ws, data, dataset)
        recipe_ref = default_recipe_name(kind)
        log(f"recipe: {recipe_ref} (the default for {kind}; choose another with --recipe)")
    recipe = load_recipe(recipe_ref, overrides)
    if dataset and dataset != recipe.data.dataset:
        raise ConfigError(f"--dataset {dataset}: recipe '{recipe.name}' trains on '{recipe.data.dataset}'",
                          hint=f"drop --dataset, or use a {dataset} recipe such as {dataset}-ppi-wbp-cpu")
    kind = recipe.data.dataset
    cache_dir = None
    if kind in CACHE_KINDS:
        cache_dir = data or (Path(recipe.data.cache) if recipe.data.cache else ws.cache(kind))
    return recipe, load_study_data(recipe, cache_dir)


def load_study_data(recipe: Recipe, cache_dir: Path | None) -> StudyData:
    """Labels, subjects and sites of every row of the recipe's data (the cache's manifest)."""
    kind = recipe.data.dataset
    if kind not in CACHE_KINDS:
        return _in_memory_data(recipe)
    from ppi_cli.data.cache import open_cache, read_manifest

    info = open_cache(cache_dir, kind, _rebuild_hint(kind, cache_dir))
    frame = read_manifest(cache_dir, required=("label",))
    subject_column = next((c for c in ("subject_id", "patient_id", "sample_id") if c in frame.columns), None)
    if subject_column is None:
        raise CacheError(f"{cache_dir / 'manifest.csv'}: no subject_id or patient_id column",
                         hint=_rebuild_hint(kind, cache_dir))
    labels = frame["label"].to_numpy()
    if np.any(labels != np.round(labels)):
        raise DataError(f"{cache_dir / 'manifest.csv'}: column label holds non-integer values")
    sites = frame["site"].fillna("na").astype(str).to_numpy() if "site" in frame.columns else np.full(len(frame), "na")
    return StudyData(kind, Path(cache_dir), labels.astype(np.int64), frame[subject_column].astype(str).to_numpy(),
                     sites, info.content_hash)


def _in_memory_data(recipe: Recipe) -> StudyData:
    from ppi_cli.data.datasets import dataset_class

    cls = dataset_class(recipe.data.dataset)
    manifest_of = getattr(cls, "manifest_without_cache", None)
    if manifest_of is None:
        raise ConfigError(f"data.dataset: '{recipe.data.dataset}' has no manifest to split",
                          hint="use a prepared cache (lidc, ga, folder) or the synthetic dataset")
    frame = manifest_of(recipe.data)
    return StudyData(recipe.data.dataset, None, frame["label"].to_numpy(dtype=np.int64),
                     frame["subject_id"].astype(str).to_numpy(), frame["site"].astype(str).to_numpy(),
                     config_hash({"dataset": recipe.data.dataset, "data": recipe.data}))


def _rebuild_hint(kind: str, cache_dir: Path | None) -> str:
    out = f" --out {cache_dir}" if cache_dir is not None else ""
    return {"lidc": f"ppi prepare lidc --root DIR{out}", "ga": f"ppi prepare ga --manifest labels.csv{out}",
            "folder": f"ppi prepare folder --root DIR{out}"}.get(kind, "ppi prepare ...")


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
        if changed:
            raise ConfigError(f"{out}: this folder holds a study run with other settings ({', '.join(changed)})",
                              hint="use another --out, or repeat the original options")
        return []
    out.mkdir(parents=True, exist_ok=True)
    written = [write_json(path, record)]
    for name, recipe in recipes.items():
        suffix = "" if len(recipes) == 1 else f"-{name}"
        written.append(write_text(out / f"recipe{suffix}.yaml", dump_yaml(recipe)))
    return written


def train_once(recipe: Recipe, data: StudyData, split: Any, run_dir: Path, *, device: str) -> Path:
    """Train on `split` into `run_dir` and return the best checkpoint; a finished run is not trained again.

    An interrupted run resumes from its last checkpoint (the trainer's `resume`).
    """
    from ppi_cli.data.splits import save_split
    from ppi_cli.engine.trainer import fit

    marker = run_dir / TRAINED_FILE
    if marker.is_file():
        best = Path(json.loads(marker.read_text(encoding="utf-8"))["best_checkpoint"])
        best = best if best.is_absolute() else run_dir / best
        if best.is_file():
            log(f"{run_dir.name}: already trained, reusing {best.name}")
            return best
    run_dir.mkdir(parents=True, exist_ok=True)
    save_split(run_dir / "split.json", split, data.subjects)
    resume = (run_dir / "last.pt").is_file()
    result = fit(recipe, cache_dir=data.cache_dir, split=split, out_dir=run_dir, device=device, resume=resume)
    best = Path(result.best_checkpoint)
    write_json(marker, {"best_checkpoint": best.name if best.parent == run_dir else str(best),
                        "best_epoch": result.best_epoch, "best_metric": result.best_metric})
    return best


def predict_rows(checkpoint: Path, recipe: Recipe, data: StudyData, rows: np.ndarray, *,
                 device: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores of a trained model on manifest rows: (indices, labels, scores), sorted by manifest row."""
    from ppi_cli.data.datasets import build_dataset
    from ppi_cli.device import select_device
    from ppi_cli.engine.evaluate import predict
    from ppi_cli.engine.trainer import dataset_config
    from ppi_cli.models import load_model

    target = select_device(device)
    model, _ = load_model(checkpoint, device=target)
    dataset = build_dataset(data.kind, data.cache_dir, np.sort(rows), dataset_config(recipe), train=False,
                            seed=recipe.seed)
    out = predict(model, dataset, device=target, batch_size=recipe.data.batch_size,
                  amp=target.type == "cuda" and recipe.schedule.amp)
    order = np.argsort(np.asarray(out.indices))
    return (np.asarray(out.indices)[order], np.asarray(out.labels)[order], np.asarray(out.scores)[order])
