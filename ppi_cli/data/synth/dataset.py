# SPDX-License-Identifier: MIT
"""The `synthetic` dataset: a small generated binary task with a planted spurious cue, held in memory.

Dark, noisy images (like a CT lung window or the OCT vitreous, where zero really means "nothing
there", so an intervention's zeroed pixels are not an artefact). A faint Gaussian blob at a
random place causes the label (present in positives only). The spurious cue is a site-style
intensity shift of the whole image: at site `A` (the first 3/4 of the rows) it marks 90 % of the
positives and 10 % of the negatives, at site `B` (the last 1/4) half of every class, so it
predicts nothing there. A model that learned the cue does well on A and poorly on B; one that
learned the blob does well on both. Every sample is its own subject; the `mask` key holds the
blob's support (weak-localisation ground truth).

No cache: `cache_dir` is None and the data are a function of the `data` section alone
(`synthetic_size` samples of `crop`² pixels; `synthetic_slices` > 0 gives volumes of that many
B-scans instead, the blob in a run of consecutive slices, for the multi-view model).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ppi_cli.data.bscans import sample_bscans
from ppi_cli.data.registry import register_dataset

__all__ = ["SyntheticDataset", "generate", "SyntheticData", "CUE_SHIFT", "DATA_SEED"]

DATA_SEED = 20201206  # fixed: the data never depend on the recipe's seed, only on its data section
BACKGROUND = (0.05, 0.05)  # mean and std of the background before clipping to [0, 1]
BLOB_AMPLITUDE = 0.06  # peak of the blob: about 4 matched-filter standard deviations above the noise
CUE_SHIFT = 0.04  # the cue: every pixel of the image brighter by this much
SITE_A_SHARE = 0.75
CUE_RATE = {("A", 1): 0.9, ("A", 0): 0.1, ("B", 1): 0.5, ("B", 0): 0.5}


@dataclass(frozen=True)
class SyntheticData:
    """Generated arrays: images `(N, [S,] H, W)` float32, blob masks alike, labels, sites, cue flags."""

    images: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    sites: np.ndarray
    cue: np.ndarray


@lru_cache(maxsize=4)
def generate(n: int, size: int, slices: int = 0) -> SyntheticData:
    """Generate the task deterministically (same arguments, same arrays)."""
    rng = np.random.default_rng(DATA_SEED)
    labels = (np.arange(n) % 2).astype(np.float32)
    rng.shuffle(labels)
    sites = np.where(np.arange(n) < int(round(SITE_A_SHARE * n)), "A", "B")
    cue = np.array([rng.random() < CUE_RATE[(s, int(y))] for s, y in zip(sites, labels, strict=True)])
    depth = max(slices, 1)
    shape = (n, depth, size, size)
    images = np.clip(BACKGROUND[0] + BACKGROUND[1] * rng.standard_normal(shape), 0.0, 1.0).astype(np.float32)
    masks = np.zeros(shape, dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    sigma = max(size / 12.0, 1.0)
    low, high = 4 + 3 * sigma, size - 3 * sigma  # centres well inside the image
    for i in np.flatnonzero(labels > 0):
        cy, cx = rng.uniform(low, high, size=2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
        first = rng.integers(0, max(depth - depth // 2, 1)) if depth > 1 else 0
        run = slice(first, first + max(depth // 2, 1))  # volumes: the lesion spans half the B-scans
        images[i, run] = np.clip(images[i, run] + BLOB_AMPLITUDE * blob, 0.0, 1.0)
        masks[i, run] = (blob > np.exp(-2.0)).astype(np.float32)  # within 2 σ of the centre
    images[cue] = np.clip(images[cue] + CUE_SHIFT, 0.0, 1.0)
    if slices == 0:
        images, masks = images[:, 0], masks[:, 0]
    return SyntheticData(images=images, masks=masks, labels=labels, sites=sites, cue=cue)


def _data_section(cfg: Any) -> Any:
    return getattr(cfg, "data", cfg)


@register_dataset("synthetic")
class SyntheticDataset(Dataset):
    """Samples of the generated task in the datasets.py layout, plus `mask` (the blob's support).

    Args:
        cache_dir: Ignored (must be None or anything: there is no cache).
        indices: Rows of the generated manifest to serve (None: all).
        cfg: The recipe or its `DataConfig` (`synthetic_size`, `crop`, `synthetic_slices`, `flips`,
            `noise_std`).
        train: Apply flips and noise.
        seed: Seeds the augmentation.
        regions: Add `mask` to the samples (False leaves it out, as for epochs whose step reads none).
    """

    def __init__(self, cache_dir: Path | None, indices: Any, cfg: Any, *, train: bool, seed: int = 0,
                 regions: bool = True) -> None:
        data = _data_section(cfg)
        self.slices = int(getattr(data, "synthetic_slices", 0))
        model = getattr(cfg, "model", None)  # the whole recipe for volume models: K B-scans per training sample
        self.slices_per_volume = int(model.multiview.slices_per_volume) if model is not None and train else 0
        self.data = generate(int(data.synthetic_size), int(data.crop), self.slices)
        n = len(self.data.labels)
        self.indices = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
        self.train = train
        self.flips = bool(data.flips) and train
        self.noise_std = float(data.noise_std) if train else 0.0
        self.generator = torch.Generator().manual_seed(int(seed))
        self.regions = bool(regions)

    @staticmethod
    def manifest_without_cache(cfg: Any) -> Any:
        """The manifest of the generated task: sample_id, subject_id, site, label, cue."""
        import pandas as pd

        data = _data_section(cfg)
        gen = generate(int(data.synthetic_size), int(data.crop), int(getattr(data, "synthetic_slices", 0)))
        ids = [f"syn{i:05d}" for i in range(len(gen.labels))]
        return pd.DataFrame({"sample_id": ids, "subject_id": ids, "site": gen.sites,
                             "label": gen.labels.astype(int), "cue": gen.cue.astype(int)})

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, item: int) -> dict[str, Any]:
        index = int(self.indices[item])
        image = torch.from_numpy(self.data.images[index]).unsqueeze(-3)  # (1, H, W) or (S, 1, H, W)
        mask = torch.from_numpy(self.data.masks[index]).unsqueeze(-3)
        # In a DataLoader worker the global torch generator is seeded per worker and epoch; ours would be
        # copied into every worker in the same state.
        generator = None if torch.utils.data.get_worker_info() is not None else self.generator
        positions = torch.arange(self.slices, dtype=torch.int64)  # (S,)
        if self.slices and self.slices_per_volume:
            positions = sample_bscans(self.slices, self.slices_per_volume, generator)  # (K,) in B-scan order
            image, mask = image[positions], mask[positions]
        if self.flips and torch.rand((), generator=generator) < 0.5:
            image, mask = image.flip(-1), mask.flip(-1)
        if self.noise_std > 0:
            image = (image + self.noise_std * torch.randn(image.shape, generator=generator)).clamp(0, 1)
        sample = {"image": image, "label": torch.tensor(float(self.data.labels[index])), "index": index}
        if self.regions:
            sample["mask"] = mask
        if self.slices:
            sample["positions"] = positions
        return sample
