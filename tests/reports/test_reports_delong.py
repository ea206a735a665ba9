# SPDX-License-Identifier: MIT
"""DeLong's test against a hand-worked example, a naive O(m·n) kernel reference, and the bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from ppi_cli.errors import DataError
from ppi_cli.reports.delong import delong_test, paired_bootstrap_difference, structural_components


def naive_delong(y, a, b):
    """DeLong et al. (1988) written out literally: the Mann-Whitney kernel over every (positive, negative) pair."""
    def psi(x, z):
        return 1.0 if x > z else 0.5 if x == z else 0.0

    comps = []
    for s in (a, b):
        pos, neg = s[y == 1], s[y == 0]
        kernel = np.array([[psi(x, z) for z in neg] for x in pos])  # (m, n)
        comps.append((kernel.mean(axis=1), kernel.mean(axis=0)))  # V10 (m,), V01 (n,)
    m, n = int(y.sum()), int((1 - y).sum())
    v10 = np.vstack([c[0] for c in comps])
    v01 = np.vstack([c[1] for c in comps])
    s10, s01 = np.cov(v10), np.cov(v01)
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    diff = v10[0].mean() - v10[1].mean()
    return v10, v01, diff, np.sqrt(var)


def test_hand_worked_example():
    # Positives are the first three samples. Worked by hand:
    #   A: V10 = [1, 1, 1/2], V01 = [2/3, 1]     -> AUC_A = 5/6
    #   B: V10 = [1, 0, 3/4], V01 = [1/2, 2/3]   -> AUC_B = 7/12 (0.4 vs 0.4 is a tie: 1/2)
    #   var(D10) = 7/16 over m = 3, var(D01) = 1/72 over n = 2  ->  var = 11/72
    y = np.array([1, 1, 1, 0, 0])
    a = np.array([0.9, 0.6, 0.3, 0.5, 0.1])
    b = np.array([0.7, 0.2, 0.4, 0.4, 0.3])
    v10, v01 = structural_components(y, np.vstack([a, b]))
    np.testing.assert_allclose(v10, [[1, 1, 0.5], [1, 0, 0.75]])
    np.testing.assert_allclose(v01, [[2 / 3, 1], [0.5, 2 / 3]])
    r = delong_test(y, a, b)
    assert r.auc_a == pytest.approx(5 / 6) and r.auc_b == pytest.approx(7 / 12)
    assert r.difference == pytest.approx(0.25)
    assert r.se == pytest.approx(np.sqrt(11 / 72))
    assert r.z == pytest.approx(0.25 / np.sqrt(11 / 72))
    assert r.p_value == pytest.approx(2 * norm.sf(0.25 / np.sqrt(11 / 72)))
    assert r.ci_low == pytest.approx(0.25 - 1.959964 * np.sqrt(11 / 72), abs=1e-6)


def test_matches_naive_reference_on_random_data_with_ties(rng):
    for _ in range(10):
        n = int(rng.integers(8, 40))
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]
        y[2:4] = [0, 1]
        a = np.round(rng.normal(size=n) + y, 1)
        b = np.round(0.5 * a + rng.normal(size=n) + 0.5 * y, 1)  # correlated with A, with ties
        v10, v01, diff, se = naive_delong(y, a, b)
        got_v10, got_v01 = structural_components(y, np.vstack([a, b]))
        np.testing.assert_allclose(got_v10, v10, atol=1e-12)
        np.testing.assert_allclose(got_v01, v01, atol=1e-12)
        r = delong_test(y, a, b)
        assert r.difference == pytest.approx(diff, abs=1e-12)
        assert r.se == pytest.approx(se, abs=1e-12)


def test_se_agrees_with_the_paired_bootstrap(rng):
    # An independent estimate of the same quantity: the spread of the AUC difference over bootstrap replicates.
    n = 300
    y = np.r_[np.zeros(n), np.ones(n)]
    shared = rng.normal(size=2 * n)
    a = shared + 1.0 * y + 0.5 * rng.normal(size=2 * n)
    b = shared + 0.6 * y + 0.5 * rng.normal(size=2 * n)
    r = delong_test(y, a, b)
    boot = []
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    for _ in range(400):
        take = np.r_[rng.choice(pos, n), rng.choice(neg, n)]
        boot.append(delong_test(y[take], a[take], b[take]).difference)
    assert r.se == pytest.approx(np.std(boot, ddof=1), rel=0.2)
    low, high = paired_bootstrap_difference(y, a, b, n_boot=400, seed=1)
    assert low < r.difference < high
    assert (high - low) == pytest.approx(r.ci_high - r.ci_low, rel=0.25)
    assert r.p_value < 0.01  # a real difference of this size is detected


def test_symmetry_identity_and_bad_input(rng):
    y = np.r_[np.zeros(20), np.ones(20)]
    a, b = rng.normal(size=40) + y, rng.normal(size=40) + y
    ab, ba = delong_test(y, a, b), delong_test(y, b, a)
    assert ab.z == pytest.approx(-ba.z) and ab.p_value == pytest.approx(ba.p_value)
    same = delong_test(y, a, 3 * a + 1)  # a monotone transform ranks every pair alike
    assert same.difference == 0 and same.se == pytest.approx(0, abs=1e-12) and same.p_value == 1.0
    with pytest.raises(DataError, match="at least 2 positives"):
        delong_test([0, 0, 1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])
    with pytest.raises(DataError, match="paired scores"):
        delong_test([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], [0.3, 0.2, 0.1])


def test_delong_interval_of_one_model_matches_the_naive_kernel(rng):
    from ppi_cli.reports.delong import delong_interval

    y = rng.integers(0, 2, 60)
    s = np.round(rng.normal(size=60) + y, 1)
    pos, neg = s[y == 1], s[y == 0]
    kernel = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])  # (m, n)
    v10, v01 = kernel.mean(axis=1), kernel.mean(axis=0)
    se = np.sqrt(v10.var(ddof=1) / pos.size + v01.var(ddof=1) / neg.size)
    auc, got_se, low, high = delong_interval(y, s)
    assert auc == pytest.approx(kernel.mean()) and got_se == pytest.approx(se)
    assert low == pytest.approx(max(auc - 1.959964 * se, 0), abs=1e-6) and high <= 1.0
