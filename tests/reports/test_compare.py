# SPDX-License-Identifier: MIT
"""`ppi compare`: pairing by (part, manifest row), DeLong per fold, the per-fold paired headline, its errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ppi_cli.errors import DataError
from ppi_cli.reports.compare import compare_runs
from ppi_cli.reports.delong import delong_test
from ppi_cli.reports.predictions import read_predictions, write_predictions


def make_run(root, name, y, scores, n_folds=3, shuffle_seed=None):
    """A crossval-like run folder: fold-k/predictions.csv, rows optionally written in another order."""
    run = root / name
    folds = np.arange(y.size) % n_folds
    for k in range(n_folds):
        rows = np.flatnonzero(folds == k)
        if shuffle_seed is not None:
            rows = np.random.default_rng(shuffle_seed + k).permutation(rows)
        write_predictions(run / f"fold-{k}" / "predictions.csv", f"fold-{k}", rows, y[rows], scores[rows])
    return run


@pytest.fixture
def two_runs(tmp_path, rng):
    y = np.tile([0, 1], 60)
    a = rng.normal(size=y.size) + 1.2 * y
    b = 0.5 * a + rng.normal(size=y.size) + 0.3 * y
    return y, a, b, make_run(tmp_path, "ppi", y, a), make_run(tmp_path, "baseline", y, b, shuffle_seed=5)


def test_pairs_by_manifest_row_and_matches_delong_on_each_part(tmp_path, two_runs):
    y, a, b, run_a, run_b = two_runs
    result = compare_runs(run_a, run_b, tmp_path / "cmp", n_boot=200, seed=0)
    table = result.table.set_index("part")
    assert list(table.index) == ["fold-0", "fold-1", "fold-2"]  # no test of predictions pooled over models
    for k in range(3):  # row order differs between the runs; pairing must undo it
        rows = np.flatnonzero(np.arange(y.size) % 3 == k)
        fold = delong_test(y[rows], a[rows], b[rows])
        assert table.loc[f"fold-{k}", "difference"] == pytest.approx(fold.difference)
        assert table.loc[f"fold-{k}", "se"] == pytest.approx(fold.se)
        assert table.loc[f"fold-{k}", "p_value"] == pytest.approx(fold.p_value)
        assert table.loc[f"fold-{k}", "boot_low"] < fold.difference < table.loc[f"fold-{k}", "boot_high"]
    for stem in ("comparison", "paired"):
        assert (tmp_path / "cmp" / f"{stem}.csv").is_file() and (tmp_path / "cmp" / f"{stem}.md").is_file()
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "A = `ppi`, B = `baseline`" in md and "pooled" not in md.split("## Per part")[1]
    assert md.index("Headline: mean paired ΔAUC per fold") < md.index("## Per part")


# Three folds of two negatives and two positives; AUCs by counting the four (negative, positive) pairs.
HAND = {  # fold: (labels, A's scores, B's scores, A's AUC, B's AUC)
    0: ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], [0.1, 0.8, 0.2, 0.9], 4 / 4, 3 / 4),
    1: ([0, 0, 1, 1], [0.3, 0.6, 0.5, 0.9], [0.2, 0.1, 0.4, 0.3], 3 / 4, 4 / 4),
    2: ([0, 0, 1, 1], [0.4, 0.1, 0.3, 0.9], [0.5, 0.6, 0.55, 0.2], 3 / 4, 1 / 4),
}


def _hand_runs(root, parts):
    for name, column in (("a", 1), ("b", 2)):
        for k, part in enumerate(parts):
            y, scores = np.array(HAND[k][0]), np.array(HAND[k][column])
            rows = np.arange(4) + 4 * k
            write_predictions(root / name / part.replace(">", "-") / "predictions.csv", part, rows, y, scores)
    return root / "a", root / "b"


def test_headline_is_the_mean_per_fold_difference_with_a_t_interval_by_hand(tmp_path):
    run_a, run_b = _hand_runs(tmp_path, ["fold-0", "fold-1", "fold-2"])
    result = compare_runs(run_a, run_b, tmp_path / "cmp", n_boot=0)
    d = [1 - 0.75, 0.75 - 1, 0.75 - 0.25]  # 0.25, -0.25, 0.5
    assert result.table["difference"].tolist() == pytest.approx(d)
    mean = (0.25 - 0.25 + 0.5) / 3
    std = (((0.25 - mean) ** 2 + (-0.25 - mean) ** 2 + (0.5 - mean) ** 2) / 2) ** 0.5
    half = 4.302653 * std / 3 ** 0.5  # t quantile 0.975 with 2 degrees of freedom
    t = mean / (std / 3 ** 0.5)
    p = 1 - abs(t) / (2 + t * t) ** 0.5  # two-sided, from the closed-form CDF of t with 2 degrees of freedom
    head = result.headline
    assert head["difference"] == pytest.approx(mean) and head["std"] == pytest.approx(std)
    assert (head["ci_low"], head["ci_high"]) == pytest.approx((mean - half, mean + half), abs=1e-6)
    assert head["t"] == pytest.approx(t) and head["p_value"] == pytest.approx(p)
    assert head["auc_a"] == pytest.approx((1 + 0.75 + 0.75) / 3) and head["auc_b"] == pytest.approx(2 / 3)
    assert head["n_pairs"] == 3 and head["parts"] == 3
    paired = pd.read_csv(tmp_path / "cmp" / "paired.csv")
    assert paired["pair"].tolist() == ["fold-0", "fold-1", "fold-2", "mean"]
    assert paired["difference"].tolist() == pytest.approx([*d, mean])
    assert "per fold: fold-0 0.250, fold-1 -0.250, fold-2 0.500" in result.summary
    assert f"[{mean - half:.3f}, {mean + half:.3f}]" in result.summary
    assert "| mean | 3 |" in (tmp_path / "cmp" / "paired.md").read_text()


def test_cross_site_cells_pair_by_training_site_over_the_other_sites(tmp_path):
    run_a, run_b = _hand_runs(tmp_path, ["A>A", "A>B", "B>A"])  # B's own hold-out not run
    result = compare_runs(run_a, run_b, tmp_path / "cmp", n_boot=0)
    assert result.table["part"].tolist() == ["A>A", "A>B", "B>A"]  # DeLong per cell: one model, one test set
    pairs = result.paired.set_index("pair")
    # A: its cross-site cell A>B only (not its hold-out A>A); B: its one cell B>A.
    assert pairs.loc["A", "difference"] == pytest.approx(-0.25) and pairs.loc["A", "parts"] == 1
    assert pairs.loc["B", "difference"] == pytest.approx(0.5)
    assert result.headline["difference"] == pytest.approx(0.125) and result.headline["n_pairs"] == 2
    assert "over 2 training sites" in result.summary


def test_mismatched_samples_and_labels_are_one_line_errors(tmp_path, two_runs):
    y, a, b, run_a, _ = two_runs
    short = make_run(tmp_path, "short", y[:-3], b[:-3])
    with pytest.raises(DataError, match="not evaluated on the same samples"):
        compare_runs(run_a, short, tmp_path / "x", n_boot=0)
    flipped = make_run(tmp_path, "flipped", 1 - y, b)
    with pytest.raises(DataError, match="has label"):
        compare_runs(run_a, flipped, tmp_path / "x", n_boot=0)
    with pytest.raises(DataError, match="no predictions.csv"):
        compare_runs(run_a, tmp_path / "empty", tmp_path / "x", n_boot=0)


def test_collected_file_and_duplicates(tmp_path):
    path = tmp_path / "p.csv"
    pd.DataFrame({"part": ["fold-0", "fold-0"], "index": [3, 3], "label": [0, 0], "score": [0.1, 0.2]}).to_csv(
        path, index=False)
    with pytest.raises(DataError, match="row 3 of part fold-0 appears twice"):
        read_predictions(path)


def test_multiclass_runs_use_mcnemar(tmp_path, rng):
    y = rng.integers(0, 3, 90)
    good = np.eye(3)[y] + 0.3 * rng.random((90, 3))
    noisy = rng.random((90, 3))
    for name, scores in (("a", good), ("b", noisy)):
        write_predictions(tmp_path / name / "predictions.csv", "test", np.arange(90), y, scores)
    table = compare_runs(tmp_path / "a", tmp_path / "b", tmp_path / "cmp", n_boot=100).table
    row = table.iloc[0]
    assert row["accuracy_a"] == 1.0
    assert row["discordant_a"] == int(np.sum(noisy.argmax(1) != y)) and row["discordant_b"] == 0
    assert row["p_value"] == pytest.approx(2 * 0.5 ** row["discordant_a"])
    head = compare_runs(tmp_path / "a", tmp_path / "b", tmp_path / "cmp", n_boot=0).headline
    assert head["difference"] == pytest.approx(row["difference"]) and head["ci_low"] is None  # one part


def test_cli_compare(cli, tmp_path, two_runs):
    *_, run_a, run_b = two_runs
    result = cli("compare", run_a, run_b, "--bootstrap", "50", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["a"] == "ppi" and [r["part"] for r in data["rows"]] == ["fold-0", "fold-1", "fold-2"]
    assert data["paired"][-1]["pair"] == "mean" and data["headline"]["n_pairs"] == 3
    assert (run_a / "compare-baseline" / "comparison.md").is_file()
    assert "wrote" in result.stderr
    bad = cli("compare", run_a, tmp_path / "nowhere")
    assert bad.exit_code == 1 and bad.stderr.count("\n") == 1 and "no predictions.csv" in bad.stderr
