# SPDX-License-Identifier: MIT
"""`ppi evaluate`: a model's predictions on an external labelled set against its labels.

The predictions are `ppi predict`'s `predictions.csv`; the labels a CSV with `path` and `label`
columns written the same way (a GA manifest is one; so is a prepared cache's `manifest.csv`). Rows
pair by `path`. The operating threshold is the one `predict` used, the checkpoint's own, fixed on its
validation split; these labels never choose it. The report is `reports.external`'s.

Example:
    >>> run_evaluate(EvaluateConfig(Path("predictions.csv"), Path("site-E/manifest.csv"))).metrics.auc
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli.errors import DataError
from ppi_cli.files import check_outputs, shareable_path
from ppi_cli.reports.external import ExternalMetrics, external_metrics, write_external_report

__all__ = ["EvaluateConfig", "EvaluateResult", "run_evaluate", "read_labels", "paired"]


@dataclass(frozen=True)
class EvaluateConfig:
    """What `ppi evaluate` was asked to do (one field per option)."""

    predictions: Path
    labels: Path | None = None  # None: the predictions' own `label` column
    out: Path | None = None  # report folder; None: `evaluation/` beside the predictions
    bootstrap: int = 2000  # resamples of the AUC's bootstrap interval (0 skips it)
    seed: int = 0  # seeds the bootstrap


@dataclass
class EvaluateResult:
    """The metrics and the files written."""

    metrics: ExternalMetrics
    out: Path
    wrote: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The one-row metrics and the report folder, for `--json`."""
        return self.metrics.to_dict() | {"report": str(self.out)}

    def __rich__(self) -> Any:
        return self.metrics.__rich__()


def _read_csv(path: Path, what: str, hint: str) -> Any:
    import pandas as pd

    if not path.is_file():
        raise DataError(f"{path}: no such {what}", hint=hint)
    try:
        frame = pd.read_csv(path, dtype={"path": str}, keep_default_na=False, skipinitialspace=True)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})", hint=hint) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _key(path: str) -> str:
    return str(path).strip().replace("\\", "/").removeprefix("./")


def read_labels(path: Path) -> dict[str, int]:
    """`path -> label` of a labels CSV (a GA manifest, a cache manifest, or any CSV with those two columns).

    Raises:
        DataError: Missing columns, a label other than 0 or 1, or one path with two labels.
    """
    frame = _read_csv(path, "labels file", "pass --labels with a CSV of `path,label` (e.g. the manifest)")
    # A LIDC cache's manifest has no `path`: `ppi predict` names its rows by `sample_id`, and so does this.
    column = "sample_id" if "path" not in frame.columns and "sample_id" in frame.columns else "path"
    missing = [c for c in (column, "label") if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: no column(s) {', '.join(missing)}",
                        hint="the labels file names each scan in `path` (as predictions.csv does) with its `label`")
    labels: dict[str, int] = {}
    for line, (name, value) in enumerate(zip(frame[column], frame["label"], strict=True), start=2):
        name = (str(name).strip() if column == "sample_id"  # as `ppi predict` names a cache row or a manifest row
                else shareable_path(path.parent / str(name).strip(), path.parent))
        text = str(value).strip()
        if text not in ("0", "1", "0.0", "1.0"):
            raise DataError(f"{path}:{line}: column 'label' is not 0 or 1",
                            hint="ppi evaluate scores binary tasks; write positives as 1, negatives as 0")
        key = _key(name)
        if labels.get(key, int(float(text))) != int(float(text)):
            raise DataError(f"{path}:{line}: {key} has two different labels", hint="give each scan one label")
        labels[key] = int(float(text))
    return labels


def paired(predictions: Any, labels: dict[str, int], source: Path) -> np.ndarray:
    """The label of every prediction row, by path.

    Raises:
        DataError: A prediction whose path has no label (the first one is named).
    """
    keys = [_key(p) for p in predictions["path"]]
    unlabelled = [k for k in keys if k not in labels]
    if unlabelled:
        raise DataError(f"{source}: no label for {len(unlabelled)} of {len(keys)} predictions (first: "
                        f"{unlabelled[0]})", hint="the labels file must name scans as predictions.csv does, "
                        "relative to the same manifest or folder")
    return np.array([labels[k] for k in keys], dtype=np.int64)


def run_evaluate(cfg: EvaluateConfig) -> EvaluateResult:
    """Pair predictions with labels, compute the metrics and write the report.

    Raises:
        DataError: Unreadable files, unpaired rows, a multi-class file, or one class only.
        ConfigError: The report folder would overwrite an input.
    """
    hint = "pass the predictions.csv written by `ppi predict`"
    predictions = _read_csv(cfg.predictions, "predictions file", hint)
    missing = [c for c in ("path", "score", "threshold") if c not in predictions.columns]
    if missing:
        what = "a multi-class file; ppi evaluate scores binary tasks" if "score_0" in predictions.columns else \
            f"no column(s) {', '.join(missing)}"
        raise DataError(f"{cfg.predictions}: {what}", hint=hint)
    if predictions.empty:
        raise DataError(f"{cfg.predictions}: no predictions", hint=hint)
    if cfg.labels is not None:
        y = paired(predictions, read_labels(cfg.labels), cfg.labels)
    elif "label" in predictions.columns:
        y = paired(predictions, dict(zip(predictions["path"].map(_key), predictions["label"].astype(int),
                                         strict=True)), cfg.predictions)
    else:
        raise DataError(f"{cfg.predictions}: no labels given", hint="pass --labels labels.csv (or the manifest)")
    if np.unique(y).size < 2:
        raise DataError(f"{cfg.labels or cfg.predictions}: the paired labels hold one class only, so no AUC, "
                        "sensitivity and specificity together", hint="evaluate on a set with positives and negatives")
    thresholds = np.unique(predictions["threshold"].astype(float))
    if thresholds.size != 1:
        raise DataError(f"{cfg.predictions}: rows of {thresholds.size} different thresholds (several predict runs "
                        "joined?)", hint="evaluate each predict run on its own")
    scores = predictions["score"].astype(float).to_numpy()
    out = cfg.out or cfg.predictions.parent / "evaluation"
    check_outputs({"--out": out}, {"the predictions": cfg.predictions, "the labels (--labels)": cfg.labels})
    metrics = external_metrics(y, scores, float(thresholds[0]), n_boot=cfg.bootstrap, seed=cfg.seed)
    models = str(predictions["models"].iloc[0]) if "models" in predictions.columns else cfg.predictions.name
    title = f"{len(models.split(';'))} model(s) on {cfg.predictions.parent.name or cfg.predictions.name}"
    wrote = write_external_report(metrics, y, scores, out, title=title)
    return EvaluateResult(metrics, out, wrote)
