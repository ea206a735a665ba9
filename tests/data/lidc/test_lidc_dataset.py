# SPDX-License-Identifier: MIT
"""The LIDC Dataset and its pure view functions against naive NumPy versions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from ppi_cli.config.recipe import DataConfig
from ppi_cli.data.cache import write_cache_info
from ppi_cli.data.datasets import build_dataset
from ppi_cli.data.lidc.dataset import augment_mask, augment_patch, preprocess_patch
from ppi_cli.errors import CacheError, ConfigError
from ppi_cli.files import save_npy, write_csv

WINDOW = (-1000.0, 400.0)
SIDE = 20


def _window(hu):
    return np.clip((hu.astype(np.float64) - WINDOW[0]) / (WINDOW[1] - WINDOW[0]), 0, 1)


@pytest.fixture
def cache(tmp_path, rng):
    folder = tmp_path / "cache"
    n = 6
    images = rng.integers(-1200, 600, (n, SIDE, SIDE)).astype(np.int16)
    manifest = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "subject_id": ["a", "a", "b", "b", "c", "c"],
                             "patient_id": ["a", "a", "b", "b", "c", "c"], "series_uid": ["1.2"] * n,
                             "lesion_id": [0] * n, "z": np.arange(n, dtype=float), "n_readers": [1, 3, 4, 2, 3, 0],
                             "label": [0, 1, 1, 0, 1, 0]})
    write_csv(folder / "manifest.csv", manifest)
    save_npy(folder / "images.npy", images)
    save_npy(folder / "masks.npy", np.zeros((n, 4, SIDE, SIDE), np.uint8))
    write_cache_info(folder, "lidc", {"crop": SIDE, "spacing": 0.5, "min_readers": 3, "annotations": "auto"}, n,
                     ["manifest.csv", "images.npy", "masks.npy"])
    return folder, images


def _cfg(**changes):
    return dataclasses.replace(DataConfig(), **{"dataset": "lidc", "crop": 12, "window": WINDOW, **changes})


def test_evaluation_view_is_the_windowed_centre_crop(cache):
    folder, images = cache
    ds = build_dataset("lidc", folder, [4, 1], _cfg(), train=False)
    sample = ds[0]
    assert set(sample) == {"image", "label", "index"} and sample["index"] == 4
    assert sample["image"].dtype == torch.float32 and sample["image"].shape == (1, 12, 12)
    assert sample["label"].dtype == torch.float32 and sample["label"].ndim == 0 and float(sample["label"]) == 1.0
    want = _window(images[4][4:16, 4:16])  # (20 - 12) / 2 = 4 on each side
    assert np.allclose(sample["image"][0].numpy(), want, atol=1e-6)
    assert torch.equal(sample["image"], preprocess_patch(images[4], WINDOW, 12))
    assert ds.labels.tolist() == [1.0, 1.0] and len(ds) == 2
    assert isinstance(ds._array(), np.memmap)  # memory-mapped, not loaded


def test_preprocess_pads_small_patches_with_the_window_floor():
    patch = np.full((4, 6), 400.0)
    out = preprocess_patch(patch, WINDOW, 8)[0].numpy()
    assert out.shape == (8, 8) and out[2:6, 1:7].min() == 1.0 and out.sum() == 24.0


def test_training_view_without_rotation_or_flips_is_a_random_crop(cache):
    folder, images = cache
    ds = build_dataset("lidc", folder, None, _cfg(rotation=0.0, flips=False), train=True, seed=3)
    windowed = _window(images[2])
    seen = set()
    for _ in range(8):
        got = ds[2]["image"][0].numpy()
        offsets = [(t, left) for t in range(9) for left in range(9)
                   if np.allclose(windowed[t:t + 12, left:left + 12], got, atol=1e-6)]
        assert offsets, "the training view is a plain crop of the cached patch"
        seen.add(offsets[0])
    assert len(seen) > 1  # the position is random


def test_augment_patch_flips_and_quarter_turns_match_numpy(rng):
    hu = rng.integers(-1000, 400, (16, 16)).astype(np.float32)
    crop = hu[2:12, 3:13]
    base = dict(top=2, left=3)
    assert np.allclose(augment_patch(hu, WINDOW, 10, **base)[0].numpy(), _window(crop), atol=1e-6)
    assert np.allclose(augment_patch(hu, WINDOW, 10, **base, flip_rows=True)[0].numpy(), _window(crop[::-1]), atol=1e-6)
    assert np.allclose(augment_patch(hu, WINDOW, 10, **base, flip_cols=True)[0].numpy(), _window(crop[:, ::-1]),
                       atol=1e-6)
    turned = augment_patch(hu, WINDOW, 10, **base, angle=90.0)[0].numpy()
    assert np.allclose(turned, _window(np.rot90(crop, k=-1)), atol=1e-5)


@pytest.mark.parametrize("angle,flip_rows,flip_cols", [(0.0, False, False), (90.0, False, False), (17.0, True, False),
                                                      (-12.5, False, True)])
def test_augment_mask_takes_the_view_its_patch_takes(angle, flip_rows, flip_cols):
    rows, cols = np.mgrid[:16, :16]
    mask = ((rows - 6.5) ** 2 + (cols - 9) ** 2 <= 12).astype(np.uint8)  # an off-centre disc
    hu = np.where(mask > 0, WINDOW[1], WINDOW[0]).astype(np.float32)  # windowed: the mask itself
    view = dict(top=2, left=3, angle=angle, flip_rows=flip_rows, flip_cols=flip_cols)
    got = augment_mask(mask, 10, **view)
    assert got.shape == (1, 10, 10) and got.dtype == torch.float32 and set(got.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(got, (augment_patch(hu, WINDOW, 10, **view) >= 0.5).float())
    if angle == 90.0:  # against NumPy, as the image is
        assert np.array_equal(got[0].numpy(), np.rot90(mask[2:12, 3:13], k=-1))


def test_training_samples_carry_the_readers_union_mask_in_the_image_view(tmp_path, rng):
    folder = tmp_path / "masked"
    n = 4
    masks = np.zeros((n, 4, SIDE, SIDE), np.uint8)
    masks[:, 1, 6:10, 7:12] = 1  # reader 2
    masks[:, 3, 9:14, 5:9] = 1  # reader 4: the union is the two blocks
    union = masks.any(axis=1)
    images = np.where(union, 400, -1000).astype(np.int16)
    manifest = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "subject_id": list("aabb"),
                             "patient_id": list("aabb"), "series_uid": ["1.2"] * n, "lesion_id": [0] * n,
                             "z": np.arange(n, dtype=float), "n_readers": [2] * n, "label": [0, 1, 1, 0]})
    write_csv(folder / "manifest.csv", manifest)
    save_npy(folder / "images.npy", images)
    save_npy(folder / "masks.npy", masks)
    write_cache_info(folder, "lidc", {"crop": SIDE, "spacing": 0.5, "min_readers": 1, "annotations": "auto"}, n,
                     ["manifest.csv", "images.npy", "masks.npy"])
    ds = build_dataset("lidc", folder, None, _cfg(), train=True, seed=5)
    for i in range(n):
        sample = ds[i]
        assert sample["mask"].shape == sample["image"].shape == (1, 12, 12)
        # the image is its mask, windowed: both went through the same random view
        assert torch.equal(sample["mask"], (sample["image"] >= 0.5).float())
        assert 0 < float(sample["mask"].sum()) < 144
    # the same draws as without masks: the images do not change
    plain = folder.parent / "plain"
    plain.mkdir()
    for name in ("manifest.csv", "images.npy"):
        (plain / name).write_bytes((folder / name).read_bytes())
    write_cache_info(plain, "lidc", {"crop": SIDE, "spacing": 0.5, "min_readers": 1, "annotations": "auto"}, n,
                     ["manifest.csv", "images.npy"])
    bare = build_dataset("lidc", plain, None, _cfg(), train=True, seed=5)
    again = build_dataset("lidc", folder, None, _cfg(), train=True, seed=5)
    for i in range(n):
        sample = bare[i]
        assert "mask" not in sample and torch.equal(sample["image"], again[i]["image"])
    assert "mask" not in build_dataset("lidc", folder, None, _cfg(), train=False)[0]
    unasked = build_dataset("lidc", folder, None, _cfg(), train=True, seed=5, regions=False)
    again = build_dataset("lidc", folder, None, _cfg(), train=True, seed=5)
    for i in range(n):
        sample = unasked[i]
        assert "mask" not in sample and torch.equal(sample["image"], again[i]["image"])


def test_augmentation_is_seeded(cache):
    folder, _ = cache
    a = build_dataset("lidc", folder, None, _cfg(), train=True, seed=1)
    b = build_dataset("lidc", folder, None, _cfg(), train=True, seed=1)
    c = build_dataset("lidc", folder, None, _cfg(), train=True, seed=2)
    first = [a[i]["image"] for i in range(6)]
    assert all(torch.equal(x, b[i]["image"]) for i, x in enumerate(first))
    assert not all(torch.equal(x, c[i]["image"]) for i, x in enumerate(first))


def test_refuses_a_crop_larger_than_the_cache_and_a_missing_cache(cache, tmp_path):
    folder, _ = cache
    with pytest.raises(ConfigError, match="data.crop: 32 is larger than the cached crops"):
        build_dataset("lidc", folder, None, _cfg(crop=32), train=False)
    with pytest.raises(CacheError) as err:
        build_dataset("lidc", tmp_path / "nothing", None, _cfg(), train=False)
    assert "no cache here" in err.value.one_line() and "ppi prepare lidc" in err.value.one_line()
