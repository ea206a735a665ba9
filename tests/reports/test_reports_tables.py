# SPDX-License-Identifier: MIT
"""Tables (CSV + markdown), the cross-site matrix against the paper's Table 3, and the PNG plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ppi_cli.errors import DataError
from ppi_cli.reports.cross_site import cross_site_matrix, ppi_reading, site_gap, site_gaps, write_cross_site_tables
from ppi_cli.reports.plots import heatmap_figure, roc_figure
from ppi_cli.reports.tables import format_mean_std, markdown_table, write_table

# The paper's Table 3 (paper-math.md §3): cells, then the printed Mean and STD of each row.
SITES = ["A", "B", "C", "D"]
TABLE3 = {
    "ppi": {"A": ([1.000, 0.906, 0.877, 0.865], 0.912, 0.061), "B": ([0.851, 0.975, 0.863, 0.910], 0.900, 0.056),
            "C": ([0.954, 0.875, 0.904, 0.931], 0.916, 0.034), "D": ([0.824, 0.846, 0.853, 0.904], 0.857, 0.034)},
    "baseline": {"A": ([1.000, 0.854, 0.832, 0.827], 0.878, 0.082), "B": ([0.810, 0.874, 0.850, 0.906], 0.860, 0.040),
                 "C": ([0.860, 0.779, 0.873, 0.862], 0.843, 0.043), "D": ([0.748, 0.792, 0.836, 0.961], 0.834, 0.092)},
}


def cells_of(variant):
    rows = [(train, test, auc) for train, (cells, _, _) in TABLE3[variant].items()
            for test, auc in zip(SITES, cells, strict=True)]
    return pd.DataFrame(rows, columns=["train_site", "test_site", "auc"]).sample(frac=1, random_state=0)


@pytest.mark.parametrize("variant", ["ppi", "baseline"])
def test_mean_and_std_reproduce_the_papers_table3(variant):
    matrix = cross_site_matrix(cells_of(variant), SITES)
    assert list(matrix.index) == SITES and list(matrix.columns) == [*SITES, "Mean", "STD"]
    for site, (cells, mean, std) in TABLE3[variant].items():
        np.testing.assert_allclose(matrix.loc[site, SITES].to_numpy(dtype=float), cells)
        # The printed cells are themselves rounded to 3 decimals, so a recomputed Mean/STD may sit up to
        # half a unit of the last digit away (row C without PPI: the cells average to exactly 0.8435).
        assert abs(matrix.loc[site, "Mean"] - mean) <= 0.0005 + 1e-9, site
        assert abs(matrix.loc[site, "STD"] - std) <= 0.0005 + 1e-9, site
        # The population std (ddof = 0) does not reproduce the paper; make sure we did not use it.
    assert not all(abs(np.std(c) - s) <= 0.0005 for c, _, s in TABLE3[variant].values())


def test_gap_reproduces_the_in_site_and_cross_site_means():
    gap = site_gap(cross_site_matrix(cells_of("ppi"), SITES)).set_index("train_site")
    assert gap.loc["all", "in_site"] == pytest.approx(np.mean([1.000, 0.975, 0.904, 0.904]))
    assert gap.loc["all", "in_site"] == pytest.approx(0.946, abs=5e-4)
    assert gap.loc["all", "cross_site"] == pytest.approx(0.880, abs=5e-4)
    assert gap.loc["D", "gap"] == pytest.approx(0.904 - np.mean([0.824, 0.846, 0.853]))
    base = site_gap(cross_site_matrix(cells_of("baseline"), SITES)).set_index("train_site")
    assert base.loc["all", "in_site"] == pytest.approx(0.927, abs=5e-4)
    assert base.loc["all", "cross_site"] == pytest.approx(0.830, abs=5e-4)


def test_partial_matrix_and_duplicate_cell():
    cells = pd.DataFrame({"train_site": ["A", "A"], "test_site": ["A", "C"], "auc": [0.9, 0.7]})
    matrix = cross_site_matrix(cells, SITES)
    assert np.isnan(matrix.loc["A", "B"]) and matrix.loc["A", "Mean"] == pytest.approx(0.8)
    with pytest.raises(DataError, match="train=A test=C appears twice"):
        cross_site_matrix(pd.concat([cells, cells.iloc[[1]]]), SITES)


def test_write_cross_site_tables_side_by_side(tmp_path):
    matrices = {v: cross_site_matrix(cells_of(v), SITES) for v in ("ppi", "baseline")}
    written = write_cross_site_tables(matrices, tmp_path, ppi_reading(matrices), site_gaps(matrices))
    names = {p.name for p in written}
    assert {"matrix-ppi.csv", "matrix-ppi.md", "matrix-baseline.csv", "gap.csv", "gap.md", "cross_site.md"} <= names
    back = pd.read_csv(tmp_path / "matrix-ppi.csv", index_col=0)
    assert back.loc["C", "D"] == pytest.approx(0.931)
    text = (tmp_path / "cross_site.md").read_text()
    assert "## ppi" in text and "## baseline" in text and "| D | 0.748 | 0.792 | 0.836 | 0.961 |" in text
    # Table 3, PPI − baseline: rows A and C lift every other site (A: +0.052 +0.045 +0.038); B's cross-site
    # mean moves +0.019, under the 0.02 of `helped`; D lifts every other site (+0.049) but loses 0.057 in-site,
    # where the baseline leaves 1 − mean(0.748, 0.792, 0.836) = 0.208 of room over the other sites.
    assert "## Did PPI help here?" in text
    assert "| D | -0.057 | 0.049 | 0.208 | C +0.017 | A +0.076 | trade-off |" in text
    assert "| train | Δ in-site | Δ other sites | room (1 − baseline) | fell most | rose most | reading |" in text
    assert "helped 2, trade-off 1, no clear change 1" in text


def _matrix(rows):
    cells = pd.DataFrame([(train, test, auc) for train, aucs in rows.items()
                          for test, auc in zip(SITES, aucs, strict=True)], columns=["train_site", "test_site", "auc"])
    return cross_site_matrix(cells, SITES)


def test_ppi_reading_row_by_row_against_hand_computed_changes():
    base = {"A": [0.90, 0.70, 0.70, 0.70], "B": [0.70, 0.90, 0.70, 0.70], "C": [0.70, 0.70, 0.90, 0.70],
            "D": [0.60, 0.80, 0.20, 0.95]}
    ppi = {"A": [0.90, 0.75, 0.73, 0.74],  # others +0.05 +0.03 +0.04: helped
           "B": [0.67, 0.90, 0.68, 0.66],  # others −0.03 −0.02 −0.04: cost
           "C": [0.71, 0.70, 0.90, 0.70],  # +0.01 over the others: no clear change
           "D": [0.70, 0.65, 0.50, 0.94]}  # A +0.10, B −0.15, C +0.30: opposite moves
    table, summary = ppi_reading({"ppi": _matrix(ppi), "baseline": _matrix(base)})
    table = table.set_index("train_site")
    assert table["reading"].to_dict() == {"A": "helped", "B": "cost", "C": "no clear change", "D": "opposite moves"}
    assert table.loc["A", "delta_cross_site"] == pytest.approx(np.mean([0.05, 0.03, 0.04]))
    assert table.loc["D", "delta_cross_site"] == pytest.approx(np.mean([0.10, -0.15, 0.30]))
    assert table.loc["D", "delta_in_site"] == pytest.approx(-0.01)
    assert table.loc["D", "worst_site"] == "B -0.150" and table.loc["D", "best_site"] == "C +0.300"
    assert table["room_cross_site"].tolist() == pytest.approx([0.30, 0.30, 0.30, 1 - (0.60 + 0.80 + 0.20) / 3])
    mean = np.mean([0.04, -0.03, 0.01 / 3, 0.25 / 3])
    room = np.mean([0.30, 0.30, 0.30, 1 - (0.60 + 0.80 + 0.20) / 3])
    assert f"{mean:+.3f} of the {room:+.3f} the baseline leaves" in summary
    assert "helped 1, no clear change 1, cost 1, opposite moves 1" in summary
    assert "some training rows" in summary and "in reverse" in summary
    # a training site whose PPI model ppi.fallback_drop rejected reads so, whatever its changes
    table, summary = ppi_reading({"ppi": _matrix(ppi), "baseline": _matrix(base)}, rejected={"A"})
    assert table.set_index("train_site")["reading"].to_dict() == {"A": "PPI rejected", "B": "cost",
                                                                   "C": "no clear change", "D": "opposite moves"}
    assert "PPI rejected 1" in summary and "trained without PPI" in summary


def test_ppi_reading_thresholds_and_missing_variants():
    base = {"A": [0.90, 0.70, 0.70, 0.70]}
    # The cross-site mean up by +0.05, but one site down by 0.06: not `helped` (no site may fall > 0.05).
    dipped = ppi_reading({"ppi": _matrix({"A": [0.90, 0.64, 0.80, 0.81]}), "baseline": _matrix(base)})
    assert dipped is not None and dipped[0]["reading"].tolist() == ["no clear change"]
    # Every other site up, in-site down by 0.02: `trade-off`; in-site down alone: `cost`, the baseline kept.
    traded = ppi_reading({"ppi": _matrix({"A": [0.88, 0.80, 0.80, 0.80]}), "baseline": _matrix(base)})
    assert traded is not None and traded[0]["reading"].tolist() == ["trade-off"]
    fell = ppi_reading({"ppi": _matrix({"A": [0.88, 0.70, 0.70, 0.71]}), "baseline": _matrix(base)})
    assert fell is not None and fell[0]["reading"].tolist() == ["cost"] and "not shown to help" in fell[1]
    rose = ppi_reading({"ppi": _matrix({"A": [0.90, 0.80, 0.80, 0.80]}), "baseline": _matrix(base)})
    assert rose is not None and rose[0]["reading"].tolist() == ["helped"] and "every training row" in rose[1]
    assert ppi_reading({"ppi": _matrix(base)}) is None
    assert ppi_reading({"baseline": _matrix(base)}) is None


def test_format_mean_std_and_markdown(tmp_path):
    assert format_mean_std([0.9, 0.95, 0.88]) == "0.910 ± 0.036"
    assert format_mean_std([0.9]) == "0.900 (one value)"
    frame = pd.DataFrame({"fold": [0, 1], "auc": [0.91234, np.nan], "note": ["a|b", "c"]})
    lines = markdown_table(frame).splitlines()
    assert lines[0] == "| fold | auc | note |" and lines[1] == "|---:|---:|---|"
    assert lines[2] == "| 0 | 0.912 | a\\|b |" and lines[3] == "| 1 | — | c |"
    csv_path, md_path = write_table(frame, tmp_path / "folds", title="Folds")
    assert pd.read_csv(csv_path)["auc"][0] == 0.91234  # the CSV keeps full precision
    assert md_path.read_text().startswith("# Folds\n")


def test_plots_write_pngs_atomically(tmp_path, rng):
    y = rng.integers(0, 2, 40)
    folds = [(y[:20], rng.normal(size=20) + y[:20]), (y[20:], rng.normal(size=20) + y[20:])]
    roc = roc_figure({"baseline": folds, "ppi": folds}, tmp_path / "roc.png")
    matrices = {v: cross_site_matrix(cells_of(v), SITES)[SITES] for v in ("ppi", "baseline")}
    heat = heatmap_figure(matrices, tmp_path / "heat.png")
    for path in (roc, heat):
        with Image.open(path) as im:
            assert im.format == "PNG" and im.width > 1.5 * im.height  # two panels side by side
    assert not list(tmp_path.glob(".*.tmp"))
