# SPDX-License-Identifier: MIT
"""Metrics against naive definitions and an independent implementation (scikit-learn)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ppi_cli.errors import DataError
from ppi_cli.reports.metrics import (
    binary_metrics,
    bootstrap_auc_interval,
    mean_std,
    multiclass_metrics,
    roc_auc,
    roc_points,
    youden_point,
)


def naive_auc(y, s):
    pos, neg = s[y == 1], s[y == 0]
    wins = [(1.0 if p > q else 0.5 if p == q else 0.0) for p in pos for q in neg]
    return float(np.mean(wins))


def test_auc_matches_pairwise_definition_and_sklearn_with_ties(rng):
    for _ in range(20):
        n = int(rng.integers(4, 60))
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]
        s = np.round(rng.normal(size=n) + y, 1)  # rounding makes ties frequent
        assert roc_auc(y, s) == pytest.approx(naive_auc(y, s), abs=1e-12)
        assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auc_known_value_and_single_class():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert np.isnan(roc_auc([1, 1, 1], [0.2, 0.5, 0.9]))
    with pytest.raises(DataError, match="0 or 1"):
        roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(DataError, match="3 labels but 2 scores"):
        roc_auc([0, 1, 1], [0.1, 0.2])


def test_youden_point_is_the_brute_force_maximum(rng):
    y = rng.integers(0, 2, 80)
    s = np.round(rng.normal(size=80) + 1.2 * y, 2)
    threshold, sens, spec = youden_point(y, s)
    best = max(np.mean(s[y == 1] >= t) + np.mean(s[y == 0] < t) - 1 for t in np.unique(s))
    assert sens + spec - 1 == pytest.approx(best)
    assert sens == pytest.approx(np.mean(s[y == 1] >= threshold))
    assert spec == pytest.approx(np.mean(s[y == 0] < threshold))
    metrics = binary_metrics(y, s)
    assert metrics.accuracy == pytest.approx(np.mean((s >= threshold) == (y == 1)))
    assert metrics.n == 80 and metrics.n_positive == int(y.sum())


def test_roc_points_area_equals_auc(rng):
    y = rng.integers(0, 2, 50)
    s = np.round(rng.normal(size=50) + y, 1)
    fpr, tpr, _ = roc_points(y, s)
    assert fpr[0] == 0 and tpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(y, s))  # ties drawn as diagonal steps


def test_bootstrap_interval_is_seeded_and_shrinks_with_more_data(rng):
    def sample(n):
        y = np.r_[np.zeros(n), np.ones(n)]
        return y, rng.normal(size=2 * n) + y

    y, s = sample(40)
    low, high = bootstrap_auc_interval(y, s, n_boot=500, seed=3)
    assert low < roc_auc(y, s) < high
    assert (low, high) == bootstrap_auc_interval(y, s, n_boot=500, seed=3)
    y2, s2 = sample(400)
    low2, high2 = bootstrap_auc_interval(y2, s2, n_boot=300, seed=3)
    assert high2 - low2 < (high - low) / 2  # width ~ 1/sqrt(n): 10× the data, ~3× narrower
    assert np.isnan(bootstrap_auc_interval([0, 1, 1], [0.1, 0.5, 0.7], n_boot=50)[0])


def test_mean_std_is_sample_std():
    mean, std = mean_std([0.9, 0.95, 0.88])
    assert mean == pytest.approx(0.91)
    assert std == pytest.approx(np.sqrt((0.01**2 + 0.04**2 + 0.03**2) / 2))
    assert np.isnan(mean_std([0.8])[1])


def test_multiclass_metrics():
    y = np.array([0, 1, 2, 2])
    p = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.6, 0.3], [0.1, 0.2, 0.7]])
    out = multiclass_metrics(y, p)
    assert out["accuracy"] == 0.75
    assert out["auc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))


def test_bootstrap_rank_statistic_equals_the_one_auc(rng):
    from ppi_cli.reports.metrics import _auc_from_groups

    y = rng.integers(0, 2, 80)
    s = np.round(rng.normal(size=80) + y, 1)  # ties across classes
    assert _auc_from_groups(s[y == 1], s[y == 0]) == pytest.approx(roc_auc(y, s), abs=1e-12)


def test_roc_points_of_one_class_are_rates_not_nan():
    fpr, tpr, thresholds = roc_points([0, 0, 0, 0], [0.1, 0.4, 0.4, 0.9])
    assert fpr.tolist() == [0.0, 0.25, 0.75, 1.0] and tpr.tolist() == [0.0] * 4
    assert thresholds[0] == np.inf and thresholds[1:].tolist() == [0.9, 0.4, 0.1]
