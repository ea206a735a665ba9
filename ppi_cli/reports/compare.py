# SPDX-License-Identifier: MIT
"""Paired comparison of two runs evaluated on the same samples (`ppi compare RUN_A RUN_B`).

Predictions are paired by (part, manifest row): the same fold or cell, the same sample. Binary
tasks get, per part and pooled over the parts, the two AUCs, their difference with DeLong's
standard error, z, p-value and interval, and a paired stratified bootstrap interval. Multi-class
tasks get the accuracy difference with an exact McNemar test. The difference is always A − B.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli.errors import DataError
from ppi_cli.reports.delong import delong_test, paired_bootstrap_difference
from ppi_cli.reports.predictions import run_predictions, score_columns
from ppi_cli.reports.tables import format_interval, format_mean_std, format_value, write_table

__all__ = ["Comparison", "pair_predictions", "compare_predictions", "compare_runs"]


@dataclass
class Comparison:
    """What `ppi compare` found: one row per part plus a pooled row, and the files written."""

    name_a: str
    name_b: str
    table: Any  # pandas DataFrame
    summary: str
    written: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for `--json`."""
        return {"a": self.name_a, "b": self.name_b, "summary": self.summary,
                "rows": self.table.replace({np.nan: None}).to_dict(orient="records")}

    def __rich__(self) -> Any:
        from rich.table import Table

        table = Table(title=f"A = {self.name_a}   B = {self.name_b}", box=None, pad_edge=False)
        for column in self.table.columns:
            table.add_column(str(column), justify="left" if column == "part" else "right")
        for row in self.table.itertuples(index=False):
            table.add_row(*(format_value(v) for v in row))
        return table


def pair_predictions(frame_a: Any, frame_b: Any, name_a: str = "A", name_b: str = "B") -> Any:
    """Join two prediction frames on (part, index), checking that they cover the same samples.

    Returns:
        DataFrame with `part`, `index`, `label` and the score columns suffixed `_a` / `_b`.

    Raises:
        DataError: The runs were not evaluated on the same parts and rows, or disagree on a label.
    """
    cols_a, cols_b = score_columns(frame_a), score_columns(frame_b)
    if cols_a != cols_b:
        raise DataError(f"{name_a} and {name_b} predict different outputs ({len(cols_a)} vs {len(cols_b)} scores)",
                        hint="compare runs of the same task")
    keys_a = set(zip(frame_a["part"], frame_a["index"], strict=True))
    keys_b = set(zip(frame_b["part"], frame_b["index"], strict=True))
    if keys_a != keys_b:
        only_a, only_b = keys_a - keys_b, keys_b - keys_a
        example = next(iter(sorted(only_a or only_b)))
        raise DataError(f"runs were not evaluated on the same samples: {len(only_a)} (part, row) pairs only in "
                        f"{name_a}, {len(only_b)} only in {name_b} (e.g. part {example[0]}, row {example[1]})",
                        hint="run both with the same cache, --folds and --seed (the split is saved in each run)")
    paired = frame_a.merge(frame_b, on=["part", "index"], suffixes=("_a", "_b"))
    clash = paired["label_a"] != paired["label_b"]
    if clash.any():
        row = paired[clash].iloc[0]
        raise DataError(f"row {int(row['index'])} (part {row['part']}) has label {row['label_a']} in {name_a} but "
                        f"{row['label_b']} in {name_b}", hint="the runs used different caches; compare like with like")
    return paired.rename(columns={"label_a": "label"}).drop(columns="label_b")


def compare_predictions(paired: Any, *, n_boot: int = 2000, seed: int = 0) -> Any:
    """One comparison row per part and a pooled row (when every sample appears in one part only)."""
    import pandas as pd

    multiclass = "score_a" not in paired.columns
    groups = [(str(part), rows) for part, rows in paired.groupby("part", sort=True)]
    if len(groups) > 1 and not paired["index"].duplicated().any():
        groups.append(("pooled", paired))
    rows = [(_accuracy_row if multiclass else _auc_row)(part, frame, n_boot, seed) for part, frame in groups]
    return pd.DataFrame(rows)


def _auc_row(part: str, frame: Any, n_boot: int, seed: int) -> dict[str, Any]:
    y = frame["label"].to_numpy()
    a, b = frame["score_a"].to_numpy(), frame["score_b"].to_numpy()
    n_pos = int(np.sum(y == 1))
    row: dict[str, Any] = {"part": part, "n": int(y.size), "n_positive": n_pos}
    if n_pos < 2 or y.size - n_pos < 2:  # DeLong needs two of each class; report the part, leave stats empty
        return row | dict.fromkeys(("auc_a", "auc_b", "difference", "se", "z", "p_value", "ci_low", "ci_high",
                                    "boot_low", "boot_high"), np.nan)
    result = delong_test(y, a, b)
    boot_low, boot_high = paired_bootstrap_difference(y, a, b, n_boot=n_boot, seed=seed)
    return row | {"auc_a": result.auc_a, "auc_b": result.auc_b, "difference": result.difference, "se": result.se,
                  "z": result.z, "p_value": result.p_value, "ci_low": result.ci_low, "ci_high": result.ci_high,
                  "boot_low": boot_low, "boot_high": boot_high}


def _accuracy_row(part: str, frame: Any, n_boot: int, seed: int) -> dict[str, Any]:
    from scipy.stats import binomtest

    y = frame["label"].to_numpy().astype(np.int64)
    score_a = [c for c in frame.columns if c.startswith("score_") and c.endswith("_a")]
    score_b = [c.replace("_a", "_b") for c in score_a]
    right_a = frame[score_a].to_numpy().argmax(axis=1) == y
    right_b = frame[score_b].to_numpy().argmax(axis=1) == y
    only_a, only_b = int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))
    # Exact McNemar: under H0 the discordant pairs split 50/50.
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    rng = np.random.default_rng(seed)
    diffs = [np.mean(right_a[t]) - np.mean(right_b[t]) for t in (rng.integers(0, y.size, y.size) for _ in
                                                                  range(n_boot))]
    low, high = np.quantile(diffs, [0.025, 0.975]) if n_boot > 0 else (np.nan, np.nan)
    return {"part": part, "n": int(y.size), "accuracy_a": float(right_a.mean()), "accuracy_b": float(right_b.mean()),
            "difference": float(right_a.mean() - right_b.mean()), "discordant_a": only_a, "discordant_b": only_b,
            "p_value": float(p), "boot_low": float(low), "boot_high": float(high)}


def _summary(table: Any, name_a: str, name_b: str) -> str:
    metric = "auc" if "auc_a" in table.columns else "accuracy"
    parts = table[table["part"] != "pooled"]
    lines = [f"A = `{name_a}`, B = `{name_b}`; differences are A − B."]
    if len(parts) > 1:
        label = "AUC" if metric == "auc" else metric
        lines.append(f"Per-part {label}: A {format_mean_std(parts[f'{metric}_a'])}, "
                     f"B {format_mean_std(parts[f'{metric}_b'])}; paired difference "
                     f"{format_mean_std(parts['difference'])} (mean ± sample std over parts).")
    pooled = table[table["part"] == "pooled"]
    final = pooled.iloc[0] if len(pooled) else table.iloc[0]
    where = "pooled over parts" if len(pooled) else f"part {final['part']}"
    if metric == "auc":
        lines.append(f"{where}: ΔAUC {format_value(final['difference'])}, DeLong 95% CI "
                     f"{format_interval(final['ci_low'], final['ci_high'])}, p = {format_value(final['p_value'], 4)}; "
                     f"paired bootstrap 95% CI {format_interval(final['boot_low'], final['boot_high'])}.")
    else:
        lines.append(f"{where}: Δaccuracy {format_value(final['difference'])}, exact McNemar p = "
                     f"{format_value(final['p_value'], 4)}; bootstrap 95% CI "
                     f"{format_interval(final['boot_low'], final['boot_high'])}.")
    return "\n".join(lines)


def compare_runs(run_a: Path, run_b: Path, out: Path, *, n_boot: int = 2000, seed: int = 0) -> Comparison:
    """Compare two runs' predictions and write `comparison.csv` / `comparison.md` into `out`.

    Args:
        run_a: Run folder of model A (a crossval, cross-site or train run with predictions).
        run_b: Run folder of model B, evaluated on the same samples.
        out: Output folder.
        n_boot: Bootstrap resamples (0 skips the bootstrap interval).
        seed: Bootstrap seed.

    Example:
        >>> compare_runs(Path("runs/crossval-ppi"), Path("runs/crossval-baseline"), Path("runs/cmp"))
    """
    name_a, name_b = Path(run_a).name, Path(run_b).name
    if Path(run_a).resolve() == Path(run_b).resolve():
        raise DataError(f"{run_a}: comparing a run with itself", hint="give two different run folders")
    paired = pair_predictions(run_predictions(Path(run_a)), run_predictions(Path(run_b)), name_a, name_b)
    table = compare_predictions(paired, n_boot=n_boot, seed=seed)
    summary = _summary(table, name_a, name_b)
    out.mkdir(parents=True, exist_ok=True)
    written = list(write_table(table, out / "comparison", title="Paired comparison", note=summary))
    return Comparison(name_a, name_b, table, summary, written)
