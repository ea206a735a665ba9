# SPDX-License-Identifier: MIT
"""Paired comparison of two ROC AUCs on the same samples: DeLong's test and a paired bootstrap.

DeLong, DeLong and Clarke-Pearson (Biometrics 44, 1988) estimate the covariance of two correlated
Mann-Whitney AUCs from their *structural components*: for each positive x_i the share of negatives it
out-scores (V10), for each negative y_j the share of positives that out-score it (V01), ties counting
one half. With m positives and n negatives,

    var(AUC_a − AUC_b) = (S10_aa + S10_bb − 2 S10_ab) / m + (S01_aa + S01_bb − 2 S01_ab) / n,

where S10 and S01 are the sample covariance matrices (ddof = 1) of the components across the two
models. The components are computed from mid-ranks in O(N log N) rather than from the m × n kernel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import norm, rankdata

from ppi_cli.errors import DataError

__all__ = ["AucComparison", "structural_components", "delong_test", "delong_interval", "paired_bootstrap_difference"]


@dataclass(frozen=True)
class AucComparison:
    """The result of comparing model A with model B on the same samples (difference = A − B)."""

    auc_a: float
    auc_b: float
    difference: float
    se: float
    z: float
    p_value: float
    ci_low: float
    ci_high: float
    n: int
    n_positive: int

    def to_dict(self) -> dict[str, float | int]:
        """Plain data for a CSV row."""
        return asdict(self)


def _paired_arrays(labels, scores_a, scores_b) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.float64).ravel()
    a = np.asarray(scores_a, dtype=np.float64).ravel()
    b = np.asarray(scores_b, dtype=np.float64).ravel()
    if not a.size == b.size == y.size:
        raise DataError(f"{y.size} labels but {a.size} and {b.size} paired scores",
                        hint="pair predictions by manifest row")
    s = np.vstack([a, b])  # (2, N)
    if not np.all((y == 0) | (y == 1)):
        raise DataError("binary labels must be 0 or 1", hint="check the label column of the predictions")
    if not np.all(np.isfinite(s)):
        raise DataError("scores contain NaN or infinity", hint="re-run the evaluation; the model diverged")
    return y.astype(bool), s


def structural_components(labels: Sequence[float], scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components of each model's AUC.

    Args:
        labels: 0/1 labels, shape (N,).
        scores: One row of scores per model, shape (M, N).

    Returns:
        (V10 of shape (M, m), V01 of shape (M, n)); each row's mean is that model's AUC.
    """
    y = np.asarray(labels).astype(bool)
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))  # (M, N)
    pos, neg = s[:, y], s[:, ~y]  # (M, m), (M, n)
    m, n = pos.shape[1], neg.shape[1]
    rank_all = np.apply_along_axis(rankdata, 1, s)  # (M, N) mid-ranks over everyone
    rank_pos = np.apply_along_axis(rankdata, 1, pos)  # (M, m) mid-ranks among positives
    rank_neg = np.apply_along_axis(rankdata, 1, neg)  # (M, n) mid-ranks among negatives
    # A positive's rank among all, minus its rank among positives, counts the negatives below it (ties ½).
    v10 = (rank_all[:, y] - rank_pos) / n
    # A negative's rank among all, minus its rank among negatives, counts the positives below it.
    v01 = 1.0 - (rank_all[:, ~y] - rank_neg) / m
    return v10, v01


def delong_test(labels: Sequence[float], scores_a: Sequence[float], scores_b: Sequence[float], *,
                level: float = 0.95) -> AucComparison:
    """DeLong's test of H0: AUC_a = AUC_b for two models scored on the same samples.

    Returns the two AUCs, their difference, its standard error, the z statistic, the two-sided p-value
    and a normal-theory interval of the difference. Identical score rankings give se = 0, z = 0, p = 1.

    Raises:
        DataError: Mismatched lengths, non-binary labels, non-finite scores, or fewer than two
            positives or negatives (the covariance needs two of each).

    Example:
        >>> r = delong_test(y, p_ppi, p_baseline); print(r.difference, r.p_value)
    """
    y, s = _paired_arrays(labels, scores_a, scores_b)
    m, n = int(y.sum()), int((~y).sum())
    if m < 2 or n < 2:
        raise DataError(f"DeLong's test needs at least 2 positives and 2 negatives, got {m} and {n}",
                        hint="compare on a larger test set (pool the folds)")
    v10, v01 = structural_components(y, s)
    aucs = v10.mean(axis=1)
    s10, s01 = np.cov(v10), np.cov(v01)  # (2, 2) each, ddof = 1
    contrast = np.array([1.0, -1.0])
    variance = float(contrast @ s10 @ contrast / m + contrast @ s01 @ contrast / n)
    se = float(np.sqrt(max(variance, 0.0)))
    difference = float(aucs[0] - aucs[1])
    if se < 1e-12:  # the two models rank every pair alike: no evidence of a difference
        z, p = 0.0, 1.0
    else:
        z = difference / se
        p = float(2.0 * norm.sf(abs(z)))
    half = float(norm.ppf(0.5 + level / 2.0) * se)
    return AucComparison(float(aucs[0]), float(aucs[1]), difference, se, float(z), p, difference - half,
                         difference + half, int(y.size), m)


def delong_interval(labels: Sequence[float], scores: Sequence[float], *,
                    level: float = 0.95) -> tuple[float, float, float, float]:
    """One model's AUC with DeLong's standard error and normal-theory interval (clipped to [0, 1]).

    var(AUC) = S10 / m + S01 / n, the one-model case of the covariance above.

    Returns:
        (auc, se, low, high).

    Raises:
        DataError: Fewer than two positives or negatives.
    """
    y, s = _paired_arrays(labels, scores, scores)
    m, n = int(y.sum()), int((~y).sum())
    if m < 2 or n < 2:
        raise DataError(f"DeLong's interval needs at least 2 positives and 2 negatives, got {m} and {n}",
                        hint="evaluate on a larger labelled set")
    v10, v01 = structural_components(y, s[:1])
    auc = float(v10.mean())
    se = float(np.sqrt(max(float(np.var(v10[0], ddof=1)) / m + float(np.var(v01[0], ddof=1)) / n, 0.0)))
    half = float(norm.ppf(0.5 + level / 2.0) * se)
    return auc, se, max(auc - half, 0.0), min(auc + half, 1.0)


def paired_bootstrap_difference(labels: Sequence[float], scores_a: Sequence[float], scores_b: Sequence[float], *,
                                n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of AUC_a − AUC_b, resampling samples jointly for both models.

    Positives and negatives are resampled separately (stratified), so every replicate has both classes.

    Returns:
        (low, high); (NaN, NaN) when `n_boot == 0` or a class has fewer than 2 samples.
    """
    y, s = _paired_arrays(labels, scores_a, scores_b)
    pos_idx, neg_idx = np.flatnonzero(y), np.flatnonzero(~y)
    if n_boot <= 0 or pos_idx.size < 2 or neg_idx.size < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    m = pos_idx.size
    diffs = np.empty(n_boot)
    for b in range(n_boot):
        take = np.r_[rng.choice(pos_idx, m), rng.choice(neg_idx, neg_idx.size)]
        # The rank statistic, not roc_auc_score: 15-18x faster per replicate (see metrics._auc_from_groups).
        ranks = np.apply_along_axis(rankdata, 1, s[:, take])  # (2, N): positives first
        aucs = (ranks[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * neg_idx.size)
        diffs[b] = aucs[0] - aucs[1]
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(diffs, [tail, 1.0 - tail])
    return float(low), float(high)
