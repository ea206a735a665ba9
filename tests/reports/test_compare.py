# SPDX-License-Identifier: MIT
"""`ppi compare`: pairing by (part, manifest row), DeLong per fold and pooled, and its errors."""

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
    assert list(table.index) == ["fold-0", "fold-1", "fold-2", "pooled"]
    pooled = delong_test(y, a, b)  # row order differs between the runs; pairing must undo it
    assert table.loc["pooled", "difference"] == pytest.approx(pooled.difference)
    assert table.loc["pooled", "p_value"] == pytest.approx(pooled.p_value)
    rows = np.flatnonzero(np.arange(y.size) % 3 == 1)
    assert table.loc["fold-1", "se"] == pytest.approx(delong_test(y[rows], a[rows], b[rows]).se)
    assert table.loc["pooled", "boot_low"] < pooled.difference < table.loc["pooled", "boot_high"]
    assert (tmp_path / "cmp" / "comparison.csv").is_file()
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "DeLong 95% CI" in md and "A = `ppi`, B = `baseline`" in md


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


def test_cli_compare(cli, tmp_path, two_runs):
    *_, run_a, run_b = two_runs
    result = cli("compare", run_a, run_b, "--bootstrap", "50", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["a"] == "ppi" and data["rows"][-1]["part"] == "pooled"
    assert (run_a / "compare-baseline" / "comparison.md").is_file()
    assert "wrote" in result.stderr
    bad = cli("compare", run_a, tmp_path / "nowhere")
    assert bad.exit_code == 1 and bad.stderr.count("\n") == 1 and "no predictions.csv" in bad.stderr
