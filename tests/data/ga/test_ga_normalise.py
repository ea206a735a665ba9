# SPDX-License-Identifier: MIT
"""Site-config normalisation: intensity, padding and resampling against naive references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ppi_cli.config.site import Geometry, Intensity, Padding, SiteConfig
from ppi_cli.data.ga.normalise import (
    bscan_indices,
    normalise_mask,
    normalise_volume,
    parse_bscan_size,
    percentile_uint8,
    preprocess_volume,
)
from ppi_cli.errors import ConfigError, DataError


def site(rule="none", width=64, target=None, method="none", low=0.5, high=99.5) -> SiteConfig:
    return SiteConfig(site="X", geometry=Geometry(n_bscans=4, height=8, width=width),
                      padding=Padding(rule=rule, target_width=target),
                      intensity=Intensity(method=method, low_percentile=low, high_percentile=high))


def test_edge_repeat_pads_with_the_border_columns(rng):
    raw = rng.integers(0, 256, size=(4, 8, 48), dtype=np.uint8)
    out, record = normalise_volume(raw, site("edge-repeat", width=64), 4, (8, 64))
    assert out.shape == (4, 8, 64) and (record["pad_left"], record["pad_right"]) == (8, 8)
    assert np.array_equal(out[..., 8:56], raw)
    assert np.array_equal(out[..., :8], np.repeat(raw[..., :1], 8, axis=2))
    assert np.array_equal(out[..., 56:], np.repeat(raw[..., -1:], 8, axis=2))
    assert record["padding"] == "edge-repeat 48->64 (8 left, 8 right)"


def test_reflect_zero_target_width_and_no_padding(rng):
    raw = rng.integers(1, 256, size=(2, 4, 5), dtype=np.uint8)
    out, _ = normalise_volume(raw, site("reflect", width=9), 2, (4, 9))
    assert np.array_equal(out[..., :2], raw[..., 2:0:-1])  # mirrored without repeating the border
    out, record = normalise_volume(raw, site("zero", width=99, target=8), 2, (4, 8))
    assert (record["pad_left"], record["pad_right"]) == (1, 2)
    assert (out[..., 0] == 0).all() and (out[..., -2:] == 0).all()
    wide = rng.integers(0, 256, size=(2, 4, 12), dtype=np.uint8)
    assert normalise_volume(wide, site("edge-repeat", width=9), 2, (4, 12))[1]["padding"] == "none"
    assert normalise_volume(raw, None, 2, (4, 5))[1]["padding"] == "none"


@pytest.mark.parametrize("q", [(0.5, 99.5), (0.0, 100.0), (13.7, 50.0), (99.9, 25.0)])
def test_histogram_percentile_equals_numpy(rng, q):
    array = rng.integers(0, 256, size=(3, 17, 31), dtype=np.uint8)
    array[0, 0, :5] = 255  # a few outliers
    assert percentile_uint8(array, q) == pytest.approx(tuple(np.percentile(array, q)), abs=1e-9)


def test_percentile_intensity_against_a_naive_stretch(rng):
    raw = np.clip(rng.normal(90, 20, size=(4, 8, 16)), 0, 255).astype(np.uint8)
    out, record = normalise_volume(raw, site(method="percentile", low=2, high=98), 4, (8, 16))
    low, high = np.floor(np.percentile(raw, 2)), np.ceil(np.percentile(raw, 98))
    expected = np.clip(np.rint((raw.astype(float) - low) * 255 / (high - low)), 0, 255).astype(np.uint8)
    assert np.array_equal(out, expected) and (record["intensity_low"], record["intensity_high"]) == (low, high)
    out, _ = normalise_volume(raw, site(method="minmax"), 4, (8, 16))
    assert out.min() == 0 and out.max() == 255
    flat = np.full((2, 4, 4), 7, np.uint8)
    assert np.array_equal(normalise_volume(flat, site(method="minmax"), 2, 4)[0], flat)


def test_bscans_are_picked_by_nearest_index():
    raw = np.broadcast_to(np.arange(8, dtype=np.uint8)[:, None, None] * 10, (8, 4, 4)).copy()
    down, _ = normalise_volume(raw, site(), 4, 4)
    assert down[:, 0, 0].tolist() == [10, 30, 50, 70]  # centres of 4 equal bins over 8 B-scans
    up, _ = normalise_volume(raw[:4], site(), 8, 4)
    assert up[:, 0, 0].tolist() == [0, 0, 10, 10, 20, 20, 30, 30]
    assert bscan_indices(100, 100).tolist() == list(range(100))


def test_inplane_resize_and_mask_stay_aligned(rng):
    raw = np.zeros((3, 40, 80), np.uint8)
    raw[:, 10:30, 20:60] = 200  # a bright box
    mask = (raw > 0).astype(np.uint8)
    out, record = normalise_volume(raw, site(), 3, (20, 40))
    out_mask = normalise_mask(mask, record, site(), 3, (20, 40))
    assert out.shape == out_mask.shape == (3, 20, 40)
    assert set(np.unique(out_mask)) == {0, 1}
    assert out[out_mask == 1].min() > 150 and out[out_mask == 0].mean() < 30
    ramp = np.broadcast_to(np.linspace(0, 255, 80).astype(np.uint8), (1, 40, 80)).copy()
    resized, _ = normalise_volume(ramp, site(), 1, (20, 40))
    assert (np.diff(resized[0, 0].astype(int)) >= 0).all()  # order is kept


def test_mask_is_padded_like_its_volume(rng):
    raw = rng.integers(0, 256, size=(2, 6, 10), dtype=np.uint8)
    mask = np.zeros_like(raw)
    mask[:, 2:4, 0] = 1  # lesion touching the left edge
    cfg = site("edge-repeat", width=16)
    _, record = normalise_volume(raw, cfg, 2, (6, 16))
    out = normalise_mask(mask, record, cfg, 2, (6, 16))
    assert out[:, 2:4, :4].all() and not out[:, :2].any()
    with pytest.raises(DataError, match="differs from the volume"):
        normalise_mask(mask[:1], record, cfg, 2, (6, 16))


def test_preprocess_volume(rng):
    vol = rng.integers(0, 256, size=(5, 6, 7), dtype=np.uint8)
    image, positions = preprocess_volume(vol)
    assert image.shape == (5, 1, 6, 7) and image.dtype == torch.float32
    assert torch.allclose(image[:, 0], torch.from_numpy(vol).float() / 255)
    assert positions.tolist() == [0, 1, 2, 3, 4] and positions.dtype == torch.int64


def test_parse_bscan_size():
    assert parse_bscan_size("299") == (299, 299) and parse_bscan_size(64) == (64, 64)
    assert parse_bscan_size("128x256") == (128, 256) and parse_bscan_size((3, 4)) == (3, 4)
    for bad in ("0", "12x", "axb", "1x2x3"):
        with pytest.raises(ConfigError, match="B-scan size"):
            parse_bscan_size(bad)


def test_normalise_refuses_non_uint8():
    with pytest.raises(DataError, match="uint8"):
        normalise_volume(np.zeros((2, 3, 4), np.float32), None, 2, 4)
