# SPDX-License-Identifier: MIT
"""The samples of a prepared cache that carry expert masks, as the 2D images a model is explained on.

LIDC: every cached slice whose union of reader masks is non-empty, centre-cropped and windowed
exactly as evaluation does (`lidc_dataset.preprocess_patch`); the union mask gets the same crop.
GA: every B-scan with lesion pixels (cache `masks.npy`), preprocessed as the GA dataset does
(`preprocess_volume`); the map is taken on the multi-view model's slice classifier, whose logit is
the B-scan's (design.md "Saliency"). Synthetic: the generated task of the model's recipe (no cache;
the blob's support is the mask), every image (or B-scan) with a blob. Cache arrays stay
memory-mapped; batches are read on demand.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli.data.cache import load_array, open_cache, read_manifest, rebuild_hint
from ppi_cli.data.lidc.dataset import preprocess_patch
from ppi_cli.data.synth.dataset import generate
from ppi_cli.errors import CacheError, ConfigError

__all__ = ["MaskedBatch", "MaskedSamples", "MASKED_KINDS"]

MASKED_KINDS = ("lidc", "ga", "synthetic")  # data kinds that carry expert masks


@dataclass
class MaskedBatch:
    """Images `(B, C, H, W)` in [0, 1], boolean masks `(B, H, W)` and sample ids."""

    images: Any
    masks: np.ndarray
    ids: list[str]


class MaskedSamples:
    """The masked samples of one cache for one model's input spec.

    Args:
        cache: The prepared cache folder (ignored for synthetic data).
        spec: The model's `InputSpec` (window and crop for LIDC, geometry for GA).
        limit: Use at most this many samples (the first ones in manifest order); None: all.
        recipe_data: The `data` section of the model's recipe (checkpoint meta); synthetic data are
            generated from it.

    Raises:
        ConfigError: The model was trained on a kind of data without masks.
        CacheError: Missing cache, no masks, or a geometry that differs from the model's.

    Example:
        >>> for batch in MaskedSamples(Path("cache/ga"), spec).batches(16): ...
    """

    def __init__(self, cache: Path, spec: Any, limit: int | None = None,
                 recipe_data: dict[str, Any] | None = None) -> None:
        if spec.dataset not in MASKED_KINDS:
            raise ConfigError(f"segment-eval needs expert masks; the model was trained on '{spec.dataset}' data, "
                              "which has none", hint=f"use a model trained on {', '.join(MASKED_KINDS)} data")
        self.kind, self.cache, self.spec = spec.dataset, Path(cache), spec
        if self.kind == "synthetic":
            self._open_synthetic(recipe_data or {})
        else:
            self._open_cache()
        self.index = self._index()
        if limit is not None:
            self.index = self.index[:limit]
        if not len(self.index):
            raise CacheError(f"{self.cache}: no sample has a non-empty expert mask", hint="check the cache's masks")

    def _open_cache(self) -> None:
        rebuild = rebuild_hint(self.kind, self.cache)
        open_cache(self.cache, self.kind, rebuild)
        if not (self.cache / "masks.npy").is_file():
            raise CacheError(f"{self.cache}: this cache has no masks.npy, so there is nothing to localise against",
                             hint=f"prepare it with masks: {rebuild}")
        self.manifest = read_manifest(self.cache, required=("sample_id",))
        self._images = load_array(self.cache, "volumes.npy" if self.kind == "ga" else "images.npy")
        self._masks = load_array(self.cache, "masks.npy")

    def _open_synthetic(self, data: dict[str, Any]) -> None:
        import pandas as pd

        generated = generate(int(data.get("synthetic_size", 256)), int(data.get("crop") or self.spec.crop),
                             int(data.get("synthetic_slices", 0) or 0))
        self._images, self._masks = generated.images, generated.masks  # (N, [S,] H, W) float32 in [0, 1]
        self.manifest = pd.DataFrame({"sample_id": [f"syn{i:05d}" for i in range(len(generated.labels))]})
        self.cache = Path("<generated synthetic task>")

    def __len__(self) -> int:
        return len(self.index)

    def batches(self, size: int) -> Iterator[MaskedBatch]:
        """The samples in batches of `size` (the last one may be smaller)."""
        for start in range(0, len(self.index), size):
            yield self._batch(self.index[start:start + size])

    def _index(self) -> list[tuple[int, int]]:
        """(row, B-scan) pairs for volumes, (row, -1) for 2D samples: samples whose mask has any pixel."""
        if self.kind == "synthetic":
            masks = np.asarray(self._masks)
            if masks.ndim == 3:  # (N, H, W) images
                return [(int(r), -1) for r in np.flatnonzero(masks.reshape(len(masks), -1).any(axis=1))]
            return [(int(r), int(b)) for r, b in np.argwhere(masks.reshape(*masks.shape[:2], -1).any(axis=2))]
        if self.kind == "ga":
            expected = (self.spec.n_bscans, *self.spec.bscan_size)
            if tuple(self._images.shape[1:]) != expected:
                raise CacheError(f"{self.cache}: volumes are {tuple(self._images.shape[1:])} (B-scans, H, W) but the "
                                 f"model was trained on {expected}", hint="evaluate on the cache the model was "
                                 "trained on, or prepare one with its --n-bscans and --bscan-size")
            has_mask = self.manifest["has_mask"].to_numpy() if "has_mask" in self.manifest else None
            pairs = []
            for r in range(self._masks.shape[0]):  # one volume at a time: the masks stay on disk
                if has_mask is None or has_mask[r]:
                    lesion = np.asarray(self._masks[r]).reshape(self._masks.shape[1], -1).any(axis=1)  # (S,)
                    pairs += [(r, int(b)) for b in np.flatnonzero(lesion)]
            return pairs
        crop = self.spec.crop or self._images.shape[-1]
        if crop > min(self._images.shape[-2:]):
            raise CacheError(f"{self.cache}: cached patches are {self._images.shape[-2:]} but the model was "
                             f"evaluated on {crop}-pixel crops", hint="evaluate on the cache the model was trained on")
        # The union of the reader masks must be non-empty inside the evaluation crop; one row at a time.
        return [(r, -1) for r in range(self._masks.shape[0]) if self._lidc_mask(r).any()]

    def _batch(self, items: list[tuple[int, int]]) -> MaskedBatch:
        import torch

        images, masks, ids = [], [], []
        for row, bscan in items:
            sample = str(self.manifest["sample_id"].iloc[row])
            if self.kind == "synthetic":
                where = (row,) if bscan < 0 else (row, bscan)
                images.append(torch.from_numpy(np.array(self._images[where], dtype=np.float32))[None])  # (1, H, W)
                masks.append(np.asarray(self._masks[where]) > 0)
                ids.append(sample if bscan < 0 else f"{sample}:{bscan}")
            elif self.kind == "ga":
                from ppi_cli.data.ga.normalise import preprocess_volume

                image, _ = preprocess_volume(np.asarray(self._images[row, [bscan]]))  # (1, 1, H, W)
                images.append(image[0])
                masks.append(np.asarray(self._masks[row, bscan]) > 0)
                ids.append(f"{sample}:{bscan}")
            else:
                images.append(self._lidc_image(row))
                masks.append(self._lidc_mask(row))
                ids.append(sample)
        return MaskedBatch(torch.stack(images), np.stack(masks), ids)

    def _lidc_image(self, row: int) -> Any:
        import torch

        patch = preprocess_patch(np.asarray(self._images[row], dtype=np.float32), self.spec.window, self.spec.crop)
        patch = torch.as_tensor(np.asarray(patch, dtype=np.float32))
        return patch if patch.ndim == 3 else patch[None]  # (1, crop, crop)

    def _lidc_mask(self, row: int) -> np.ndarray:
        union = np.asarray(np.asarray(self._masks[row]).any(axis=0))  # (H, W) union of the reader masks
        return _centre_crop(union, self.spec.crop or union.shape[-1])


def _centre_crop(array: np.ndarray, side: int) -> np.ndarray:
    """The centre `side` x `side` crop (the evaluation crop of the LIDC protocol)."""
    h, w = array.shape[-2:]
    top, left = (h - side) // 2, (w - side) // 2
    return array[..., top:top + side, left:left + side]
