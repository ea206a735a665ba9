# SPDX-License-Identifier: MIT
"""The paper figures: mean ROC with its band, calibration, the confusion matrix at the operating
thresholds, the case gallery; each a 300-dpi PNG with a PDF beside it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ppi_cli.checkpoint import save_checkpoint
from ppi_cli.engine.crossval import fold_thresholds
from ppi_cli.reports.crossval_report import write_crossval_report
from ppi_cli.reports.plots import (
    calibration_figure,
    confusion_counts,
    confusion_figure,
    gallery_figure,
    mean_roc,
    mean_roc_figure,
)


def made_up_folds(rng, k=4, n=30):
    folds = []
    for _ in range(k):
        y = np.r_[np.zeros(n // 2, int), np.ones(n - n // 2, int)]
        folds.append((y, 1 / (1 + np.exp(-(rng.normal(size=n) + 1.2 * y)))))
    return folds


def assert_png_and_pdf(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.info["dpi"][0] == pytest.approx(300, abs=1)
    assert path.with_suffix(".pdf").read_bytes().startswith(b"%PDF")


def test_each_figure_writes_a_300_dpi_png_and_a_pdf(tmp_path, rng):
    folds = made_up_folds(rng)
    y = np.concatenate([f[0] for f in folds])
    s = np.concatenate([f[1] for f in folds])
    image = rng.normal(size=(24, 24))
    mask = np.zeros((24, 24))
    mask[8:16, 8:16] = 1
    cases = [{"name": f"case {i}", "image": image, "mask": mask if i else None,
              "maps": {"baseline": rng.random((24, 24)), "PPI + WBP": rng.random((24, 24))}} for i in range(2)]
    written = [mean_roc_figure({"baseline": folds, "ppi": folds}, tmp_path / "roc_mean.png"),
               calibration_figure(y, s, tmp_path / "calibration.png"),
               confusion_figure(confusion_counts([(y, s, 0.5)]), tmp_path / "confusion.png", note="at 0.5"),
               gallery_figure(cases, tmp_path / "gallery.png")]
    for path in written:
        assert_png_and_pdf(path)
    assert not list(tmp_path.glob(".*.tmp"))


def test_confusion_counts_match_a_hand_count_at_each_folds_threshold():
    fold0 = (np.array([0, 0, 1, 1, 1]), np.array([0.1, 0.6, 0.6, 0.4, 0.9]), 0.5)  # TN 1, FP 1, FN 1, TP 2
    fold1 = (np.array([0, 1, 0, 1]), np.array([0.3, 0.3, 0.2, 0.8]), 0.3)  # at >= 0.3: TN 1, FP 1, FN 0, TP 2
    assert confusion_counts([fold0]).tolist() == [[1, 1], [1, 2]]
    assert confusion_counts([fold1]).tolist() == [[1, 1], [0, 2]]
    assert confusion_counts([fold0, fold1]).tolist() == [[2, 2], [1, 4]]
    assert confusion_counts([(fold1[0], fold1[1], 0.31)]).tolist() == [[2, 0], [1, 1]]


def test_mean_roc_band_holds_the_mean_of_the_folds_curves(rng):
    folds = made_up_folds(rng, k=5)
    grid, mean, low, high, tprs = mean_roc(folds)
    assert tprs.shape == (5, grid.size)
    assert np.allclose(mean, tprs.mean(axis=0))
    assert np.all(low <= mean + 1e-12) and np.all(mean <= high + 1e-12)
    assert np.all((0 <= low) & (high <= 1)) and mean[-1] == 1.0
    # A hand case: scores 0.9 (pos), 0.8 (neg), 0.7 (pos), 0.1 (neg): steps at fpr 0, 0.5, 1.
    _, one, lo, hi, _ = mean_roc([(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1]))], grid=5)
    assert one.tolist() == [0.5, 0.5, 1.0, 1.0, 1.0] and lo.tolist() == one.tolist() == hi.tolist()


def test_crossval_report_draws_the_confusion_matrix_at_the_folds_own_thresholds(tmp_path, rng):
    folds = made_up_folds(rng, k=3, n=20)
    frame = pd.DataFrame([{"part": f"fold-{k}", "index": k * 100 + i, "label": int(y), "score": float(s)}
                          for k, (ys, ss) in enumerate(folds) for i, (y, s) in enumerate(zip(ys, ss, strict=True))])
    thresholds = {"fold-0": (0.5, "validation Youden J"), "fold-1": (0.6, "validation Youden J"),
                  "fold-2": (0.4, "default 0.5 (no validation split)")}
    write_crossval_report(frame, tmp_path, title="made up", n_boot=0, thresholds=thresholds)
    for name in ("roc_mean.png", "calibration.png", "confusion.png"):
        assert_png_and_pdf(tmp_path / name)
    (tn, fp), (fn, tp) = confusion_counts([(y, s, thresholds[f"fold-{k}"][0]) for k, (y, s) in enumerate(folds)])
    summary = (tmp_path / "summary.md").read_text()
    assert f"{tp} true positives, {fn} false negatives, {tn} true negatives, {fp} false positives" in summary
    assert "validation Youden J: 2 of 3 folds; default 0.5 (no validation split): 1 of 3 folds" in summary
    assert "](confusion.png)" in summary and "](roc_mean.png)" in summary and "](calibration.png)" in summary
    other = tmp_path / "partial"
    write_crossval_report(frame, other, title="made up", n_boot=0, thresholds={"fold-0": (0.5, "validation Youden J")})
    assert not (other / "confusion.png").exists()
    assert "No confusion matrix" in (other / "summary.md").read_text()


def test_fold_thresholds_read_each_folds_best_checkpoint(tmp_path):
    for k, meta in enumerate([{"threshold": {"value": 0.42, "source": "validation Youden J"}}, {}]):
        (tmp_path / f"fold-{k}").mkdir()
        save_checkpoint(tmp_path / f"fold-{k}" / "best.pt", {"w": torch.zeros(1)}, meta)
    (tmp_path / "fold-2").mkdir()
    (tmp_path / "fold-2" / "best.pt").write_text("not a checkpoint")
    assert fold_thresholds(tmp_path, 4) == {"fold-0": (pytest.approx(0.42), "validation Youden J")}
