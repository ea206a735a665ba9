# SPDX-License-Identifier: MIT
"""The report of a model on an external labelled set (`ppi evaluate`): discrimination, the operating
point fixed on validation, and calibration, written as a study's reports are (CSV + markdown + PNG).

- AUC with two 95 % intervals: DeLong's normal-theory one (`delong.delong_interval`) and the
  stratified percentile bootstrap of the studies (`metrics.bootstrap_auc_interval`).
- Sensitivity, specificity and accuracy at the threshold the checkpoint stores (chosen on its
  validation split, never on these labels), with the confusion counts.
- Calibration: a reliability table of equal-width probability bins (count, mean predicted, observed
  rate), the expected calibration error (count-weighted |observed − predicted|) and the Brier score,
  and the reliability diagram.

Files: `report.md` (the page to read), `evaluation.csv/.md` (one row), `calibration.csv/.md`,
`evaluation.json`, `roc.png`, `reliability.png`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli.files import write_json, write_text
from ppi_cli.reports.delong import delong_interval
from ppi_cli.reports.metrics import bootstrap_auc_interval, roc_auc
from ppi_cli.reports.plots import roc_figure, save_figure
from ppi_cli.reports.tables import format_interval, markdown_table, write_table

__all__ = ["ExternalMetrics", "external_metrics", "reliability_table", "write_external_report", "reliability_figure",
           "CALIBRATION_BINS"]

CALIBRATION_BINS = 10  # equal-width probability bins of the reliability table


@dataclass
class ExternalMetrics:
    """A model's numbers on one external labelled set (binary)."""

    n: int
    n_positive: int
    auc: float
    auc_delong_low: float
    auc_delong_high: float
    auc_bootstrap_low: float
    auc_bootstrap_high: float
    threshold: float
    sensitivity: float
    specificity: float
    accuracy: float
    tp: int
    fp: int
    tn: int
    fn: int
    brier: float
    ece: float
    calibration: Any = field(default=None, repr=False)  # the reliability table (DataFrame)
    written: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The one-row metrics (no table, no paths), NaN as None."""
        data = {k: v for k, v in asdict(self).items() if k not in ("calibration", "written")}
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()}

    @property
    def headline(self) -> str:
        """`AUC 0.912 (DeLong 95% [0.87, 0.95]; bootstrap [0.87, 0.95])`."""
        return (f"AUC {self.auc:.3f} (95% DeLong {format_interval(self.auc_delong_low, self.auc_delong_high)}, "
                f"bootstrap {format_interval(self.auc_bootstrap_low, self.auc_bootstrap_high)})")

    def __rich__(self) -> Any:
        from rich.table import Table

        table = Table(title=self.headline, show_header=False)
        table.add_row("samples", f"{self.n} ({self.n_positive} positive)")
        table.add_row("threshold", f"{self.threshold:.3f} (fixed on validation)")
        table.add_row("sensitivity", f"{self.sensitivity:.3f} ({self.tp}/{self.tp + self.fn})")
        table.add_row("specificity", f"{self.specificity:.3f} ({self.tn}/{self.tn + self.fp})")
        table.add_row("accuracy", f"{self.accuracy:.3f}")
        table.add_row("calibration", f"ECE {self.ece:.3f}, Brier {self.brier:.3f}")
        return table


def reliability_table(labels: np.ndarray, scores: np.ndarray, bins: int = CALIBRATION_BINS) -> Any:
    """Equal-width bins of the predicted probability: count, mean predicted, observed positive rate.

    The last bin is closed ([0.9, 1.0]); empty bins are kept with NaN means, so every table has `bins` rows.
    """
    import pandas as pd

    y = np.asarray(labels, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(s, edges[1:-1], right=False), 0, bins - 1)  # (N,) bin of each score
    rows = []
    for b in range(bins):
        inside = which == b
        count = int(inside.sum())
        rows.append({"bin_low": edges[b], "bin_high": edges[b + 1], "n": count,
                     "mean_predicted": float(s[inside].mean()) if count else math.nan,
                     "observed_rate": float(y[inside].mean()) if count else math.nan})
    return pd.DataFrame(rows)


def external_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float, *, n_boot: int = 2000,
                     seed: int = 0) -> ExternalMetrics:
    """Every number of the report for binary labels and positive-class probabilities.

    Example:
        >>> external_metrics(np.array([0, 1, 1, 0]), np.array([0.2, 0.7, 0.4, 0.1]), 0.5).sensitivity
        0.5
    """
    y = np.asarray(labels).astype(np.int64)
    s = np.asarray(scores, dtype=np.float64)
    called = s >= threshold
    tp, fp = int(np.sum(called & (y == 1))), int(np.sum(called & (y == 0)))
    fn, tn = int(np.sum(~called & (y == 1))), int(np.sum(~called & (y == 0)))
    n_pos, n_neg = tp + fn, tn + fp
    _, _, d_low, d_high = delong_interval(y, s) if min(n_pos, n_neg) >= 2 else (0, 0, math.nan, math.nan)
    b_low, b_high = bootstrap_auc_interval(y, s, n_boot=n_boot, seed=seed)
    table = reliability_table(y, s)
    filled = table[table["n"] > 0]
    ece = float(np.sum(filled["n"] * np.abs(filled["observed_rate"] - filled["mean_predicted"])) / max(y.size, 1))
    return ExternalMetrics(
        n=int(y.size), n_positive=n_pos, auc=roc_auc(y, s), auc_delong_low=d_low, auc_delong_high=d_high,
        auc_bootstrap_low=b_low, auc_bootstrap_high=b_high, threshold=float(threshold),
        sensitivity=tp / n_pos if n_pos else math.nan, specificity=tn / n_neg if n_neg else math.nan,
        accuracy=(tp + tn) / y.size if y.size else math.nan, tp=tp, fp=fp, tn=tn, fn=fn,
        brier=float(np.mean((s - y) ** 2)) if y.size else math.nan, ece=ece, calibration=table)


def reliability_figure(table: Any, path: Path, title: str) -> Path:
    """The reliability diagram: observed positive rate against mean predicted probability per bin."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (ax, hist) = plt.subplots(2, 1, figsize=(4.2, 5.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    filled = table[table["n"] > 0]
    ax.plot(filled["mean_predicted"], filled["observed_rate"], marker="o", color="black", label="model")
    ax.set_ylabel("observed positive rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    hist.bar((table["bin_low"] + table["bin_high"]) / 2, table["n"], width=1.0 / len(table) * 0.9, color="grey")
    hist.set_xlabel("predicted probability")
    hist.set_ylabel("samples")
    return save_figure(fig, path)


def write_external_report(metrics: ExternalMetrics, labels: np.ndarray, scores: np.ndarray, out: Path, *,
                          title: str) -> list[Path]:
    """Write the report files (module docstring) into `out`; return the paths."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    written = list(write_table(pd.DataFrame([metrics.to_dict()]), out / "evaluation", title=f"Evaluation: {title}"))
    written += write_table(metrics.calibration, out / "calibration", title="Reliability table")
    written.append(roc_figure({title: [(np.asarray(labels), np.asarray(scores))]}, out / "roc.png", title="ROC"))
    written.append(reliability_figure(metrics.calibration, out / "reliability.png", title=f"Calibration: {title}"))
    lines = [f"# External evaluation: {title}\n", f"**{metrics.headline}** on {metrics.n} samples "
             f"({metrics.n_positive} positive).\n",
             f"At the operating threshold {metrics.threshold:.3f}, fixed on the models' validation splits: "
             f"sensitivity {metrics.sensitivity:.3f} ({metrics.tp}/{metrics.tp + metrics.fn}), specificity "
             f"{metrics.specificity:.3f} ({metrics.tn}/{metrics.tn + metrics.fp}), accuracy {metrics.accuracy:.3f}.\n",
             f"Calibration: expected calibration error {metrics.ece:.3f} over {len(metrics.calibration)} equal-width "
             f"bins, Brier score {metrics.brier:.3f}.\n", "![ROC](roc.png) ![Reliability diagram](reliability.png)\n",
             "## Reliability table\n", markdown_table(metrics.calibration),
             "Files: [evaluation.csv](evaluation.csv), [calibration.csv](calibration.csv)."]
    written.append(write_text(out / "report.md", "\n".join(lines) + "\n"))
    written.append(write_json(out / "evaluation.json", metrics.to_dict()))
    return written
