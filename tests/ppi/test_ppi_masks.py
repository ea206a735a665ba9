# SPDX-License-Identifier: MIT
"""Masks against naive per-image formulas written with NumPy loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ppi_cli.errors import ConfigError
from ppi_cli.ppi.masks import (
    adaptive_soft_mask,
    box_mask,
    hard_mask,
    intervene,
    intervention_mask,
    keep_top_k,
    soft_mask,
)


def _maps(rng, b=3, h=9, w=7) -> torch.Tensor:
    s = rng.normal(size=(b, 1, h, w))
    s[1] *= 1e-3  # saliency scales differ wildly between images
    return torch.from_numpy(s)


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def test_soft_mask_matches_eq_2_on_max_normalised_saliency(rng):
    s = _maps(rng)
    got = soft_mask(s, sigma=0.4, omega=15.0).numpy()
    for i, img in enumerate(s.numpy()):
        assert np.allclose(got[i], _sigmoid(15.0 * (img / img.max() - 0.4)))


def test_adaptive_soft_mask_threshold_is_mean_plus_c_std(rng):
    s = _maps(rng)
    got = adaptive_soft_mask(s, c=1.5, omega=10.0).numpy()
    for i, img in enumerate(s.numpy()):
        n = img / img.max()
        sigma = n.mean() + 1.5 * n.std()  # NumPy's std is the population std
        assert np.allclose(got[i], _sigmoid(10.0 * (n - sigma)))


def test_hard_mask_keeps_points_above_c_std(rng):
    s = _maps(rng)
    got = hard_mask(s, c=0.8).numpy()
    for i, img in enumerate(s.numpy()):
        assert np.array_equal(got[i], (img > 0.8 * img.std()).astype(float))
    assert set(np.unique(got)) <= {0.0, 1.0}


def _naive_box(img: np.ndarray, c: float, spread: float) -> np.ndarray:
    pts = [(y, x) for y in range(img.shape[0]) for x in range(img.shape[1]) if img[y, x] > c * img.std()]
    out = np.zeros_like(img)
    if not pts:
        return out
    ys, xs = np.array(pts, dtype=float).T
    hy, hx = max(spread * ys.std(), 0.5), max(spread * xs.std(), 0.5)
    for y in range(img.shape[0]):
        for x in range(img.shape[1]):
            out[y, x] = float(abs(y - ys.mean()) <= hy and abs(x - xs.mean()) <= hx)
    return out


def test_box_mask_is_centre_of_mass_plus_spread_std(rng):
    s = _maps(rng)
    s[2] = 0.0  # no point above threshold: nothing removed
    s[2, 0, 4, 3] = 5.0  # ... except one point: a one-pixel box
    for spread in (1.0, 2.0):
        got = box_mask(s, c=1.0, spread=spread).numpy()
        for i, img in enumerate(s.numpy()):
            assert np.array_equal(got[i, 0], _naive_box(img[0], 1.0, spread)), (i, spread)
    assert box_mask(torch.zeros(1, 1, 5, 5), c=1.0, spread=2.0).sum() == 0


def test_box_contains_the_union_bound_share_of_points(rng):
    for _ in range(20):
        s = torch.from_numpy(rng.normal(size=(1, 1, 24, 24)) ** 3)
        points, box = hard_mask(s, 1.0), box_mask(s, 1.0, spread=2.0)
        inside = (points * box).sum() / points.sum()
        assert inside >= 1 - 2 / 2.0**2


def test_top_k_keeps_the_k_largest(rng):
    s = _maps(rng)
    got = keep_top_k(s, 5).numpy()
    for i, img in enumerate(s.numpy()):
        flat = img.ravel()
        keep = np.zeros_like(flat)
        keep[np.argsort(flat)[-5:]] = 1
        assert np.allclose(got[i].ravel(), flat * keep)
    assert keep_top_k(s, 0) is s
    masked = intervention_mask(s, "hard", c=0.0, top_k=5)
    assert torch.all(masked.flatten(1).sum(1) <= 5)


def test_intervene_zeroes_masked_pixels_in_every_channel(rng):
    x = torch.from_numpy(rng.uniform(size=(2, 3, 4, 4)))
    mask = torch.from_numpy(rng.uniform(size=(2, 1, 4, 4)))
    got = intervene(x, mask)
    for c in range(3):
        assert torch.allclose(got[:, c], (1 - mask[:, 0]) * x[:, c])


def test_soft_masks_carry_gradient_and_hard_masks_do_not(rng):
    s = _maps(rng).requires_grad_(True)
    for kind in ("soft", "soft-adaptive"):
        (g,) = torch.autograd.grad(intervention_mask(s, kind).sum(), s)
        assert g.abs().sum() > 0
    for kind in ("hard", "box"):
        assert not intervention_mask(s, kind).requires_grad
    with pytest.raises(ConfigError, match="unknown mask"):
        intervention_mask(s, "blur")


def test_top_k_mask_removes_exactly_the_budget_of_largest_values(rng):
    s = _maps(rng)  # (3, 1, 9, 7): 63 pixels
    for kwargs, k in (({"top_k": 5}, 5), ({"coverage": 0.1}, 6), ({"coverage": 0.0}, 1), ({"top_k": 99}, 63)):
        mask = intervention_mask(s, "top-k", **kwargs).numpy()
        for i in range(s.shape[0]):
            values = s[i, 0].numpy().ravel()
            expected = np.zeros(values.size)
            expected[np.argsort(-values, kind="stable")[:k]] = 1
            assert np.array_equal(mask[i, 0].ravel(), expected)  # the same k for a tiny-scale map (image 1)


def test_soft_mask_with_coverage_centres_on_the_per_image_quantile(rng):
    s = _maps(rng)
    omega = 30.0
    mask = soft_mask(s, sigma=0.5, omega=omega, coverage=0.2).numpy()
    for i in range(s.shape[0]):
        s_hat = s[i, 0].numpy() / max(s[i, 0].numpy().max(), 1e-12)
        sigma_i = np.quantile(s_hat.ravel(), 0.8)
        assert np.allclose(mask[i, 0], _sigmoid(omega * (s_hat - sigma_i)), atol=1e-6)
        assert abs((mask[i, 0] > 0.5).mean() - 0.2) < 0.02  # about the budget, whatever the image's scale


def test_blur_fill_is_scipys_gaussian_filter_and_fills_only_the_mask(rng):
    from scipy.ndimage import gaussian_filter

    from ppi_cli.ppi.masks import blurred

    x = torch.from_numpy(rng.random((2, 1, 20, 24)))
    smooth = blurred(x, 2.0).numpy()
    for i in range(2):  # torch's reflect padding is SciPy's "mirror" mode; the kernel is cut at 3 sigma in both
        assert np.allclose(smooth[i, 0], gaussian_filter(x[i, 0].numpy(), 2.0, mode="mirror", truncate=3.0))
    mask = torch.zeros(2, 1, 20, 24, dtype=x.dtype)
    mask[:, :, 5:9, 6:12] = 1.0
    out = intervene(x, mask, torch.from_numpy(smooth))
    assert torch.equal(out[mask.expand_as(x) == 0], x[mask.expand_as(x) == 0])
    assert torch.allclose(out[:, :, 5:9, 6:12], torch.from_numpy(smooth)[:, :, 5:9, 6:12])
    assert torch.equal(intervene(x, mask), x * (1 - mask))  # no fill: the paper's zeros
