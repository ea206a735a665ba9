# SPDX-License-Identifier: MIT
"""The cross-site AUC matrix of the paper's Table 3, and the in-site vs cross-site gap.

Rows are training sites, columns test sites; the diagonal cell is the training site's own
hold-out. `Mean` and `STD` are the row mean and the row's *sample* standard deviation (ddof = 1)
over the test-site cells, diagonal included: that is how every row of the paper's Table 3
reproduces from its cells (paper §4.3, Table 3; checked in tests/test_reports_cross_site.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli.errors import DataError
from ppi_cli.files import write_text
from ppi_cli.reports.metrics import mean_std
from ppi_cli.reports.tables import markdown_table, write_table

__all__ = ["cross_site_matrix", "site_gap", "write_cross_site_tables"]


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


def write_cross_site_tables(matrices: Mapping[str, Any], folder: Path) -> list[Path]:
    """Write each variant's matrix and the gap table as CSV + markdown, and a side-by-side `cross_site.md`.

    Args:
        matrices: `{variant: matrix}` in display order, e.g. `{"ppi": m1, "baseline": m0}`.
        folder: Output folder.

    Returns:
        Every path written.
    """
    import pandas as pd

    written: list[Path] = []
    gaps = []
    for variant, matrix in matrices.items():
        written += write_table(matrix, folder / f"matrix-{variant}", index=True,
                               title=f"Cross-site AUC ({variant})", note=_NOTE)
        gaps.append(site_gap(matrix).assign(variant=variant))
    gap = pd.concat(gaps, ignore_index=True)[["variant", "train_site", "in_site", "cross_site", "gap"]]
    written += write_table(gap, folder / "gap", title="In-site vs cross-site AUC")
    sections = ["# Cross-site AUC\n", _NOTE + "\n"]
    for variant, matrix in matrices.items():
        sections += [f"## {variant}\n", markdown_table(matrix, index=True)]
    sections += ["## In-site vs cross-site gap\n", markdown_table(gap)]
    side_by_side = folder / "cross_site.md"
    write_text(side_by_side, "\n".join(sections))
    return [*written, side_by_side]


_NOTE = ("Rows: training site; columns: test site (the diagonal is the training site's own hold-out). "
         "Mean and STD: row mean and sample std over the test-site cells, as in the paper's Table 3.")
