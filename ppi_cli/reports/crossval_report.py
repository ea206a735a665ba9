# SPDX-License-Identifier: MIT
"""The cross-validation report: per-fold table, `summary.md` with `AUC 0.912 ± 0.034`, and the figures.

Binary tasks get `roc.png` (each fold and pooled), `roc_mean.png` (the mean curve with its 95 % band),
`calibration.png` (pooled test predictions) and, when each fold's `best.pt` stores its operating
threshold (chosen on its validation split), `confusion.png` at those thresholds;
each figure as a 300-dpi PNG and a PDF.

Built from the collected predictions alone (`predictions.csv`, one part per fold), so it can be
re-made anywhere from files. Binary tasks report AUC and, at each fold's Youden point, accuracy,
sensitivity and specificity; multi-class tasks report top-1 accuracy and macro one-vs-rest AUC.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ppi_cli.files import write_json, write_text
from ppi_cli.reports.metrics import (
    binary_metrics,
    bootstrap_mean_auc_interval,
    cell_flag,
    mean_std,
    multiclass_metrics,
    roc_auc,
)
from ppi_cli.reports.plots import calibration_figure, confusion_counts, confusion_figure, mean_roc_figure, roc_figure
from ppi_cli.reports.predictions import score_columns
from ppi_cli.reports.tables import format_interval, format_mean_std, format_value, markdown_table, write_table

__all__ = ["CrossvalSummary", "fold_table", "write_crossval_report"]


@dataclass
class CrossvalSummary:
    """The headline numbers of a cross-validation and the files that hold them."""

    metric: str  # "auc" (binary) or "accuracy" (multi-class)
    mean: float
    std: float
    ci_low: float
    ci_high: float
    folds: Any  # pandas DataFrame, one row per fold
    written: list[Path] = field(default_factory=list)

    @property
    def headline(self) -> str:
        """`AUC 0.912 ± 0.034 (95% bootstrap interval [0.871, 0.944])`."""
        label = "AUC" if self.metric == "auc" else "accuracy"
        text = f"{label} {format_mean_std(self.folds[self.metric])}"
        if not math.isnan(self.ci_low):
            text += f" (95% bootstrap interval {format_interval(self.ci_low, self.ci_high)})"
        return text

    def to_dict(self) -> dict[str, Any]:
        """Plain data for `summary.json` and `--json`."""
        clean = self.folds.astype(object).where(self.folds.notna(), None)
        return {"metric": self.metric, "mean": _finite(self.mean), "std": _finite(self.std),
                "ci_low": _finite(self.ci_low), "ci_high": _finite(self.ci_high), "headline": self.headline,
                "folds": clean.to_dict(orient="records")}

    def __rich__(self) -> Any:
        from rich.table import Table

        table = Table(*self.folds.columns, title=self.headline, box=None, pad_edge=False)
        for row in self.folds.itertuples(index=False):
            table.add_row(*(format_value(v) for v in row))
        return table


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _fold_number(part: str) -> int:
    return int(part.rsplit("-", 1)[-1]) if part.rsplit("-", 1)[-1].isdigit() else -1


def fold_table(predictions: Any, rejected: Collection[str] = ()) -> Any:
    """One row of metrics per fold (part) of collected predictions, in fold order; the folds in `rejected` kept
    the recipe trained without PPI (`ppi.fallback_drop` rejected PPI) and say so in their flag."""
    import pandas as pd

    columns = score_columns(predictions)
    rows = []
    for part, frame in sorted(predictions.groupby("part"), key=lambda item: (_fold_number(item[0]), item[0])):
        y = frame["label"].to_numpy()
        if columns == ["score"]:
            metrics = binary_metrics(y, frame["score"].to_numpy())
            flag = cell_flag(metrics.auc, metrics.n, metrics.n_positive, rejected=part in rejected)
            rows.append({"fold": part} | metrics.to_dict() | {"flag": flag})
        else:
            rows.append({"fold": part} | multiclass_metrics(y, frame[columns].to_numpy()))
    return pd.DataFrame(rows)


def _confusion(predictions: Any, out: Path, thresholds: Mapping[str, tuple[float, str]],
               written: list[Path]) -> list[str]:
    """`confusion.png`: every fold's test predictions called at that fold's own stored threshold, summed."""
    parts = sorted(predictions.groupby("part"), key=lambda item: _fold_number(item[0]))
    if not parts or any(part not in thresholds for part, _ in parts):
        return ["No confusion matrix: not every fold's checkpoint stores an operating threshold.\n"]
    counts = confusion_counts([(g["label"].to_numpy(), g["score"].to_numpy(), thresholds[part][0])
                               for part, g in parts])
    (tn, fp), (fn, tp) = counts.tolist()
    values = ", ".join(f"{thresholds[part][0]:.3f}" for part, _ in parts)
    sources = [thresholds[part][1] for part, _ in parts]
    chosen = "; ".join(f"{source}: {sources.count(source)} of {len(sources)} folds"
                       for source in dict.fromkeys(sources))
    written.append(confusion_figure(counts, out / "confusion.png", title="Confusion matrix, all folds",
                                    note=f"each fold at its own threshold ({values}; {chosen})"))
    sensitivity = tp / (tp + fn) if tp + fn else math.nan
    specificity = tn / (tn + fp) if tn + fp else math.nan
    return [f"At each fold's operating threshold stored in its checkpoint ({values}; {chosen}), summed over the "
            f"folds: {tp} true positives, {fn} false negatives, {tn} true negatives, {fp} false positives "
            f"(sensitivity {format_value(sensitivity)}, specificity {format_value(specificity)}).\n",
            "![Confusion matrix at each fold's operating threshold](confusion.png)\n"]


def write_crossval_report(predictions: Any, out: Path, *, title: str, n_boot: int = 2000,
                          seed: int = 0, thresholds: Mapping[str, tuple[float, str]] | None = None,
                          rejected: Collection[str] = ()) -> CrossvalSummary:
    """Write `folds.csv/.md`, `summary.md`, `summary.json` and, binary, the figures into `out`.

    Args:
        predictions: Collected predictions, one part per fold (see `reports.predictions`).
        out: The cross-validation run folder.
        title: What was cross-validated (recipe and data), for the headings.
        n_boot: Bootstrap resamples for the interval of the mean (0 skips it).
        seed: Bootstrap seed.
        thresholds: `{part: (operating threshold, its source)}` of each fold, as its checkpoint stores them
            (normally Youden's J on its validation split); with one for every fold, `confusion.png` sums
            the folds' confusion matrices, each at its own threshold.
        rejected: The folds (parts) whose PPI model `ppi.fallback_drop` rejected (trained without PPI): flagged.

    Example:
        >>> write_crossval_report(run_predictions(run), run, title="lidc-ppi-wbp on cache/lidc").headline
        'AUC 0.912 ± 0.034 (95% bootstrap interval [0.871, 0.944])'
    """
    folds = fold_table(predictions, rejected)
    binary = score_columns(predictions) == ["score"]
    metric = "auc" if binary else "accuracy"
    mean, std = mean_std(folds[metric])
    per_fold = [(g["label"].to_numpy(), g["score"].to_numpy()) for _, g in
                sorted(predictions.groupby("part"), key=lambda item: _fold_number(item[0]))] if binary else []
    low, high = bootstrap_mean_auc_interval(per_fold, n_boot=n_boot, seed=seed) if binary else (math.nan, math.nan)
    summary = CrossvalSummary(metric, mean, std, low, high, folds)
    written = list(write_table(folds, out / "folds", title=f"Folds: {title}"))
    lines = [f"# Cross-validation: {title}\n", f"**{summary.headline}**, mean ± sample std over {len(folds)} folds.\n"]
    if binary:
        pooled = roc_auc(predictions["label"].to_numpy(), predictions["score"].to_numpy())
        lines.append(f"Pooled AUC over all {len(predictions)} test predictions: {pooled:.3f}. At each fold's Youden "
                     f"point: accuracy {format_mean_std(folds['accuracy'])}, sensitivity "
                     f"{format_mean_std(folds['sensitivity'])}, specificity {format_mean_std(folds['specificity'])}."
                     "\n")
        flagged = folds[folds["flag"] != ""]
        if len(flagged):
            lines.append("**Flagged folds** (not to be read at face value): " + "; ".join(
                f"{row.fold}: {row.flag}" for row in flagged.itertuples()) + ".\n")
        curves = {title: per_fold}
        written.append(roc_figure(curves, out / "roc.png", title="ROC per fold"))
        written.append(mean_roc_figure(curves, out / "roc_mean.png", title="Mean ROC across folds"))
        lines += ["## Figures\n", "Each as a 300-dpi PNG and a PDF beside it.\n",
                  "![ROC curves per fold](roc.png) ![Mean ROC across folds with its 95% band](roc_mean.png)\n"]
        labels = predictions["label"].to_numpy()
        if 0 < labels.sum() < len(labels):
            written.append(calibration_figure(labels, predictions["score"].to_numpy(), out / "calibration.png",
                                              title="Calibration (pooled test predictions)"))
            lines.append("![Calibration of the pooled test predictions](calibration.png)\n")
        lines += _confusion(predictions, out, thresholds or {}, written)
    lines += ["## Per fold\n", markdown_table(folds),
              "Files: [folds.csv](folds.csv), [predictions.csv](predictions.csv)."]
    written.append(write_text(out / "summary.md", "\n".join(lines) + "\n"))
    written.append(write_json(out / "summary.json", summary.to_dict()))
    summary.written = written
    return summary

