# SPDX-License-Identifier: MIT
"""The GA Dataset for the multi-view model: volumes from a GA cache, B-scans sampled at read time.

Training samples K B-scans per volume (`model.multiview.slices_per_volume`), kept in B-scan order
with their position ids, and applies the paper's augmentation: a horizontal flip of the whole
volume and additive Gaussian noise (`data.flips`, `data.noise_std`; paper appendix E.2), and, ours, a
Gaussian blur of random width (`data.blur`) and a random overall gain (`data.gain`) before the noise.
Evaluation returns every B-scan, unflipped, so the volume score sums over all slices. Rotation
(`data.rotation`) is a CT augmentation and is not applied to OCT.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ppi_cli.config.recipe import DataConfig, MultiviewConfig
from ppi_cli.data.bscans import blurred, sample_bscans
from ppi_cli.data.cache import CacheInfo, load_array, open_cache, read_manifest, rebuild_hint
from ppi_cli.data.ga.normalise import preprocess_volume
from ppi_cli.data.registry import register_dataset
from ppi_cli.errors import ConfigError
from ppi_cli.workspace import Workspace

__all__ = ["GaDataset"]


@register_dataset("ga")
class GaDataset(Dataset):
    """Volumes of a GA cache as `{"image", "positions", "label", "index"}` samples (datasets.py layout).

    Args:
        cache_dir: The GA cache; None uses the workspace's `cache/ga`.
        indices: Manifest rows to serve (None: all).
        cfg: The whole `Recipe` (K comes from `model.multiview.slices_per_volume`) or its `DataConfig`
            (K is then `slices_per_volume`, else the recipe default).
        train: Sample K B-scans and augment; otherwise all B-scans, no augmentation.
        seed: Seeds sampling and augmentation when read in the main process; DataLoader workers use
            the per-worker torch seed, which differs per epoch.
        slices_per_volume: Overrides K.
        regions: Add the answer key's regions to training samples: `mask` (the lesion masks, where the
            cache has them) and `cue` (a planted mark's box, where the manifest has one). Only a PPI
            step reads them (its diagnostics, `ppi.mask: lesion`); other epochs leave them out.

    Example:
        >>> ds = GaDataset(Path("cache/ga"), None, recipe, train=True)
        >>> ds[0]["image"].shape  # (K, 1, H, W)
    """

    kind = "ga"  # the cache kind it opens; `table` serves its volumes through this same class

    def __init__(self, cache_dir: Path | None, indices: Any, cfg: Any, *, train: bool, seed: int = 0,
                 regions: bool = True, slices_per_volume: int | None = None):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else Workspace.resolve().cache(self.kind)
        data_cfg: DataConfig = getattr(cfg, "data", cfg)
        model_cfg = getattr(cfg, "model", None)
        default_k = model_cfg.multiview.slices_per_volume if model_cfg is not None \
            else MultiviewConfig().slices_per_volume
        self.slices_per_volume = int(slices_per_volume or default_k)
        self.flips = bool(getattr(data_cfg, "flips", False))
        self.noise_std = float(getattr(data_cfg, "noise_std", 0.0))
        self.blur = float(getattr(data_cfg, "blur", 0.0))
        self.gain = float(getattr(data_cfg, "gain", 0.0))
        self.train = train
        self.seed = seed
        self.info = open_cache(self.cache_dir, self.kind, rebuild_hint(self.kind, self.cache_dir))
        frame = read_manifest(self.cache_dir, required=("sample_id", "subject_id", "site", "label"))
        rows = np.arange(len(frame)) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= len(frame)):
            raise ConfigError(f"{self.cache_dir}: manifest row {int(rows.max())} requested, the cache has "
                              f"{len(frame)} volumes", hint="rebuild the split from this cache's manifest")
        self.indices = rows
        self.manifest = frame.iloc[rows].reset_index(drop=True)
        self.labels = frame["label"].to_numpy(dtype=np.float32)[rows]
        self.regions = bool(regions) and train
        self.cue_boxes = _cue_boxes(self.manifest, self.info)  # (n, 4) rows and columns in the cache, or None
        self._volumes: np.ndarray | None = None  # opened lazily, once per process (memory-mapped)
        self._masks: np.ndarray | None = None
        self._has_masks = (self.cache_dir / "masks.npy").is_file()  # asked once, not once per sample
        self._generator = torch.Generator().manual_seed(int(seed))

    @property
    def volumes(self) -> np.ndarray:
        """The memory-mapped `(N, n_bscans, H, W)` uint8 array."""
        if self._volumes is None:
            self._volumes = load_array(self.cache_dir, "volumes.npy")
        return self._volumes

    @property
    def masks(self) -> np.ndarray | None:
        """The memory-mapped `(N, n_bscans, H, W)` uint8 lesion masks, or None for a cache without them."""
        if self._masks is None and self._has_masks:
            self._masks = load_array(self.cache_dir, "masks.npy")
        return self._masks

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, item: int) -> dict[str, Any]:
        index = int(self.indices[item])
        volume = np.asarray(self.volumes[index])  # (n_bscans, H, W) uint8, read from the memory map
        sample: dict[str, Any] = {"label": torch.tensor(float(self.labels[item]), dtype=torch.float32),
                                  "index": index}
        if not self.train:
            image, positions = preprocess_volume(volume)
            return sample | {"image": image, "positions": positions.to(torch.int64)}
        generator = self._rng()
        positions = sample_bscans(volume.shape[0], self.slices_per_volume, generator)  # (K,) in B-scan order
        image, _ = preprocess_volume(volume[positions.numpy()])  # (K, 1, H, W)
        # For the training diagnostics (engine/step.py): the lesion masks, and a planted mark's box.
        regions: dict[str, torch.Tensor] = {}
        if self.regions and self.masks is not None:
            regions["mask"] = torch.from_numpy(np.array(self.masks[index][positions.numpy()], np.float32))[:, None]
        if self.regions and self.cue_boxes is not None:
            regions["cue"] = _box_mask(self.cue_boxes[item], image.shape)
        if self.flips and torch.rand((), generator=generator) < 0.5:
            image = image.flip(-1)  # the whole volume, so neighbouring B-scans stay aligned
            regions = {k: v.flip(-1) for k, v in regions.items()}
        if self.blur > 0:  # drawn only when on, so the runs without it keep their random stream
            sigma = float(torch.rand((), generator=generator)) * self.blur
            if sigma > 0.05:  # narrower than a twentieth of a pixel: the kernel is a single tap
                image = blurred(image, sigma)
        if self.gain > 0:  # drawn only when on, as the blur: log-uniform, so dimmer and brighter are as likely
            spread = math.log1p(self.gain)
            image = (image * math.exp((2 * float(torch.rand((), generator=generator)) - 1) * spread)).clamp_(0.0, 1.0)
        if self.noise_std > 0:
            noise = torch.randn(image.shape, generator=generator) * self.noise_std
            image = (image + noise).clamp_(0.0, 1.0)
        return sample | regions | {"image": image, "positions": positions.to(torch.int64)}

    def _rng(self) -> torch.Generator | None:
        # In a DataLoader worker the global torch generator is seeded per worker and per epoch; a
        # generator of our own would be copied into every worker with the same state each epoch.
        return None if torch.utils.data.get_worker_info() is not None else self._generator

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_volumes"] = state["_masks"] = None  # never pickle a memory map's data into a worker
        state["_generator"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._generator = torch.Generator().manual_seed(int(self.seed))


def _cue_boxes(manifest: Any, info: CacheInfo) -> np.ndarray | None:
    """A planted mark's box per row in cached pixels, `(n, 4)` row0, row1, col0, col1 (−1: no mark), or None.

    `ppi synth ga --shortcut mark` writes `cue_box` ("r0:r1,c0:c1" in the B-scan as written) into its
    manifest and `ppi prepare ga` keeps the column; the box moves with the site's padding and is
    scaled to the cached size.
    """
    if "cue_box" not in manifest.columns:
        return None
    height, width = int(info.params.get("bscan_height", 0)), int(info.params.get("bscan_width", 0))
    boxes = np.full((len(manifest), 4), -1, dtype=np.int64)
    for i, row in enumerate(manifest.itertuples(index=False)):
        text = str(getattr(row, "cue_box", "") or "")
        if ":" not in text or not height:
            continue
        (r0, r1), (c0, c1) = (tuple(int(v) for v in part.split(":")) for part in text.split(","))
        _, orig_h, orig_w = (int(v) for v in str(row.orig_shape).split("x"))
        left = int(getattr(row, "pad_left", 0) or 0)
        padded_w = orig_w + left + int(getattr(row, "pad_right", 0) or 0)
        boxes[i] = (int(r0 * height / orig_h), int(np.ceil(r1 * height / orig_h)),
                    int((c0 + left) * width / padded_w), int(np.ceil((c1 + left) * width / padded_w)))
    return boxes if (boxes >= 0).any() else None


def _box_mask(box: np.ndarray, shape: Any) -> torch.Tensor:
    """A `(K, 1, H, W)` float mask of one box (all zero for a row without a mark)."""
    mask = torch.zeros(shape, dtype=torch.float32)
    if box[0] >= 0:
        mask[..., box[0]:box[1], box[2]:box[3]] = 1.0
    return mask
