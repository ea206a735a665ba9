# SPDX-License-Identifier: MIT
"""The report of `ppi segment-eval`: the localisation table (CSV and markdown), per-sample scores, deletion curves.

`engine/segment_eval.py` scores the saliency maps; this module summarises the scores and writes them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ppi_cli.files import shareable_path, write_csv, write_text
from ppi_cli.reports.deletion import plot_deletion_curves
from ppi_cli.reports.localisation import THRESHOLDS, pick_threshold

__all__ = ["localisation_summary", "write_localisation_report", "format_cell"]


def localisation_summary(parts: dict[tuple[str, str], Any], *, methods: Sequence[str], points: Sequence[int | None],
                         top_percent: float, fractions: Sequence[float], compare: bool) -> tuple[Any, Any]:
    """The metric table (one column per model/method, method-major) and the long deletion table.

    Args:
        parts: Per-sample scores of each (model label, method) pass, the models in the order of the columns.
        methods: The methods in the order of the columns.
        points: Top-k of the energy pointing game (None = all pixels).
        top_percent: The fixed-percentile Dice/IoU.
        fractions: Deletion curve: shares of pixels removed, starting at 0.
        compare: Two models: columns are "method (model)".
    """
    columns, deletion = {}, []
    methods = list(methods)
    models = list(dict.fromkeys(label for label, _ in parts))  # as passed: --model, then --compare
    for (label, method), frame in sorted(parts.items(), key=lambda kv: (methods.index(kv[0][1]),
                                                                        models.index(kv[0][0]))):
        col: dict[str, float] = {}
        for k in points:
            key = "all" if k is None else str(k)
            col[f"energy pointing game, {'all points' if k is None else f'top {k}'}"] = _nanmean(frame[f"epg_{key}"])
        col["pointing game hit rate"] = float(frame["hit"].mean())
        best = pick_threshold(list(frame[[f"dice_t{t:g}" for t in THRESHOLDS]].to_numpy()),
                              list(frame[[f"iou_t{t:g}" for t in THRESHOLDS]].to_numpy()), THRESHOLDS)
        col["Dice, best threshold"], col["IoU, best threshold"] = best.dice, best.iou
        col["best threshold (share of max)"] = best.threshold
        col[f"Dice, top {top_percent:g} %"] = float(frame["dice_top"].mean())
        col[f"IoU, top {top_percent:g} %"] = float(frame["iou_top"].mean())
        base = frame[f"score_f{fractions[0]:g}"]
        for f in fractions:
            drop = float((base - frame[f"score_f{f:g}"]).mean())
            if f > 0:
                col[f"score drop, {100 * f:g} % removed"] = drop
            deletion.append({"model": label, "method": method, "fraction": f,
                             "mean_score": float(frame[f"score_f{f:g}"].mean()), "mean_drop": drop})
        col["samples"] = float(len(frame))
        columns[f"{method} ({label})" if compare else method] = col
    return pd.DataFrame(columns), pd.DataFrame(deletion)


def write_localisation_report(out: Path, summary: Any, deletion: Any, parts: dict[tuple[str, str], Any], *,
                              methods: Sequence[str], fractions: Sequence[float], top_percent: float, model: Path,
                              compare: Path | None, n_samples: int, cache: Path, kind: str) -> list[Path]:
    """Write `localisation.csv` and `.md`, `per_sample.csv`, `deletion.csv` and `deletion.png`; return their paths."""
    table = summary.reset_index().rename(columns={"index": "metric"})
    write_csv(out / "localisation.csv", table)
    per_sample = pd.concat([frame.assign(model=label, method=method)[
        ["model", "method", *[c for c in frame.columns if not c.startswith(("dice_t", "iou_t"))]]]
        for (label, method), frame in parts.items()], ignore_index=True)
    write_csv(out / "per_sample.csv", per_sample)
    write_csv(out / "deletion.csv", deletion)
    curves, styles = {}, {}
    models = list(dict.fromkeys(deletion["model"]))
    for (lab, m), grp in deletion.groupby(["model", "method"], sort=False):
        key = f"{m} ({lab})" if compare else m
        curves[key] = grp["mean_drop"].to_numpy()
        # One colour per method, solid for --model and dashed for --compare.
        styles[key] = {"color": f"C{list(methods).index(m) % 10}",
                       "linestyle": "-" if models.index(lab) == 0 else "--"}
    plot_deletion_curves(out / "deletion.png", fractions, curves,
                         title=f"Deletion curves ({n_samples} masked samples)", styles=styles)
    write_text(out / "localisation.md", _markdown(summary, top_percent=top_percent, model=model, compare=compare,
                                                  n_samples=n_samples, cache=cache, kind=kind))
    return [out / n for n in ("localisation.csv", "localisation.md", "per_sample.csv", "deletion.csv",
                              "deletion.png")]


def _markdown(summary: Any, *, top_percent: float, model: Path, compare: Path | None, n_samples: int, cache: Path,
              kind: str) -> str:
    header = "| metric | " + " | ".join(summary.columns) + " |"
    lines = ["# Saliency localisation (segment-eval)", "",
             f"{n_samples} samples with expert masks from `{shareable_path(cache)}` ({kind}); "
             f"model `{shareable_path(model)}`" + (f" compared with `{shareable_path(compare)}`" if compare else "")
             + ".", "",
             header, "|" + "---|" * (len(summary.columns) + 1)]
    for label, row in summary.iterrows():
        lines.append(f"| {label} | " + " | ".join(format_cell(v) for v in row) + " |")
    lines += ["", "Energy pointing game: share of positive saliency inside the mask among the top-k points "
              "(paper Table 7). Dice/IoU: the map thresholded at one share of its maximum chosen for the best "
              f"mean Dice, and its top {top_percent:g} % pixels. Score drop: mean fall of the explained "
              "class's probability when that share of the most salient pixels is set to 0 (deletion.png).", ""]
    return "\n".join(lines)


def format_cell(value: Any) -> str:
    """A table cell: whole numbers above 1 (sample counts) as integers, other floats to three decimals."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and value > 1:
        return str(int(value))
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _nanmean(values: Any) -> float:
    arr = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else float("nan")
