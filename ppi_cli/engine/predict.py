# SPDX-License-Identifier: MIT
"""`ppi predict`: score many scans with one checkpoint or the ensemble of a study's fold models.

Each checkpoint rebuilds its own preprocessing from its meta (as `explain` does), so a manifest of raw
scans is read exactly as `prepare` read it; a prepared cache is read through the dataset class the
studies use. An ensemble averages its members' probabilities and calls a positive at the mean of
their stored operating thresholds (Youden's J on each member's validation split; 0.5, with a note,
for checkpoints that store none). `predictions.csv` holds one row per input:

    path       the input, relative to its manifest or to the folder given (never a subject id)
    site       the site of a manifest or cache row, where known
    score      the positive-class probability (binary); score_0 … score_{K-1} for K classes
    class      the class at the operating threshold (binary) or the most probable one
    threshold  the operating threshold used (binary)
    models     the checkpoints, `;`-separated, each as `<folder>/<file>@<sha256 prefix>`
    map        with `--maps DIR`: the saliency map's `.npy`, relative to DIR

Inputs that cannot be read are left out, each with its reason in `errors.csv` beside the predictions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ppi_cli.config import Recipe
from ppi_cli.config.loader import build
from ppi_cli.config.site import SiteConfig, load_site_configs
from ppi_cli.console import log, progress
from ppi_cli.data.datasets import build_dataset, dataset_manifest
from ppi_cli.data.explain_input import load_input
from ppi_cli.data.ga.prepare import resolve_sites_dir
from ppi_cli.device import select_device
from ppi_cli.engine.evaluate import model_inputs, predict, stored_threshold
from ppi_cli.engine.explain import site_config
from ppi_cli.engine.explain_inputs import InputSpec, prepare_image, prepare_volume
from ppi_cli.engine.predict_inputs import CacheInput, ScanInput, collect_inputs, study_checkpoints
from ppi_cli.engine.trainer import dataset_config
from ppi_cli.errors import DataError, ModelError, PpiError
from ppi_cli.files import check_outputs, save_npy, sha256_file, shareable_text, write_csv
from ppi_cli.models import load_model
from ppi_cli.saliency import saliency_map

__all__ = ["PredictConfig", "PredictResult", "Ensemble", "load_ensemble", "run_predict", "ERRORS_FILE"]

ERRORS_FILE = "errors.csv"


@dataclass(frozen=True)
class PredictConfig:
    """What `ppi predict` was asked to do (one field per option)."""

    inputs: tuple[Path, ...]
    models: tuple[Path, ...]
    out: Path | None = None  # predictions CSV, or a folder for it; None: a new run folder in the workspace
    maps: Path | None = None  # write each input's saliency map here as .npy
    method: str = "wbp"  # saliency method of the maps
    site: str | None = None  # volume models, inputs without a manifest site: a bundled site id or a site YAML
    sites: Path | None = None  # folder of site configs for manifest rows (default: beside the manifest, else bundled)
    batch_size: int = 16  # samples per forward when scoring a prepared cache
    device: str = "auto"
    workspace: Path | None = None


@dataclass
class Ensemble:
    """The models of `--model`, their shared input spec, ids, and the operating threshold."""

    models: list[Any]
    metas: list[dict[str, Any]]
    ids: list[str]
    spec: InputSpec
    threshold: float | None  # None: multi-class (argmax)
    notes: list[str] = field(default_factory=list)

    @property
    def recipe(self) -> Recipe:
        """The first member's recipe (the data section of every member must agree to ensemble them)."""
        return build(Recipe, self.metas[0]["recipe"], source="checkpoint meta (recipe)")


@dataclass
class PredictResult:
    """The predictions table and the files written."""

    frame: Any
    out: Path
    wrote: list[Path]
    errors: list[tuple[str, str]]
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        """Counts and paths, for `--json`."""
        counts = self.frame["class"].value_counts(sort=False) if len(self.frame) else {}
        return {"predictions": str(self.out), "n": int(len(self.frame)), "errors": len(self.errors),
                "classes": {str(k): int(v) for k, v in dict(counts).items()}, "notes": self.notes}

    def __rich__(self) -> Any:
        from rich.table import Table

        table = Table(title="ppi predict", show_header=False)
        table.add_row("scored", f"{len(self.frame)} input(s)")
        if len(self.frame):
            for name, count in self.frame["class"].value_counts(sort=False).items():
                table.add_row(f"class {name}", str(int(count)))
            if "threshold" in self.frame.columns:
                table.add_row("threshold", f"{float(self.frame['threshold'].iloc[0]):.3f}")
        if self.errors:
            table.add_row("left out", f"{len(self.errors)} unreadable input(s), see {ERRORS_FILE}")
        for note in self.notes:
            table.add_row("note", note)
        return table


def load_ensemble(paths: tuple[Path, ...], device: torch.device) -> Ensemble:
    """Load every checkpoint `--model` names and check they can be averaged.

    Raises:
        ModelError: No model, or members with different preprocessing or classes.
    """
    files = [p for path in paths for p in study_checkpoints(Path(path))]
    if not files:
        raise ModelError("no --model given", hint="pass --model best.pt or a study folder")
    models: list[Any] = []
    metas: list[dict[str, Any]] = []
    ids: list[str] = []
    thresholds: list[float] = []
    notes: list[str] = []
    for path in files:
        model, meta = load_model(path, device)
        spec = InputSpec.from_meta(meta, path)
        if metas and spec != InputSpec.from_meta(metas[0], files[0]):
            raise ModelError(f"{path}: preprocesses its input otherwise than {files[0]}, so they cannot be averaged",
                             hint="ensemble the folds of one study only")
        value, note = stored_threshold(meta)
        if note and note not in notes:
            notes.append(note)
        models.append(model)
        metas.append(meta)
        thresholds.append(value)
        ids.append(f"{path.parent.name}/{path.name}@{sha256_file(path)[:12]}")
    binary = int((metas[0].get("model") or {}).get("num_classes", 1)) == 1
    if len(models) > 1 and binary:
        notes.append(f"ensemble of {len(models)} models: mean probability, positive at the mean of their thresholds")
    return Ensemble(models, metas, ids, InputSpec.from_meta(metas[0], files[0]),
                    float(np.mean(thresholds)) if binary else None, notes)


def run_predict(cfg: PredictConfig) -> PredictResult:
    """Score every input with the ensemble and write `predictions.csv` (and maps, and `errors.csv`).

    Raises:
        ConfigError: Outputs that would overwrite an input. ModelError: Unusable checkpoints.
        DataError: No input could be scored.

    Example:
        >>> run_predict(PredictConfig((Path("site-E/manifest.csv"),), (Path("runs/cv"),))).out
    """
    import pandas as pd

    device = select_device(cfg.device)
    ensemble = load_ensemble(cfg.models, device)
    volume = ensemble.spec.kind == "volume"
    inputs = collect_inputs(tuple(Path(p) for p in cfg.inputs), volume)
    out = _out_path(cfg, ensemble)
    check_outputs({"--out": out, "--maps": cfg.maps},
                  {**{f"input {p}": p for p in cfg.inputs}, **{f"the checkpoint {m}": m for m in cfg.models}})
    rows: list[dict[str, Any]] = []
    errors: list[tuple[str, str]] = []
    site_configs: dict[Path, dict[str, SiteConfig]] = {}
    for item in inputs:
        if isinstance(item, CacheInput):
            rows += _score_cache(item, ensemble, cfg, device)
            continue
        try:
            rows.append(_score_scan(item, ensemble, cfg, device, site_configs))
        except PpiError as exc:  # one unreadable scan does not stop the others; errors.csv says why
            errors.append((item.path, shareable_text(exc.one_line(), [item.source], item.root)))
            log(f"{item.path}: left out ({exc.message})")
    wrote = []
    if errors:
        wrote.append(write_csv(out.parent / ERRORS_FILE, pd.DataFrame(errors, columns=["path", "reason"])))
    if not rows:
        raise DataError(f"none of the {len(inputs)} input(s) could be scored",
                        hint=f"see {out.parent / ERRORS_FILE}" if errors else "give at least one scan")
    frame = pd.DataFrame(rows)
    frame.insert(len(frame.columns) - (1 if "map" in frame.columns else 0), "models", ";".join(ensemble.ids))
    wrote.insert(0, write_csv(out, frame, float_format="%.8g"))
    if cfg.maps is not None:
        wrote.append(cfg.maps)
    return PredictResult(frame, out, wrote, errors, ensemble.notes)


def _out_path(cfg: PredictConfig, ensemble: Ensemble) -> Path:
    if cfg.out is None:
        from ppi_cli.workspace import Workspace

        recipe = (ensemble.metas[0].get("recipe") or {}).get("name") or "model"
        return Workspace.resolve(cfg.workspace).new_run("predict", ensemble.spec.dataset, recipe) / "predictions.csv"
    return cfg.out / "predictions.csv" if cfg.out.is_dir() or not cfg.out.suffix else cfg.out


def _decide(probs: np.ndarray, ensemble: Ensemble) -> dict[str, Any]:
    """The score columns, the class at the operating threshold and the threshold, of one averaged output."""
    classes = ensemble.spec.classes
    if ensemble.threshold is not None:
        score = float(probs[0])
        return {"score": score, "class": classes[-1] if score >= ensemble.threshold else classes[0],
                "threshold": ensemble.threshold}
    k = int(np.argmax(probs))
    return {**{f"score_{j}": float(p) for j, p in enumerate(probs)},
            "class": classes[k] if k < len(classes) else str(k)}


def _probabilities(logits: torch.Tensor) -> np.ndarray:
    """(B, K) logits to (B,) positive probabilities (binary) or (B, K) softmax rows."""
    logits = logits.float()
    prob = torch.sigmoid(logits[:, 0]) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)
    return prob.cpu().numpy().astype(np.float64)


def _score_tensor(ensemble: Ensemble, x: torch.Tensor, positions: torch.Tensor | None) -> np.ndarray:
    """Mean probability of the members on one batch."""
    outputs = []
    with torch.no_grad():
        for model in ensemble.models:
            outputs.append(_probabilities(model(x) if positions is None else model(x, positions)))
    return np.mean(outputs, axis=0)


def _saliency(ensemble: Ensemble, x: torch.Tensor, target: int, method: str) -> np.ndarray:
    """The members' mean map: (S, S) for an image, (n_bscans, H, W) per B-scan (slice logit) for a volume."""
    maps = []
    for model in ensemble.models:
        if ensemble.spec.kind == "volume":
            maps.append(saliency_map(model.slice_classifier, x[0], 0, method=method)[:, 0].float().cpu().numpy())
        else:
            maps.append(saliency_map(model, x, target, method=method)[0, 0].float().cpu().numpy())
    return np.mean(maps, axis=0).astype(np.float32)


def _map_name(path: str) -> str:
    """A flat, safe file name for an input's map: folders joined by `__`."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", path.replace("\\", "/").replace("/", "__")) + ".npy"


def _finish(row: dict[str, Any], probs: np.ndarray, ensemble: Ensemble, cfg: PredictConfig, x: torch.Tensor,
            name: str) -> dict[str, Any]:
    if not np.isfinite(probs).all():
        raise ModelError(f"{name}: the model gave a NaN score", hint="check the input's values and the checkpoint")
    row |= _decide(probs, ensemble)
    if cfg.maps is not None:
        target = 0 if probs.size == 1 else int(np.argmax(probs))
        file = _map_name(name)
        save_npy(cfg.maps / file, _saliency(ensemble, x, target, cfg.method))
        row["map"] = file
    return row


def _score_scan(item: ScanInput, ensemble: Ensemble, cfg: PredictConfig, device: torch.device,
                site_configs: dict[Path, dict[str, SiteConfig]]) -> dict[str, Any]:
    spec = ensemble.spec
    loaded = load_input(item.source, "volume" if spec.kind == "volume" else "image")
    if not np.isfinite(loaded.pixels).all():
        raise DataError(f"{item.path}: pixels that are NaN or infinite", hint="score scans whose values are finite")
    positions = None
    if spec.kind == "volume":
        prepared = prepare_volume(loaded, spec, _site_config(item, cfg, site_configs))
        x = prepared.tensor[None].to(device)  # (1, S, 1, H, W)
        positions = prepared.positions[None].to(device)  # (1, S)
    else:
        x = prepare_image(loaded, spec).tensor[None].to(device)  # (1, C, S, S)
    row: dict[str, Any] = {"path": item.path} | ({"site": item.site} if item.site else {})
    return _finish(row, np.atleast_1d(_score_tensor(ensemble, x, positions)[0]), ensemble, cfg, x, item.path)


def _site_config(item: ScanInput, cfg: PredictConfig, cache: dict[Path, dict[str, SiteConfig]]) -> SiteConfig | None:
    """The manifest row's site config (from `--sites`, else beside the manifest, else bundled), else `--site`."""
    if item.site is not None and item.manifest is not None:
        folder = resolve_sites_dir(cfg.sites, item.manifest)
        if folder not in cache:
            cache[folder] = load_site_configs(folder)
        if item.site not in cache[folder]:
            raise DataError(f"{item.path}: no site config for site {item.site!r} in {folder}",
                            hint="pass --sites DIR with one YAML per site")
        return cache[folder][item.site]
    return site_config(cfg.site)


def _score_cache(item: CacheInput, ensemble: Ensemble, cfg: PredictConfig, device: torch.device) -> list[dict]:
    """Every row of a prepared cache, read by the dataset class the studies use (so scores match theirs)."""
    recipe = ensemble.recipe
    if item.kind != recipe.data.dataset:
        raise ModelError(f"{item.cache_dir}: a {item.kind} cache, but the model was trained on {recipe.data.dataset}",
                         hint="score a cache of the model's own kind, or the raw scans")
    data_cfg = dataset_config(recipe)
    manifest = dataset_manifest(item.kind, item.cache_dir, data_cfg)
    rows = np.arange(len(manifest))
    dataset = build_dataset(item.kind, item.cache_dir, rows, data_cfg, train=False, seed=recipe.seed)
    probs = np.mean([np.asarray(predict(m, dataset, device=device, batch_size=cfg.batch_size).scores)
                     for m in ensemble.models], axis=0)  # (N,) or (N, K), manifest order
    names = manifest["path"].astype(str) if "path" in manifest.columns else manifest["sample_id"].astype(str)
    out = []
    for i in progress(range(len(rows)), f"{item.cache_dir.name}"):
        row: dict[str, Any] = {"path": str(names.iloc[i])}
        if "site" in manifest.columns:
            row["site"] = str(manifest["site"].iloc[i])
        x = torch.zeros(0)
        if cfg.maps is not None:  # one sample at a time: (1, C, S, S) or (1, S, 1, H, W)
            sample = dataset[i]
            x, _ = model_inputs({"image": sample["image"][None]}, device)
        out.append(_finish(row, np.atleast_1d(probs[i]), ensemble, cfg, x, str(names.iloc[i])))
    return out
