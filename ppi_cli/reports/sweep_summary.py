# SPDX-License-Identifier: MIT
"""The numbers of a `ppi sweep` summary, from its runs (one row per variant, seed, [fold,] training and test site:
the AUC): per variant and site the mean over seeds and the paired difference from the baseline with its 95 %
t-interval; with `--train all` each training row's and the whole matrix's; the cue's effect per site; and the
energy inside the lesion. `sweep_reading` puts these rows in words, `sweep_tables` lays them out in summary.md;
`engine.sweep` runs the studies and writes the files.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ppi_cli.reports.sweep_reading import CROSS_SITE

__all__ = ["BASELINE", "CEILING", "ALL", "MATRIX", "paired_interval", "summarise_sweep", "summarise_matrix",
           "summarise_effects", "summarise_energy", "cells_frame"]

BASELINE = "baseline"
CEILING = "ceiling"  # the baseline trained on the twin (--twin: no cue, or one unrelated to the label)
ALL = "all"  # `--train all`: every site trains a row, and the summary adds the whole matrix
MATRIX = "whole matrix"  # the summary's site for the mean over training rows of their other-site means


def cells_frame(results: Mapping[tuple[str, int], list[dict[str, Any]]], names: Sequence[str], seeds: Sequence[int],
                key: str, columns: Sequence[str]) -> Any:
    """The cells of a sweep's studies (`results[(variant, seed)]`, a list of dicts) that carry `key` (`auc`,
    `effect`, `energy`) as one table: variant, seed and `columns`, in the order of `names` and `seeds`."""
    import pandas as pd

    rows = [{"variant": name, "seed": seed, **cell} for name in names for seed in seeds
            for cell in results.get((name, seed), []) if key in cell]
    return pd.DataFrame(rows, columns=["variant", "seed", *columns])


def paired_interval(differences: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean of paired differences and its two-sided t-interval (NaN bounds with fewer than two pairs)."""
    from scipy import stats

    d = np.asarray(differences, dtype=float)
    mean = float(d.mean()) if d.size else float("nan")
    if d.size < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size))
    return mean, mean - half, mean + half


def summarise_effects(effects: Any) -> Any:
    """Per variant and site: the cue's mean effect over the site's carrying images (both labels, each seed's
    mean weighted by its rows), its mean over seeds and the 95 % t-interval over seeds."""
    import pandas as pd

    frame = effects.assign(total=effects["effect"] * effects["n"])
    per_seed = frame.groupby(["variant", "seed", "test_site"], sort=False)[["total", "n"]].sum()
    per_seed = (per_seed["total"] / per_seed["n"]).rename("effect").reset_index()
    rows = []
    for (variant, site), part in per_seed.groupby(["variant", "test_site"], sort=False):
        mean, low, high = paired_interval(part["effect"].to_numpy())
        rows.append({"variant": variant, "site": site, "n": int(part.shape[0]), "effect": mean, "low": low,
                     "high": high})
    return pd.DataFrame(rows, columns=["variant", "site", "n", "effect", "low", "high"])


def summarise_sweep(runs: Any, train: str) -> Any:
    """Per variant and site (each test site, `in-site`, and the mean over the other sites): the mean AUC
    over seeds and, against the baseline, the mean paired difference with its 95 % t-interval. Runs with a
    `fold` column (a cross-validation sweep) pair by seed and fold."""
    import pandas as pd

    pair = ["seed", *(["fold"] if "fold" in runs.columns else [])]
    frame = runs.copy()
    frame["site"] = np.where(frame["test_site"] == train, "in-site", frame["test_site"])
    others = frame[frame["test_site"] != train].groupby(["variant", *pair], as_index=False)["auc"].mean()
    frame = pd.concat([frame[["variant", *pair, "site", "auc"]], others.assign(site=CROSS_SITE)], ignore_index=True)
    table = frame.pivot_table(index=["variant", *pair], columns="site", values="auc")
    sites = [*(["in-site"] if "in-site" in table.columns else []),  # none when every hold-out held one class
             *sorted(s for s in table.columns if s not in ("in-site", CROSS_SITE)),
             *([CROSS_SITE] if CROSS_SITE in table.columns else [])]  # none: cross-validated without --test
    return pd.DataFrame(_paired_columns(table, dict.fromkeys(runs["variant"]), sites, "site", room=True),
                        columns=["variant", "site", "n", "mean", "delta", "low", "high", "pairs", "room"])


def summarise_matrix(runs: Any) -> Any:
    """`--train all`: `summarise_sweep` of each training row (a `train_site` column says which), then per variant
    the whole matrix (train_site `all`): per seed the mean over training rows of each row's mean over its other
    sites (site `whole matrix`, what `ppi cross-site --train all --baseline` gives), and each test site's column
    over the rows trained elsewhere (site: that test site; a reversed site's column says what every other row's
    model makes of it), over the seeds with every row, each paired with the baseline's."""
    import pandas as pd

    parts = [summarise_sweep(runs[runs["train_site"] == row], row).assign(train_site=row)
             for row in sorted(dict.fromkeys(runs["train_site"]))]
    others = runs[runs["test_site"] != runs["train_site"]]
    rows = others.groupby(["variant", "seed"])["train_site"].transform("nunique")
    others = others[rows == runs["train_site"].nunique()]  # the seeds with every row
    per_row = others.groupby(["variant", "seed", "train_site"], sort=False)["auc"].mean()
    per_seed = {site: part.groupby(["variant", "seed"], sort=False)["auc"].mean()
                for site, part in sorted(others.groupby("test_site"), key=lambda item: str(item[0]))}
    per_seed[MATRIX] = per_row.groupby(level=["variant", "seed"], sort=False).mean()
    matrix = _paired_columns(pd.DataFrame(per_seed), dict.fromkeys(runs["variant"]), list(per_seed), "site", room=True)
    return pd.concat([*parts, pd.DataFrame(matrix).assign(train_site=ALL)], ignore_index=True)


def summarise_energy(energies: Any) -> Any:
    """`--energy`: per variant and training row (a cross-validation's: its cache), the mean over seeds (and folds)
    of each kept model's energy inside the data's expert masks and, against the baseline, the mean paired
    difference with its 95 % t-interval. With several rows also the whole matrix (train_site `whole matrix`): per
    seed the mean over the rows, over the seeds with every row, as `summarise_matrix` takes the AUCs."""
    import pandas as pd

    pair = ["seed", *(["fold"] if "fold" in energies.columns else [])]
    table = energies.pivot_table(index=["variant", *pair], columns="train_site", values="energy")
    rows = sorted(table.columns)
    if len(rows) > 1:
        table[MATRIX] = table[rows].dropna().mean(axis=1)  # NaN where a seed misses a row
        rows.append(MATRIX)
    return pd.DataFrame(_paired_columns(table, dict.fromkeys(energies["variant"]), rows, "train_site"),
                        columns=["variant", "train_site", "n", "mean", "delta", "low", "high", "pairs"])


def _paired_columns(table: Any, variants: Iterable[str], columns: Sequence[str], key: str, *,
                    room: bool = False) -> list[dict[str, Any]]:
    """Per variant and column of `table` (a frame indexed by variant and the pairing keys, seed and fold): the
    number of values, their mean and, for each variant but the baseline, `_paired` against the baseline's; each
    row names its column under `key`. A variant missing from `table` gets empty cells. `room` (AUCs): also the
    room, 1 − the baseline's mean over the same seeds (the baseline's own row: over its own), the most any
    model could gain there: a bound above it cannot be met on these seeds."""
    import pandas as pd

    present = table.index.get_level_values(0)
    rows = []
    for variant in variants:
        for column in columns:
            values = table.loc[variant][column].dropna() if variant in present else pd.Series(dtype=float)
            row = {"variant": variant, key: column, "n": int(values.size), "mean": float(values.mean())}
            base = table.loc[BASELINE][column] if BASELINE in present else None
            if variant != BASELINE and base is not None:
                row |= _paired(values, base)
            if room:  # the baseline over this variant's seeds (NaN-skipping mean; NaN without any)
                row["room"] = 1.0 - float(base.reindex(values.index).mean()) if base is not None else float("nan")
            rows.append(row)
    return rows


def _paired(values: Any, base: Any) -> dict[str, Any]:
    """A variant's values against the baseline's on the same seeds (and folds): the mean paired difference, its
    95 % t-interval and the number of pairs."""
    paired = (values - base).dropna()
    delta, low, high = paired_interval(paired.to_numpy())
    return {"delta": delta, "low": low, "high": high, "pairs": int(paired.size)}
