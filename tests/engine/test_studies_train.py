# SPDX-License-Identifier: MIT
"""Studies with the real trainer on the generated synthetic task (1 epoch, tiny model, 64 samples)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ppi_cli.data.splits import load_split
from ppi_cli.engine.crossval import CrossvalRequest, collect_crossval, crossval_study

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny convolutions run fastest on one thread


@pytest.fixture
def tiny_recipe(tmp_path):
    """The smoke recipe shrunk to one quick epoch on 64 generated 16×16 images."""
    path = tmp_path / "tiny.yaml"
    path.write_text("extends: synthetic-ppi-wbp-cpu\nschedule:\n  epochs: 1\ndata:\n  synthetic_size: 64\n"
                    "  crop: 16\n  batch_size: 16\nmodel:\n  input_size: 16\nppi:\n  start_epoch: 0\n"
                    "eval:\n  bootstrap: 50\n")
    return str(path)


@pytest.mark.slow
def test_fold_jobs_plus_collect_equal_a_single_full_run(tmp_path, tiny_recipe, cli):
    full = cli("crossval", "--recipe", tiny_recipe, "--out", tmp_path / "full", "--folds", "3", "--device", "cpu")
    assert full.exit_code == 0, full.stderr
    for k in (1, 0, 2):  # separate processes of a job array would run in any order
        job = cli("crossval", "--recipe", tiny_recipe, "--out", tmp_path / "jobs", "--folds", "3", "--fold", k,
                  "--device", "cpu")
        assert job.exit_code == 0, job.stderr
        assert not (tmp_path / "jobs" / "summary.md").exists() or k == 2
    collected = cli("crossval", "--out", tmp_path / "jobs", "--collect", "--bootstrap", "50")
    assert collected.exit_code == 0, collected.stderr
    a = pd.read_csv(tmp_path / "full" / "predictions.csv")
    b = pd.read_csv(tmp_path / "jobs" / "predictions.csv")
    pd.testing.assert_frame_equal(a, b)  # same rows, same folds, same scores: training is deterministic on CPU
    for name in ("folds.csv", "summary.md", "folds.json"):
        assert (tmp_path / "full" / name).read_text() == (tmp_path / "jobs" / name).read_text(), name
    assert sorted(a["index"]) == list(range(64))
    split = load_split(tmp_path / "full" / "fold-2" / "split.json")
    assert np.array_equal(np.sort(a.loc[a["part"] == "fold-2", "index"]), split.test)
    for k in range(3):
        assert (tmp_path / "full" / f"fold-{k}" / "best.pt").is_file()
    assert "AUC" in full.stdout


def test_rerun_reuses_finished_folds(tmp_path, tiny_recipe):
    request = CrossvalRequest(recipe=tiny_recipe, out=tmp_path / "cv", folds=2, device="cpu", bootstrap=0)
    first = crossval_study(request)
    assert first.ran == [0, 1] and first.summary is not None
    stamp = (tmp_path / "cv" / "fold-0" / "best.pt").stat().st_mtime_ns
    again = crossval_study(request)
    assert again.ran == [] and (tmp_path / "cv" / "fold-0" / "best.pt").stat().st_mtime_ns == stamp
    assert collect_crossval(tmp_path / "cv", bootstrap=0).summary.headline == first.summary.headline


def test_cross_site_cli_on_the_synthetic_sites(tmp_path, tiny_recipe, cli):
    # The synthetic task has two sites; its spurious cue predicts the label at A only. The recipe's collapse guard
    # compares with the run without PPI, which is the baseline arm: read, not trained again in baseline-fallback/.
    guarded = tmp_path / "guarded.yaml"
    guarded.write_text(Path(tiny_recipe).read_text().replace(
        "  start_epoch: 0\n", "  start_epoch: 0\n  fallback_drop: 1.0\n  fallback_against: baseline\n"))
    result = cli("cross-site", "--recipe", guarded, "--train", "A", "--test", "B", "--baseline",
                 "--out", tmp_path / "xs", "--device", "cpu", "--bootstrap", "20")
    assert result.exit_code == 0, result.stderr
    assert not (tmp_path / "xs" / "ppi" / "train-A" / "baseline-fallback").exists()
    assert f"the recipe without PPI is the finished run in {tmp_path / 'xs' / 'baseline' / 'train-A'}" in result.stderr
    cells = pd.read_csv(tmp_path / "xs" / "cells.csv")
    assert sorted(zip(cells["variant"], cells["test_site"], strict=True)) == [
        ("baseline", "A"), ("baseline", "B"), ("ppi", "A"), ("ppi", "B")]
    held = load_split(tmp_path / "xs" / "ppi" / "train-A" / "split.json").test
    preds = pd.read_csv(tmp_path / "xs" / "ppi" / "predictions.csv")
    assert np.array_equal(np.sort(preds.loc[preds["part"] == "A>A", "index"]), held)
    assert "cross-site AUC (ppi)" in result.stdout and (tmp_path / "xs" / "heatmap.png").is_file()
    assert (tmp_path / "xs" / "compare" / "comparison.md").is_file()
    # The reading of PPI against its baseline: printed, and in cross_site.md, from the two matrices' row A.
    assert "did PPI help here?" in result.stdout and "training row(s)" in result.stdout
    matrices = {v: pd.read_csv(tmp_path / "xs" / f"matrix-{v}.csv", index_col=0) for v in ("ppi", "baseline")}
    delta = matrices["ppi"].loc["A", "B"] - matrices["baseline"].loc["A", "B"]
    room = 1 - matrices["baseline"].loc["A", "B"]  # the most any model could gain at B
    assert f"{delta:+.3f} of the {room:+.3f} the baseline leaves (" in (tmp_path / "xs" / "cross_site.md").read_text()


@pytest.mark.slow
def test_train_fold_2_and_crossval_fold_2_write_the_same_split(tmp_path, tiny_recipe, cli):
    trained = cli("train", "--recipe", tiny_recipe, "--fold", "2", "--out", tmp_path / "train", "--device", "cpu")
    assert trained.exit_code == 0, trained.stderr
    crossval = cli("crossval", "--recipe", tiny_recipe, "--fold", "2", "--out", tmp_path / "cv", "--device", "cpu")
    assert crossval.exit_code == 0, crossval.stderr
    a = (tmp_path / "train" / "split.json").read_text()
    b = (tmp_path / "cv" / "fold-2" / "split.json").read_text()
    assert a == b  # one resolve-and-split path: the same rows train, validate and test
    split = load_split(tmp_path / "train" / "split.json")
    assert split.fold == 2 and split.val.size > 0 and split.test.size > 0
