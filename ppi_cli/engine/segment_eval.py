# SPDX-License-Identifier: MIT
"""`ppi segment-eval`: how well saliency maps localise the expert masks (weakly-supervised segmentation).

For every cached sample with an expert mask (LIDC union of reader masks, GA lesion masks per
B-scan) and every saliency method: the energy-based pointing game at the paper's top-k points
(Table 7 layout), the pointing game, Dice and IoU of the thresholded map (best single threshold and
a fixed top percentile) and a deletion curve (paper Fig. 5). With `--compare` a second model is
scored on the same samples, side by side ("trained with PPI vs without").

Each (model, method) pass is written to `parts/` when done, so a rerun with the same `--out` and
settings resumes instead of starting over.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli import console
from ppi_cli.device import select_device
from ppi_cli.engine.explain_inputs import InputSpec
from ppi_cli.engine.masked_samples import MaskedSamples
from ppi_cli.errors import CacheError, ConfigError
from ppi_cli.files import shareable_path, write_json
from ppi_cli.models import is_volume_model, load_model
from ppi_cli.reports.deletion import FRACTIONS, deletion_scores
from ppi_cli.reports.localisation import POINTS, THRESHOLDS, TOP_PERCENT, energy_pointing_game, sample_scores
from ppi_cli.reports.plots import gallery_figure
from ppi_cli.reports.segment_eval import format_cell, localisation_summary, write_localisation_report
from ppi_cli.saliency import saliency_map, saliency_method
from ppi_cli.workspace import Workspace

__all__ = ["SegmentEvalConfig", "SegmentEvalResult", "segment_eval", "lesion_energy", "METHODS"]

METHODS = ("wbp", "gradient", "gradcam")


@dataclass(frozen=True)
class SegmentEvalConfig:
    """What `ppi segment-eval` was asked to do (one field per option)."""

    model: Path
    compare: Path | None = None  # a second checkpoint scored on the same samples
    data: Path | None = None  # the cache; None: the workspace cache of the model's dataset
    out: Path | None = None  # None: a new run folder in the workspace
    methods: tuple[str, ...] = METHODS
    points: tuple[int | None, ...] = POINTS  # top-k of the energy pointing game (None = all pixels)
    top_percent: float = TOP_PERCENT  # fixed-percentile Dice/IoU
    fractions: tuple[float, ...] = FRACTIONS  # deletion curve: shares of pixels removed
    limit: int | None = None  # at most this many masked samples (first in manifest order)
    batch_size: int = 16
    device: str = "auto"
    workspace: Path | None = None
    gallery: int = 4  # cases in gallery.png (image, expert contour, each model's saliency); 0: none

    def to_dict(self) -> dict[str, Any]:
        """Plain data, written as `config.json` beside the results (and compared on resume).

        Inputs are named by their base names: the run folder is meant for sharing, and full paths may
        carry patient names (docs/reliability.md#privacy).
        """
        data = asdict(self)
        for key in ("model", "compare", "data"):
            data[key] = shareable_path(data[key]) if data[key] is not None else None
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()
                if k not in ("device", "workspace", "out", "gallery")}  # gallery: a picture, not a result


@dataclass
class SegmentEvalResult:
    """The summary table (metric rows, one column per model and method) and the files written."""

    out: Path
    summary: Any  # pandas DataFrame: index = metric label, columns = "method" or "method (model)"
    n_samples: int
    cache: Path
    wrote: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for `--json`."""
        table = {col: {k: _plain(v) for k, v in self.summary[col].items()} for col in self.summary.columns}
        return {"out": str(self.out), "samples": self.n_samples, "summary": table}

    def __rich__(self) -> Any:
        from rich.table import Table

        table = Table("metric", *self.summary.columns, title=f"segment-eval ({self.n_samples} masked samples)",
                      box=None, pad_edge=False)
        for label, row in self.summary.iterrows():
            table.add_row(str(label), *(format_cell(v) for v in row))
        return table


def segment_eval(cfg: SegmentEvalConfig) -> SegmentEvalResult:
    """Score the saliency maps of one model (or two, side by side) against the expert masks of a cache.

    Raises:
        ConfigError: Bad settings, or two models that were not trained on the same kind of input.
        CacheError: No cache, no masks, or an output folder holding another configuration's results.
        ModelError: A checkpoint that cannot be used.

    Example:
        >>> segment_eval(SegmentEvalConfig(Path("best.pt"), data=Path("cache/ga"))).summary
    """
    import pandas as pd

    _check(cfg)
    for method in cfg.methods:
        saliency_method(method)  # an unknown name fails now, not after the first model's passes
    device = select_device(cfg.device)
    loaded = []
    for path in (cfg.model, cfg.compare):
        if path is not None:
            model, meta = load_model(path, device)
            loaded.append((path, model, meta, InputSpec.from_meta(meta, path)))
    spec = loaded[0][3]
    if len(loaded) == 2 and _geometry(loaded[1][3]) != _geometry(spec):
        raise ConfigError(f"--compare {cfg.compare}: trained on {_geometry(loaded[1][3])}, but --model on "
                          f"{_geometry(spec)}; the two must see the same samples", hint="compare models of one dataset")
    workspace = Workspace.resolve(cfg.workspace)
    recipe_data = (loaded[0][2].get("recipe") or {}).get("data")
    samples = MaskedSamples(cfg.data or workspace.cache(spec.dataset), spec, cfg.limit, recipe_data)
    recipe = (loaded[0][2].get("recipe") or {}).get("name") or "model"
    out = cfg.out or workspace.new_run("segment-eval", spec.dataset, recipe)
    _claim(out, cfg)
    labels = _labels([(p, m) for p, _, m, _ in loaded])

    parts: dict[tuple[str, str], Any] = {}
    for (_, model, _, _), label in zip(loaded, labels, strict=True):
        for method in cfg.methods:
            part = out / "parts" / f"{_slug(label)}-{method}.csv"
            if part.is_file():
                console.log(f"resume: {part.name} is done")
                parts[label, method] = pd.read_csv(part)
                continue
            frame = _score_pass(model, method, samples, cfg, device, f"{label}: {method}")
            from ppi_cli.files import write_csv

            write_csv(part, frame)
            parts[label, method] = frame
    summary, deletion = localisation_summary(parts, methods=cfg.methods, points=cfg.points,
                                             top_percent=cfg.top_percent, fractions=cfg.fractions,
                                             compare=len(loaded) == 2)
    wrote = write_localisation_report(out, summary, deletion, parts, methods=cfg.methods, fractions=cfg.fractions,
                                      top_percent=cfg.top_percent, model=cfg.model, compare=cfg.compare,
                                      n_samples=len(samples), cache=samples.cache, kind=samples.kind)
    write_json(out / "config.json", cfg.to_dict())
    wrote = list(wrote)
    if cfg.gallery:
        wrote.append(_gallery([(m, label) for (_, m, _, _), label in zip(loaded, labels, strict=True)], samples,
                              cfg, device, out / "gallery.png"))
    return SegmentEvalResult(out, summary, len(samples), samples.cache, [out / "config.json", *wrote])


def _gallery(models: list[tuple[Any, str]], samples: MaskedSamples, cfg: SegmentEvalConfig, device: Any,
             path: Path) -> Path:
    """`gallery.png` (and `.pdf`): the first `cfg.gallery` masked samples, each as the model's input image, the
    expert contour, and each model's saliency map (the first method) with the contour over it."""
    batch = next(samples.batches(cfg.gallery))
    x = batch.images.to(device)
    method = cfg.methods[0]
    maps = {}
    for model, label in models:
        net = _explained_net(model)
        maps[label] = saliency_map(net, x, _explained_class(net, x), method=method)[:, 0].float().detach().cpu().numpy()
    images = batch.images.float().mean(dim=1).cpu().numpy()
    cases = [{"name": sample, "image": images[i], "mask": batch.masks[i],
              "maps": {f"{label} ({method})": maps[label][i] for _, label in models}}
             for i, sample in enumerate(batch.ids)]
    return gallery_figure(cases, path, title="Cases: image, expert contour, saliency")


def _score_pass(model, method: str, samples, cfg: SegmentEvalConfig, device, title: str) -> Any:
    """One model and one method over every masked sample: one row of scores per sample."""
    import pandas as pd
    import torch

    net = _explained_net(model)

    def score(batch: torch.Tensor) -> torch.Tensor:  # (F, C, H, W) -> (F,) probability of the explained class
        logits = net(batch).float()
        return torch.sigmoid(logits[:, 0]) if logits.shape[1] == 1 else torch.softmax(logits, 1)[:, -1]

    rows = []
    for batch, x, maps in _maps(net, method, samples, cfg.batch_size, device, title):
        curves = deletion_scores(score, x, maps, cfg.fractions)  # (B, F)
        for i, sample in enumerate(batch.ids):
            row, dice_curve, iou_curve = sample_scores(maps[i], batch.masks[i], points=cfg.points,
                                                       top_percent=cfg.top_percent)
            curve = curves[i]
            rows.append({"sample": sample, **row,
                         **{f"dice_t{t:g}": v for t, v in zip(THRESHOLDS, dice_curve, strict=True)},
                         **{f"iou_t{t:g}": v for t, v in zip(THRESHOLDS, iou_curve, strict=True)},
                         **{f"score_f{f:g}": v for f, v in zip(cfg.fractions, curve, strict=True)}})
    return pd.DataFrame(rows)


def _maps(net: Any, method: str, samples: MaskedSamples, batch_size: int, device: Any,
          title: str | None) -> Iterator[tuple[Any, Any, np.ndarray]]:
    """Each batch of the masked samples with its images on `device` and the maps `(B, H, W)` of the explained
    class (`_explained_class`); `title`: a progress bar's."""
    target = None
    batches = samples.batches(batch_size)
    if title is not None:
        batches = console.progress(batches, title, total=math.ceil(len(samples) / batch_size))
    for batch in batches:
        x = batch.images.to(device)
        if target is None:
            target = _explained_class(net, x)
        yield batch, x, saliency_map(net, x, target, method=method)[:, 0].float().cpu().numpy()


def _explained_net(model: Any) -> Any:
    """The network whose maps are scored: a volume model's slice classifier (GA: per B-scan, the slice logit),
    else the model itself."""
    return model.slice_classifier if is_volume_model(model) else model


def _explained_class(net: Any, x: Any) -> int:
    """The class a map explains: a binary head's one logit, else the last class (the lesion / positive class)."""
    import torch

    with torch.no_grad():
        return int(net(x[:1]).shape[1] - 1)


def lesion_energy(checkpoint: Path, data: Path, method: str = "wbp", *, device: str = "cpu",
                  batch_size: int = 16) -> tuple[float, int]:
    """The energy inside the expert masks: over `data`'s masked samples, the mean share of the map's positive part
    that lies inside the mask (segment-eval's "energy pointing game, all points"), and the number of samples.

    Raises:
        ConfigError, CacheError: As `segment_eval`: data without masks, or of another geometry.

    Example:
        >>> lesion_energy(Path("runs/sweep/baseline/seed-0/baseline/train-D/best.pt"), Path("cache/ga"))
        (0.257, 583)
    """
    saliency_method(method)
    torch_device = select_device(device)
    model, meta = load_model(checkpoint, torch_device)
    samples = MaskedSamples(data, InputSpec.from_meta(meta, checkpoint), None, (meta.get("recipe") or {}).get("data"))
    net = _explained_net(model)
    shares = np.array([energy_pointing_game(maps[i], batch.masks[i], (None,))["all"]
                       for batch, _, maps in _maps(net, method, samples, batch_size, torch_device, None)
                       for i in range(len(maps))])  # NaN: a map without positive energy, left out as segment-eval does
    return (float(np.nanmean(shares)) if np.isfinite(shares).any() else math.nan), int(shares.size)


def _check(cfg: SegmentEvalConfig) -> None:
    if not cfg.methods:
        raise ConfigError("--methods is empty", hint="--methods wbp,gradient,gradcam")
    if len(set(cfg.methods)) != len(cfg.methods):
        raise ConfigError(f"--methods {','.join(cfg.methods)}: a method is listed twice")
    if not 0 < cfg.top_percent <= 100:
        raise ConfigError(f"--top-percent {cfg.top_percent:g}: must be in (0, 100]", hint="--top-percent 5")
    if cfg.limit is not None and cfg.limit < 1:
        raise ConfigError(f"--limit {cfg.limit}: must be at least 1")
    if not cfg.fractions or cfg.fractions[0] != 0:
        raise ConfigError("deletion fractions must start at 0 (the unaltered image the drops are measured from)")
    if cfg.batch_size < 1:
        raise ConfigError(f"--batch-size {cfg.batch_size}: must be at least 1")


def _claim(out: Path, cfg: SegmentEvalConfig) -> None:
    """Use `out`, resuming only when it holds this very configuration's partial results."""

    marker = out / "parts" / "config.json"
    if marker.is_file():
        if json.loads(marker.read_text(encoding="utf-8")) != cfg.to_dict():
            raise CacheError(f"{out}: holds segment-eval results of other settings",
                             hint="pass a new --out, or delete that folder")
        return
    write_json(marker, cfg.to_dict())


def _labels(models: list[tuple[Path, dict[str, Any]]]) -> list[str]:
    """Short, distinct model labels: recipe names, else checkpoint file stems, else A/B."""
    for choice in ([(m.get("recipe") or {}).get("name") or "" for _, m in models], [p.stem for p, _ in models]):
        if all(choice) and len(set(choice)) == len(choice):
            return choice
    return [chr(ord("A") + i) for i in range(len(models))]


def _geometry(spec) -> tuple:
    return (spec.dataset, spec.kind, spec.crop, spec.window, spec.n_bscans, spec.bscan_size)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


def _plain(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value
