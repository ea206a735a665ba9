# SPDX-License-Identifier: MIT
"""Localisation scores against hand-computed values on tiny maps, and against naive references."""

from __future__ import annotations

import numpy as np
import pytest

from ppi_cli.reports.localisation import (
    best_threshold,
    binarise_threshold,
    binarise_top_percent,
    dice,
    energy_pointing_game,
    iou,
    pointing_game_hit,
    top_mass_bbox,
)

# Positive part ranks 4 (flat 8), 3 (flat 0), 2 (flat 3), 1 (flat 4); the mask holds flat 0 and 3.
S = np.array([[3.0, -1.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 4.0]])
M = np.array([[1, 0, 0], [1, 0, 0], [0, 0, 0]], dtype=np.uint8)


def test_energy_pointing_game_by_hand():
    got = energy_pointing_game(S, M, points=(1, 2, 3, 4, 100, None))
    assert got == pytest.approx({"1": 0.0, "2": 3 / 7, "3": 5 / 9, "4": 5 / 10, "100": 0.5, "all": 0.5})


def test_energy_pointing_game_of_an_empty_map_is_nan():
    got = energy_pointing_game(-np.ones((3, 3)), M, points=(2, None))
    assert np.isnan(got["2"]) and np.isnan(got["all"])


def _naive_energy(s, m, k):
    pos = [max(float(v), 0.0) for v in s.ravel()]
    inside = [bool(v) for v in m.ravel()]
    ranked = sorted(range(len(pos)), key=lambda i: (-pos[i], i))[:k]
    total = sum(pos[i] for i in ranked)
    return sum(pos[i] for i in ranked if inside[i]) / total


def test_energy_pointing_game_matches_naive_reference(rng):
    for _ in range(5):
        s = rng.normal(size=(12, 9))
        m = rng.random((12, 9)) < 0.3
        got = energy_pointing_game(s, m, points=(1, 7, 30, None))
        for k, key in ((1, "1"), (7, "7"), (30, "30"), (s.size, "all")):
            assert got[key] == pytest.approx(_naive_energy(s, m, k))


def test_pointing_game_by_hand():
    assert pointing_game_hit(S, M) is False  # the peak (2, 2) lies outside
    assert pointing_game_hit(S, M, tolerance=2.0) is False  # nearest mask pixel (1, 0) is sqrt(5) away
    assert pointing_game_hit(S, M, tolerance=2.3) is True
    assert pointing_game_hit(np.where(S == 4, 0, S), M) is True  # next peak is 3 at (0, 0)
    assert pointing_game_hit(np.zeros((3, 3)), np.ones((3, 3))) is False  # points nowhere


def test_dice_and_iou_by_hand():
    pred = np.array([[1, 1, 0], [0, 0, 0]])
    mask = np.array([[0, 1, 1], [0, 0, 1]])
    assert dice(pred, mask) == pytest.approx(2 * 1 / (2 + 3))
    assert iou(pred, mask) == pytest.approx(1 / 4)
    assert dice(np.zeros(3), np.zeros(3)) == 1.0 and iou(np.zeros(3), np.zeros(3)) == 1.0
    assert dice(np.zeros(3), np.ones(3)) == 0.0


def test_binarisation_by_hand():
    assert np.flatnonzero(binarise_threshold(S, 0.5)).tolist() == [0, 3, 8]  # 3/4, 2/4, 4/4 >= 0.5
    assert np.flatnonzero(binarise_threshold(S, 0.8)).tolist() == [8]
    assert dice(binarise_threshold(S, 0.5), M) == pytest.approx(0.8)
    assert iou(binarise_threshold(S, 0.5), M) == pytest.approx(2 / 3)
    assert np.flatnonzero(binarise_top_percent(S, 34)).tolist() == [0, 3, 4, 8]  # ceil(9 * 0.34) = 4
    # Only 4 pixels are positive: the top 90 % never takes a pixel without evidence.
    assert binarise_top_percent(S, 90).sum() == 4


def test_best_threshold_by_hand():
    s2 = np.array([[0.0, 5.0], [1.0, 0.0]])
    m2 = np.array([[0, 1], [0, 0]])
    got = best_threshold([S, s2], [M, m2], thresholds=(0.25, 0.5, 0.9))
    # Dice per threshold: A = 2/3, 0.8, 0; B = 1, 1, 1 -> means 0.833, 0.9, 0.5.
    assert got.threshold == 0.5
    assert got.dice == pytest.approx(0.9)
    assert got.iou == pytest.approx((2 / 3 + 1) / 2)
    assert got.per_sample_dice == pytest.approx((0.8, 1.0))
    with pytest.raises(ValueError):
        best_threshold([], [])


def test_top_mass_bbox_by_hand():
    assert top_mass_bbox(S, 1.0) == [(2, 2), (2, 2)]
    assert top_mass_bbox(S, 40.0) == [(0, 2), (0, 2)]  # flat 0, 3, 4, 8
    assert top_mass_bbox(np.zeros((4, 4)), 1.0) is None
    vol = np.zeros((3, 5, 5))
    vol[1, 2:4, 1] = 1.0
    assert top_mass_bbox(vol, 2 / 75 * 100) == [(1, 1), (2, 3), (1, 1)]


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shape"):
        energy_pointing_game(np.zeros((3, 3)), np.zeros((3, 4)))


def _blob(shape, centre, sigma):
    rows, cols = np.indices(shape)
    return np.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / (2 * sigma**2))


def test_lesion_map_beats_spurious_cue_map(rng):
    """A synthetic scan: a lesion disc (the mask) and a bright corner mark (the spurious cue)."""
    shape = (64, 64)
    rows, cols = np.indices(shape)
    lesion = (rows - 22) ** 2 + (cols - 26) ** 2 <= 7**2
    noise = 0.05 * rng.random(shape)
    on_lesion = _blob(shape, (22, 26), 4.0) + noise
    on_cue = _blob(shape, (56, 56), 3.0) + 0.2 * _blob(shape, (22, 26), 4.0) + noise
    good = energy_pointing_game(on_lesion, lesion)
    bad = energy_pointing_game(on_cue, lesion)
    for key in good:
        assert good[key] > bad[key], (key, good[key], bad[key])
    assert pointing_game_hit(on_lesion, lesion) and not pointing_game_hit(on_cue, lesion)
    assert best_threshold([on_lesion], [lesion]).dice > best_threshold([on_cue], [lesion]).dice
    assert dice(binarise_top_percent(on_lesion, 5), lesion) > dice(binarise_top_percent(on_cue, 5), lesion)


def test_deletion_scores_by_hand(tmp_path):
    import torch

    from ppi_cli.reports.deletion import delete_top_pixels, deletion_scores, plot_deletion_curves
    from ppi_cli.reports.dicom_sc import read_png_rgb

    x = torch.ones(2, 2, 3, dtype=torch.float64)  # (C, H, W)
    weights = torch.arange(1, 7, dtype=torch.float64).reshape(2, 3)
    saliency = np.array([[5.0, 1.0, 0.0], [3.0, -2.0, 4.0]])  # removal order: flat 0, 5, 3, 1, 2, 4
    fractions = (0.0, 1 / 6, 0.5, 1.0)

    def score(batch):  # (F, C, H, W) -> (F,): channel 0 weighted by position, channel 1 ignored
        return (batch[:, 0] * weights).sum(dim=(1, 2))

    got = deletion_scores(score, torch.stack([x, 2 * x]), np.stack([saliency, -saliency]), fractions)
    assert got[0].tolist() == [21.0, 20.0, 10.0, 0.0]
    # Negated map: ranks by positive part, so flat 4 (now +2) goes first, then raster order of the zeros.
    assert got[1].tolist() == [42.0, 32.0, 42.0 - 2 * (5 + 1 + 2), 0.0]
    got = got[0]
    batch = delete_top_pixels(x, saliency, fractions, fill=-1.0)
    assert batch.shape == (4, 2, 2, 3) and (batch[1, :, 0, 0] == -1).all() and (batch[1, :, 1, 2] == 1).all()
    assert torch.equal(x, torch.ones_like(x))  # the input itself is untouched
    with pytest.raises(ValueError):
        delete_top_pixels(x, saliency, (1.5,))
    png = plot_deletion_curves(tmp_path / "d.png", fractions, {"wbp": got[0] - got, "gradient": np.zeros(4)})
    assert read_png_rgb(png).shape == (440, 640, 3)
