# SPDX-License-Identifier: MIT
"""Paired comparison of two runs evaluated on the same samples (`ppi compare RUN_A RUN_B`).

Predictions are paired by (part, manifest row): the same fold or cell, the same sample. Each part
is one model of A and one of B scored on one test set, so per part binary tasks get the two AUCs,
their difference with DeLong's standard error, z, p-value and interval, and a paired stratified
bootstrap interval; multi-class tasks get the accuracy difference with an exact McNemar test.

The headline is the mean of the per-model-pair differences with a t-interval over the pairs: a fold
of a cross-validation is one pair, a training site of a cross-site study is one pair (its value the
mean over the sites it was not trained on). Predictions are never pooled over parts for a test:
different folds' models put their scores on different scales, so a DeLong test of the pooled
predictions is not a test of any one model (on the GA demo it gave ΔAUC −0.236 where the per-fold
mean was −0.011). The difference is always A − B.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli.errors import DataError
from ppi_cli.files import write_csv, write_text
from ppi_cli.reports.delong import delong_test, paired_bootstrap_difference
from ppi_cli.reports.predictions import run_predictions, score_columns
from ppi_cli.reports.tables import format_interval, format_mean_std, format_value, markdown_table

__all__ = ["Comparison", "pair_predictions", "compare_predictions", "paired_differences", "compare_runs"]

MEAN_ROW = "mean"


@dataclass
class Comparison:
    """What `ppi compare` found: one row per part, the paired headline table, and the files written.

    Attributes:
        table: One row per part (fold or cross-site cell): both metrics, the difference, DeLong or
            McNemar, the bootstrap interval.
        paired: One row per model pair (fold, or training site) with its difference, then the row
            "mean": the headline, with its t-interval over the pairs (`paired_differences`).
    """

    name_a: str
    name_b: str
    table: Any  # pandas DataFrame
    summary: str
    paired: Any = None  # pandas DataFrame
    written: list[Path] = field(default_factory=list)

    @property
    def headline(self) -> dict[str, Any]:
        """The paired table's "mean" row as plain data (`difference`, `ci_low`, `ci_high`, `n_pairs`, ...)."""
        row = self.paired[self.paired["pair"] == MEAN_ROW].iloc[0].to_dict()
        clean = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items() if k != "pair"}
        return clean | {"parts": int(row["parts"]), "n_pairs": int(len(self.paired) - 1)}

    def to_dict(self) -> dict[str, Any]:
        """Plain data for `--json`."""
        return {"a": self.name_a, "b": self.name_b, "summary": self.summary, "headline": self.headline,
                "paired": self.paired.replace({np.nan: None}).to_dict(orient="records"),
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
    """One comparison row per part: one model of each run on one test set (no row pooled over parts)."""
    import pandas as pd

    multiclass = "score_a" not in paired.columns
    groups = [(str(part), rows) for part, rows in paired.groupby("part", sort=True)]
    rows = [(_accuracy_row if multiclass else _auc_row)(part, frame, n_boot, seed) for part, frame in groups]
    return pd.DataFrame(rows)


def _model_pair(part: str) -> str:
    """The model pair a part was scored by: the training site of a cross-site cell "A>B", else the part."""
    train, sep, _ = part.partition(">")
    return train if sep else part


def paired_differences(table: Any, level: float = 0.95) -> Any:
    """Per-model-pair differences and their mean with a t-interval: the headline of a comparison.

    A pair's value is its part's difference (a fold), or the mean over its cross-site cells tested
    on other sites (its own hold-out only when it has no other cell). The last row, `pair` "mean",
    holds the mean over pairs, the sample std, the two-sided `level` t-interval
    mean ± t_{n−1} · std / √n (scipy.stats.t) and the one-sample t-test's p-value; with one pair
    these are NaN.

    Args:
        table: `compare_predictions`'s per-part table.
        level: Coverage of the interval.

    Returns:
        DataFrame with `pair`, `parts`, `<metric>_a`, `<metric>_b`, `difference`, `std`, `ci_low`,
        `ci_high`, `t` and `p_value`.
    """
    import pandas as pd
    from scipy import stats

    metric = "auc" if "auc_a" in table.columns else "accuracy"
    usable = table[np.isfinite(table["difference"].to_numpy(dtype=float))]
    rows = []
    for pair, frame in usable.groupby(usable["part"].map(_model_pair), sort=True):
        other = frame[[p.partition(">")[2] not in ("", pair) for p in frame["part"]]]
        cells = other if len(other) else frame
        rows.append({"pair": pair, "parts": len(cells), f"{metric}_a": float(cells[f"{metric}_a"].mean()),
                     f"{metric}_b": float(cells[f"{metric}_b"].mean()),
                     "difference": float(cells["difference"].mean())})
    d = np.array([r["difference"] for r in rows], dtype=float)
    n = d.size
    mean = float(d.mean()) if n else np.nan
    std = float(d.std(ddof=1)) if n > 1 else np.nan
    low = high = t = p = np.nan
    if n > 1 and std > 0:
        se = std / np.sqrt(n)
        half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
        low, high = mean - half, mean + half
        t = mean / se
        p = float(2 * stats.t.sf(abs(t), n - 1))
    elif n > 1:  # every pair gave the same difference: a zero-width interval
        low = high = mean
    summary = {"pair": MEAN_ROW, "parts": int(sum(r["parts"] for r in rows)),
               f"{metric}_a": float(np.mean([r[f"{metric}_a"] for r in rows])) if n else np.nan,
               f"{metric}_b": float(np.mean([r[f"{metric}_b"] for r in rows])) if n else np.nan,
               "difference": mean, "std": std, "ci_low": low, "ci_high": high, "t": t, "p_value": p}
    columns = ["pair", "parts", f"{metric}_a", f"{metric}_b", "difference", "std", "ci_low", "ci_high", "t",
               "p_value"]
    return pd.DataFrame([*rows, summary], columns=columns)


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


def _unit(table: Any) -> tuple[str, str]:
    """What a model pair is here, singular and plural: folds, training sites, or parts."""
    parts = [str(p) for p in table["part"]]
    if parts and all(">" in p for p in parts):
        return "training site", "training sites"
    if parts and all(p.startswith("fold-") for p in parts):
        return "fold", "folds"
    return "part", "parts"


def _summary(table: Any, paired: Any, name_a: str, name_b: str) -> str:
    metric = "auc" if "auc_a" in table.columns else "accuracy"
    label = "AUC" if metric == "auc" else "accuracy"
    one, many = _unit(table)
    head = paired.set_index("pair").loc[MEAN_ROW]
    pairs = paired[paired["pair"] != MEAN_ROW]
    lines = [f"A = `{name_a}`, B = `{name_b}`; differences are A − B."]
    if len(pairs) > 1:
        each = ", ".join(f"{r.pair} {format_value(r.difference)}" for r in pairs.itertuples())
        what = (f"per {one} (each the mean over the sites it was not trained on)" if one == "training site"
                else f"per {one}")
        lines.append(f"**Headline: mean paired Δ{label} {what} {format_value(head['difference'])}, 95% t-interval "
                     f"over {len(pairs)} {many} {format_interval(head['ci_low'], head['ci_high'])}, "
                     f"p = {format_value(head['p_value'], 4)}** (one-sample t-test); per {one}: {each}. "
                     f"{label} A {format_mean_std(pairs[f'{metric}_a'])}, B {format_mean_std(pairs[f'{metric}_b'])} "
                     f"(mean ± sample std over {many}).")
    test = "DeLong's test and the paired bootstrap" if metric == "auc" else "the exact McNemar test and the bootstrap"
    if len(table) == 1:
        row = table.iloc[0]
        if metric == "auc":
            lines.append(f"**Headline: part {row['part']}: ΔAUC {format_value(row['difference'])}, DeLong 95% CI "
                         f"{format_interval(row['ci_low'], row['ci_high'])}, p = {format_value(row['p_value'], 4)}; "
                         f"paired bootstrap 95% CI {format_interval(row['boot_low'], row['boot_high'])}.**")
        else:
            lines.append(f"**Headline: part {row['part']}: Δaccuracy {format_value(row['difference'])}, exact "
                         f"McNemar p = {format_value(row['p_value'], 4)}; bootstrap 95% CI "
                         f"{format_interval(row['boot_low'], row['boot_high'])}.**")
    else:
        lines.append(f"Each row of the per-part table is one model of each run on one test set, so {test} are "
                     f"valid there. Predictions are not pooled over parts: the parts' models put their scores on "
                     f"different scales, and a test of pooled predictions is not a test of any one model.")
    return "\n\n".join(lines)


def compare_runs(run_a: Path, run_b: Path, out: Path, *, n_boot: int = 2000, seed: int = 0) -> Comparison:
    """Compare two runs' predictions; write `comparison.csv/.md` (per part) and `paired.csv/.md` (headline).

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
    differences = paired_differences(table)
    summary = _summary(table, differences, name_a, name_b)
    out.mkdir(parents=True, exist_ok=True)
    one, _ = _unit(table)
    written = [write_csv(out / "paired.csv", differences)]
    written.append(write_text(out / "paired.md", f"# Paired differences per {one} (A − B)\n\n"
                              f"{markdown_table(differences)}\n{summary}\n"))
    written.append(write_csv(out / "comparison.csv", table))
    written.append(write_text(out / "comparison.md", "\n".join([
        "# Paired comparison\n", summary + "\n", f"## Paired differences per {one} ([paired.csv](paired.csv))\n",
        markdown_table(differences), "## Per part ([comparison.csv](comparison.csv))\n", markdown_table(table)])))
    return Comparison(name_a, name_b, table, summary, differences, written)
