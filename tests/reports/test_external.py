# SPDX-License-Identifier: MIT
"""The external-set report: operating point at a fixed threshold, reliability table, calibration error."""

from __future__ import annotations

import numpy as np
import pytest

from ppi_cli.reports.external import external_metrics, reliability_table


def test_operating_point_uses_the_given_threshold_not_this_sets_best():
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([0.1, 0.3, 0.6, 0.55, 0.7, 0.9])
    m = external_metrics(y, s, 0.65, n_boot=0)
    assert (m.tp, m.fn, m.tn, m.fp) == (2, 1, 3, 0)
    assert m.sensitivity == pytest.approx(2 / 3) and m.specificity == 1.0 and m.accuracy == pytest.approx(5 / 6)
    assert m.brier == pytest.approx(np.mean((s - y) ** 2))
    assert np.isnan(m.auc_bootstrap_low)  # n_boot 0 skips the bootstrap


def test_reliability_table_bins_and_calibration_error():
    y = np.array([0, 1, 1, 1])
    s = np.array([0.05, 0.95, 1.0, 0.45])
    table = reliability_table(y, s)
    assert len(table) == 10 and table["n"].sum() == 4
    assert table.loc[9, "n"] == 2 and table.loc[9, "observed_rate"] == 1.0  # 1.0 falls in the last, closed bin
    m = external_metrics(y, s, 0.5, n_boot=0)
    assert m.ece == pytest.approx((0.05 + 2 * 0.025 + 0.55) / 4)
