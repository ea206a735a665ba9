# SPDX-License-Identifier: MIT
"""The cross-site AUC matrix of the paper's Table 3, and the in-site vs cross-site gap.

Rows are training sites, columns test sites; the diagonal cell is the training site's own
hold-out. `Mean` and `STD` are the row mean and the row's *sample* standard deviation (ddof = 1)
over the test-site cells, diagonal included: that is how every row of the paper's Table 3
reproduces from its cells (paper §4.3, Table 3; checked in tests/test_reports_cross_site.py).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli.errors import DataError
from ppi_cli.files import write_text
from ppi_cli.reports.metrics import mean_std
from ppi_cli.reports.tables import markdown_table, write_table

__all__ = ["cross_site_matrix", "site_gap", "site_gaps", "ppi_reading", "reading_for_display",
           "write_cross_site_tables"]


def cross_site_matrix(cells: Any, sites: Sequence[str] | None = None) -> Any:
    """Pivot cell AUCs into the Table 3 layout with Mean and STD columns.

    Args:
        cells: DataFrame with columns `train_site`, `test_site`, `auc` (one row per cell).
        sites: Row/column order; default: sorted site names seen in the cells.

    Returns:
        DataFrame indexed by training site, columns = test sites then `Mean`, `STD`. Missing
        cells are NaN and left out of Mean/STD.

    Raises:
        DataError: A cell appears twice.

    Example:
        >>> cross_site_matrix(pd.DataFrame({"train_site": ["A"], "test_site": ["A"], "auc": [0.9]}))
    """
    import pandas as pd

    missing = {"train_site", "test_site", "auc"} - set(cells.columns)
    if missing:
        raise DataError(f"cross-site cells lack column(s) {', '.join(sorted(missing))}")
    duplicated = cells.duplicated(["train_site", "test_site"])
    if duplicated.any():
        row = cells[duplicated].iloc[0]
        raise DataError(f"cross-site cell train={row.train_site} test={row.test_site} appears twice",
                        hint="remove the duplicate cell folder or re-run --collect")
    order = list(sites) if sites else sorted(set(cells.train_site) | set(cells.test_site))
    train_order = [s for s in order if s in set(cells.train_site)]
    matrix = cells.pivot(index="train_site", columns="test_site", values="auc")
    matrix = matrix.reindex(index=train_order, columns=order).astype(float)
    stats = [mean_std(matrix.loc[site, order].to_numpy()) for site in train_order]
    matrix["Mean"] = [m for m, _ in stats]
    matrix["STD"] = [s for _, s in stats]
    matrix.index.name = "train \\ test"
    matrix.columns.name = None
    return pd.DataFrame(matrix)


def site_gap(matrix: Any) -> Any:
    """In-site vs cross-site AUC per training site, and over all sites.

    In-site is the diagonal cell (the training site's hold-out); cross-site is the mean of the other
    test sites of that row; the gap is in-site − cross-site. The `all` row averages the diagonal cells
    and all off-diagonal cells of the matrix (the paper: 0.946 vs 0.880 with PPI, 0.927 vs 0.830 without).
    """
    import pandas as pd

    sites = [c for c in matrix.columns if c not in ("Mean", "STD")]
    values = matrix[sites].to_numpy(dtype=float)  # (rows, test sites)
    rows, diag, off = [], [], []
    for i, site in enumerate(matrix.index):
        in_site = values[i, sites.index(site)] if site in sites else np.nan
        others = np.array([values[i, j] for j, s in enumerate(sites) if s != site])
        others = others[np.isfinite(others)]
        cross = float(others.mean()) if others.size else np.nan
        rows.append({"train_site": site, "in_site": in_site, "cross_site": cross, "gap": in_site - cross})
        if np.isfinite(in_site):
            diag.append(in_site)
        off.extend(others.tolist())
    in_all = float(np.mean(diag)) if diag else np.nan
    cross_all = float(np.mean(off)) if off else np.nan
    rows.append({"train_site": "all", "in_site": in_all, "cross_site": cross_all, "gap": in_all - cross_all})
    return pd.DataFrame(rows)


def site_gaps(matrices: Mapping[str, Any]) -> Any:
    """`site_gap` of every variant's matrix, one table: variant, train_site, in_site, cross_site, gap."""
    import pandas as pd

    gaps = [site_gap(matrix).assign(variant=variant) for variant, matrix in matrices.items()]
    return pd.concat(gaps, ignore_index=True)[["variant", "train_site", "in_site", "cross_site", "gap"]]


def write_cross_site_tables(matrices: Mapping[str, Any], folder: Path, reading: tuple[Any, str] | None,
                            gap: Any) -> list[Path]:
    """Write each variant's matrix and the gap table as CSV + markdown, and a side-by-side `cross_site.md`.

    Args:
        matrices: `{variant: matrix}` in display order, e.g. `{"ppi": m1, "baseline": m0}`.
        folder: Output folder.
        reading: `ppi_reading(matrices)`, computed once by the study, which also returns it; None writes no
            "Did PPI help here?" section.
        gap: `site_gaps(matrices)`, likewise computed once by the study.

    Returns:
        Every path written.
    """
    written: list[Path] = []
    for variant, matrix in matrices.items():
        written += write_table(matrix, folder / f"matrix-{variant}", index=True,
                               title=f"Cross-site AUC ({variant})", note=_NOTE)
    written += write_table(gap, folder / "gap", title="In-site vs cross-site AUC")
    sections = ["# Cross-site AUC\n", _NOTE + "\n"]
    for variant, matrix in matrices.items():
        sections += [f"## {variant}\n", markdown_table(matrix, index=True)]
    sections += ["## In-site vs cross-site gap\n", markdown_table(gap)]
    if reading is not None:
        table, summary = reading
        sections += ["## Did PPI help here?\n", markdown_table(reading_for_display(table)), summary + "\n",
                     _READING_NOTE + "\n"]
    side_by_side = folder / "cross_site.md"
    write_text(side_by_side, "\n".join(sections))
    return [*written, side_by_side]


# What one training row of PPI against its baseline reads as. A cell is one model scored on one site's
# cases, one seed: differences this small are within a seed's spread on small sites, so the reading says
# what moved, not that it would move again (`ppi sweep` pairs seeds and gives intervals).
CLEAR_GAIN = 0.02  # cross-site mean up by this much, in-site not down by more than this
CELL_LOSS = 0.05  # ... and no other site down by more than this
OPPOSITE = 0.10  # one site up and another down by this much: a site-dependent cue read differently


def ppi_reading(matrices: Mapping[str, Any], rejected: Collection[str] = ()) -> tuple[Any, str] | None:
    """Whether PPI helped, row by row, when a study ran both variants: the table and a one-line summary.

    Per training row with both variants: Δ in-site, Δ cross-site (the mean over the other sites), the room
    the baseline leaves there (1 − its mean AUC over those sites: the most any model could gain), the
    largest fall and rise of one other site, and the reading:
    - `opposite moves` when one other site rose by `OPPOSITE` or more and another fell by as much: PPI changed
      how the model reads something that differs between sites (a cue learnt in reverse can look like this);
    - `helped` when the cross-site mean rose by `CLEAR_GAIN` or more, in-site fell by less than that and no
      other site fell by more than `CELL_LOSS`;
    - `trade-off` when the cross-site mean rose by `CLEAR_GAIN` or more and in-site fell by as much;
    - `cost` when the cross-site mean fell by `CLEAR_GAIN` or more, or in-site did;
    - `no clear change` otherwise;
    - `PPI rejected` whatever the changes, for a training site in `rejected`: `ppi.fallback_drop` rejected its
      PPI model, and the row compares the recipe trained without PPI with the baseline.

    Returns:
        `(table, summary)`, or None without both a `ppi` and a `baseline` matrix or a row they share.
    """
    import pandas as pd

    if not {"ppi", "baseline"} <= set(matrices):
        return None
    ppi, base = matrices["ppi"], matrices["baseline"]
    sites = [c for c in ppi.columns if c not in ("Mean", "STD") and c in base.columns]
    rows = []
    for train in [s for s in ppi.index if s in base.index]:
        delta = ppi.loc[train, sites].astype(float) - base.loc[train, sites].astype(float)
        others = delta[[s for s in sites if s != train]].dropna()
        if others.empty:
            continue
        d_in = float(delta[train]) if train in delta.index else np.nan
        d_cross = float(others.mean())
        room = 1.0 - float(base.loc[train, list(others.index)].astype(float).mean())
        low, high = float(others.min()), float(others.max())
        if train in rejected:
            reading = "PPI rejected"
        elif high >= OPPOSITE and low <= -OPPOSITE:
            reading = "opposite moves"
        elif d_cross >= CLEAR_GAIN and not d_in <= -CLEAR_GAIN and low >= -CELL_LOSS:
            reading = "helped"
        elif d_cross >= CLEAR_GAIN and d_in <= -CLEAR_GAIN:
            reading = "trade-off"
        elif d_cross <= -CLEAR_GAIN or d_in <= -CLEAR_GAIN:
            reading = "cost"
        else:
            reading = "no clear change"
        rows.append({"train_site": train, "delta_in_site": d_in, "delta_cross_site": d_cross, "room_cross_site": room,
                     "worst_site": f"{others.idxmin()} {low:+.3f}", "best_site": f"{others.idxmax()} {high:+.3f}",
                     "reading": reading})
    if not rows:
        return None
    table = pd.DataFrame(rows)
    counts = table["reading"].value_counts()
    n = len(table)
    mean_cross = float(table["delta_cross_site"].mean())
    mean_room = float(table["room_cross_site"].mean())
    if counts.get("helped", 0) == n:
        advice = ("PPI helped on every training row here; one seed, so confirm it with `ppi sweep` (paired seeds, "
                  "intervals) before relying on it.")
    elif counts.get("helped", 0) == 0:
        advice = ("PPI is not shown to help on these data: keep the baseline's models unless `ppi sweep` over "
                  "seeds shows a gain.")
    else:
        advice = ("PPI helped on some training rows and not on others: keep the baseline's models unless `ppi "
                  "sweep` over seeds shows a gain on the rows you need.")
    if counts.get("opposite moves", 0):
        advice += (" Rows marked `opposite moves` may read a site-dependent cue in reverse rather than ignore it "
                   "(docs/ppi.md).")
    if counts.get("PPI rejected", 0):
        advice += (" Rows marked `PPI rejected` validated worse with PPI than their warm-up or than the recipe "
                   "without PPI, or fitted their training images worse than it (ppi.fallback_drop, "
                   "ppi.fallback_fit): their PPI column holds the recipe trained without PPI.")
    parts = ", ".join(f"{k} {counts[k]}" for k in ("helped", "trade-off", "no clear change", "cost", "opposite moves",
                                                    "PPI rejected") if counts.get(k, 0))
    summary = (f"PPI − baseline, mean over the {n} training row(s) of the cross-site AUC change: {mean_cross:+.3f} "
               f"of the {mean_room:+.3f} the baseline leaves ({parts}). {advice}")
    return table, summary


def reading_for_display(table: Any) -> Any:
    """`ppi_reading`'s table for people: the headers in words (the changes are PPI − baseline)."""
    return table.rename(columns={"train_site": "train", "delta_in_site": "Δ in-site",
                                 "delta_cross_site": "Δ other sites", "room_cross_site": "room (1 − baseline)",
                                 "worst_site": "fell most",
                                 "best_site": "rose most"})


_READING_NOTE = (f"Readings (one seed; `ppi sweep` gives paired seeds and intervals): `helped` = cross-site mean "
                 f"up ≥ {CLEAR_GAIN}, in-site not down by as much, no other site down > {CELL_LOSS}; "
                 f"`trade-off` = cross-site mean up and in-site down, each by ≥ {CLEAR_GAIN}; `cost` = cross-site "
                 f"mean or in-site down ≥ {CLEAR_GAIN}; `opposite moves` = one other site up ≥ {OPPOSITE} and "
                 f"another down ≥ {OPPOSITE}; `PPI rejected` = ppi.fallback_drop rejected the row's PPI model, "
                 "which the recipe trained without PPI replaced. Per-cell DeLong tests: compare/comparison.md.")

_NOTE = ("Rows: training site; columns: test site (the diagonal is the training site's own hold-out). "
         "Mean and STD: row mean and sample std over the test-site cells, as in the paper's Table 3.")
