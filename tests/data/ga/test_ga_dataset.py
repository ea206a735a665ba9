# SPDX-License-Identifier: MIT
"""The GA Dataset: K sorted B-scans with positions in training, all B-scans in evaluation, paper augmentation."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from ppi_cli.config.recipe import DataConfig, Recipe
from ppi_cli.data.cache import write_cache_info
from ppi_cli.data.datasets import build_dataset
from ppi_cli.data.ga.dataset import GaDataset
from ppi_cli.errors import CacheError
from ppi_cli.files import save_npy, write_csv


@pytest.fixture
def cache(tmp_path, rng):
    folder = tmp_path / "cache"
    volumes = rng.integers(0, 256, size=(5, 10, 8, 12), dtype=np.uint8)
    save_npy(folder / "volumes.npy", volumes)
    write_csv(folder / "manifest.csv", pd.DataFrame({
        "sample_id": [f"A-{k}" for k in range(5)], "subject_id": [f"s{k}" for k in range(5)],
        "site": ["A"] * 5, "label": [0, 1, 0, 1, 1]}))
    write_cache_info(folder, "ga", {"n_bscans": 10}, 5, ["manifest.csv", "volumes.npy"])
    return folder, volumes


def recipe(k=4, flips=False, noise=0.0) -> Recipe:
    return Recipe().replace(**{"model.multiview.slices_per_volume": k, "data.dataset": "ga", "data.flips": flips,
                               "data.noise_std": noise})


def test_evaluation_returns_every_bscan(cache):
    folder, volumes = cache
    ds = build_dataset("ga", folder, [1, 3], recipe(), train=False)
    assert isinstance(ds, GaDataset) and len(ds) == 2
    sample = ds[1]
    assert sample["image"].shape == (10, 1, 8, 12) and sample["image"].dtype == torch.float32
    assert torch.equal(sample["image"][:, 0], torch.from_numpy(volumes[3]).float() / 255)
    assert sample["positions"].tolist() == list(range(10)) and sample["positions"].dtype == torch.int64
    assert sample["label"].dtype == torch.float32 and float(sample["label"]) == 1.0 and sample["index"] == 3


def test_training_samples_k_sorted_bscans_with_their_positions(cache):
    folder, volumes = cache
    ds = GaDataset(folder, None, recipe(k=4), train=True, seed=1)
    seen = set()
    for _ in range(10):
        sample = ds[2]
        positions = sample["positions"]
        assert positions.shape == (4,) and (positions[1:] > positions[:-1]).all()  # sorted, no repeats
        assert torch.equal(sample["image"][:, 0], torch.from_numpy(volumes[2][positions.numpy()]).float() / 255)
        seen.add(tuple(positions.tolist()))
    assert len(seen) > 1  # resampled on every read
    again = GaDataset(folder, None, recipe(k=4), train=True, seed=1)
    assert torch.equal(again[2]["positions"], GaDataset(folder, None, recipe(k=4), train=True, seed=1)[2]["positions"])
    assert GaDataset(folder, None, recipe(k=50), train=True)[0]["positions"].tolist() == list(range(10))


def test_data_config_alone_uses_the_default_k_or_an_override(cache):
    folder, _ = cache
    assert GaDataset(folder, None, DataConfig(dataset="ga"), train=True)[0]["image"].shape[0] == 8
    assert GaDataset(folder, None, DataConfig(dataset="ga"), train=True, slices_per_volume=3)[0]["image"].shape[0] == 3


def test_flips_mirror_the_whole_volume(cache):
    folder, volumes = cache
    ds = GaDataset(folder, None, recipe(k=10, flips=True), train=True)
    clean = torch.from_numpy(volumes[0]).float() / 255
    outcomes = []
    for _ in range(30):
        image = ds[0]["image"][:, 0]
        flipped = torch.equal(image, clean.flip(-1))
        assert flipped or torch.equal(image, clean)
        outcomes.append(flipped)
    assert any(outcomes) and not all(outcomes)


def test_training_samples_carry_their_lesion_masks_through_sampling_and_flips(cache, rng):
    folder, volumes = cache
    assert "mask" not in GaDataset(folder, None, recipe(k=4), train=True)[0]  # a cache without masks.npy
    masks = (volumes > 128).astype(np.uint8)  # any masks will do: they must follow their B-scans
    save_npy(folder / "masks.npy", masks)
    ds = GaDataset(folder, None, recipe(k=4, flips=True), train=True, seed=2)
    flips = []
    for _ in range(20):
        sample = ds[1]
        rows = sample["positions"].numpy()
        expected = torch.from_numpy(masks[1][rows]).float()[:, None]
        flipped = torch.equal(sample["mask"], expected.flip(-1))
        assert flipped or torch.equal(sample["mask"], expected)
        image_flipped = torch.equal(sample["image"][:, 0], torch.from_numpy(volumes[1][rows]).float().flip(-1) / 255)
        assert flipped == image_flipped  # the mask is flipped exactly when its image is
        flips.append(flipped)
    assert any(flips) and not all(flips)
    # regions=False (epochs whose step reads no mask): the same images and B-scans, no mask
    without = GaDataset(folder, None, recipe(k=4, flips=True), train=True, seed=2, regions=False)
    again = GaDataset(folder, None, recipe(k=4, flips=True), train=True, seed=2)
    for _ in range(5):
        bare, full = without[1], again[1]
        assert "mask" not in bare and "mask" in full
        assert torch.equal(bare["image"], full["image"]) and torch.equal(bare["positions"], full["positions"])
    assert "mask" not in GaDataset(folder, None, recipe(), train=False)[0]  # evaluation: images only


def test_gaussian_noise_has_the_recipe_std(tmp_path):
    folder = tmp_path / "grey"
    save_npy(folder / "volumes.npy", np.full((1, 10, 32, 32), 128, np.uint8))  # mid-grey: no clamping
    write_csv(folder / "manifest.csv", pd.DataFrame({"sample_id": ["x"], "subject_id": ["s"], "site": ["A"],
                                                     "label": [0]}))
    write_cache_info(folder, "ga", {}, 1, ["manifest.csv", "volumes.npy"])
    image = GaDataset(folder, None, recipe(k=10, noise=0.05), train=True)[0]["image"]
    residual = image - 128 / 255
    assert abs(float(residual.std()) - 0.05) < 0.005 and abs(float(residual.mean())) < 0.005
    assert image.min() >= 0 and image.max() <= 1
    assert torch.equal(GaDataset(folder, None, recipe(k=10, noise=0.05), train=False)[0]["image"],
                       torch.full((10, 1, 32, 32), 128 / 255))  # evaluation is never augmented


def test_pickles_without_the_array_and_missing_cache_names_the_command(cache, tmp_path):
    folder, volumes = cache
    ds = GaDataset(folder, None, recipe(), train=False)
    _ = ds[0]  # opens the memory map
    restored = pickle.loads(pickle.dumps(ds))  # what a DataLoader worker receives
    assert restored._volumes is None and ds._volumes is not None
    assert torch.equal(restored[4]["image"], ds[4]["image"])
    with pytest.raises(CacheError) as err:
        GaDataset(tmp_path / "absent", None, recipe(), train=False)
    assert "ppi prepare ga --manifest" in err.value.one_line()


def _blurred(clean: np.ndarray, u: float) -> np.ndarray:
    """`data.blur: 2.0` at the draw `u`: scipy's Gaussian filter in-plane (mirror edges, 3σ radius) at σ = 2u."""
    from scipy.ndimage import gaussian_filter

    sigma = 2.0 * u
    return gaussian_filter(clean, sigma=(0, sigma, sigma), mode="mirror", truncate=3.0) if sigma > 0.05 else clean


def _gained(clean: np.ndarray, u: float) -> np.ndarray:
    """`data.gain: 0.2` at the draw `u`: the volume times exp((2u − 1) · ln 1.2), clipped to [0, 1]."""
    return np.clip(clean * np.exp((2 * u - 1) * np.log(1.2)), 0.0, 1.0)


@pytest.mark.parametrize(("field", "value", "expected"), [("data.blur", 2.0, _blurred), ("data.gain", 0.2, _gained)])
def test_blur_and_gain_draw_once_per_read_after_the_bscans_and_are_off_by_default(cache, field, value, expected):
    """`data.blur`: each training volume's B-scans blurred in-plane with σ drawn from [0, blur], equal to scipy's
    Gaussian filter; `data.gain`: the volume multiplied by a gain drawn log-uniformly from [1/(1 + gain), 1 + gain].
    One draw per read, from the dataset's generator after the B-scans; new each read and spread over the range
    (dimmer and brighter both occur). Off (0), nothing is drawn, so a recipe without them reads its volumes as
    they are."""
    folder, volumes = cache
    augmented = GaDataset(folder, None, recipe(k=10).replace(**{field: value}), train=True, seed=3)
    plain = GaDataset(folder, None, recipe(k=10), train=True, seed=3)
    reference = torch.Generator().manual_seed(3)
    clean = volumes[1].astype(np.float32) / 255
    draws = []
    for _ in range(8):
        image = augmented[1]["image"][:, 0].numpy()
        torch.randperm(10, generator=reference)  # the B-scans drawn first (all ten, in order)
        draws.append(float(torch.rand((), generator=reference)))
        np.testing.assert_allclose(image, expected(clean, draws[-1]), atol=2e-6)
        assert np.allclose(plain[1]["image"][:, 0].numpy(), clean)  # off: the volume as it is, every read
    assert len({round(u, 6) for u in draws}) == 8 and min(draws) < 0.4 and max(draws) > 0.6
