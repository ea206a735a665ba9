# SPDX-License-Identifier: MIT
"""The `folder` Dataset: natural photos from a cache written by `ppi prepare folder` (CUB, CIFAR-10).

Images are stored as uint8 RGB (or grey) squares and served as float32 in [0, 1]; the recipe's
intensity `window` is a CT notion and does not apply to photos. Training takes a random
`data.crop` × `data.crop` crop, a horizontal flip (`data.flips`) and, when asked, a small rotation;
evaluation takes the centre crop. Two classes give the binary layout (float label, one logit),
more give multi-class (int64 label), as the dataset registry's sample layout requires.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ppi_cli.data.cache import CacheInfo, load_array, open_cache, read_manifest, rebuild_hint
from ppi_cli.data.registry import register_dataset
from ppi_cli.data.splits import Split, holdout_split
from ppi_cli.errors import ConfigError
from ppi_cli.workspace import Workspace

__all__ = ["FolderDataset", "predefined_split"]


def _open(cache_dir: Path) -> CacheInfo:
    return open_cache(cache_dir, "folder", rebuild_hint("folder", cache_dir))


@register_dataset("folder")
class FolderDataset(Dataset):
    """Photos of a folder cache as `{"image", "label", "index"}` samples (datasets.py layout).

    Args:
        cache_dir: The folder cache; None uses the workspace's `cache/folder`.
        indices: Manifest rows to serve (None: all).
        cfg: The recipe or its `DataConfig` (`crop`, `flips`, `rotation`).
        train: Random crop, flip and rotation; otherwise the centre crop.
        seed: Seeds augmentation when read in the main process.
        regions: Accepted for the registry's constructor; a folder cache has no answer-key regions.

    Example:
        >>> ds = FolderDataset(Path("cache/cub"), None, recipe.data, train=False)
        >>> ds[0]["image"].shape  # (3, crop, crop)
    """

    def __init__(self, cache_dir: Path | None, indices: Any, cfg: Any, *, train: bool, seed: int = 0,
                 regions: bool = True):
        del regions  # nothing to serve
        self.cache_dir = Path(cache_dir) if cache_dir is not None else Workspace.resolve().cache("folder")
        data_cfg = getattr(cfg, "data", cfg)
        self.info = _open(self.cache_dir)
        self.classes: list[str] = list(self.info.extra.get("classes", []))
        size = int(self.info.extra.get("size", 0))
        self.crop = min(int(getattr(data_cfg, "crop", size) or size), size)
        self.flips = bool(getattr(data_cfg, "flips", False))
        self.rotation = float(getattr(data_cfg, "rotation", 0.0))
        self.train, self.seed = train, seed
        frame = read_manifest(self.cache_dir, required=("sample_id", "label", "split"))
        rows = np.arange(len(frame)) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= len(frame)):
            raise ConfigError(f"{self.cache_dir}: manifest row {int(rows.max())} requested, the cache has "
                              f"{len(frame)} images", hint="rebuild the split from this cache's manifest")
        self.indices = rows
        self.binary = len(self.classes) == 2
        self.labels = frame["label"].to_numpy(dtype=np.int64)[rows]
        self._images: np.ndarray | None = None  # memory-mapped on first use, once per process
        self._generator = torch.Generator().manual_seed(int(seed))

    @property
    def images(self) -> np.ndarray:
        """The memory-mapped `(N, C, size, size)` uint8 array."""
        if self._images is None:
            self._images = load_array(self.cache_dir, "images.npy")
        return self._images

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, item: int) -> dict[str, Any]:
        index = int(self.indices[item])
        image = torch.from_numpy(np.array(self.images[index], dtype=np.float32)) / 255.0  # (C, S, S)
        size = image.shape[-1]
        if self.train:
            g = None if torch.utils.data.get_worker_info() is not None else self._generator
            top, left = (int(torch.randint(0, size - self.crop + 1, (1,), generator=g)) for _ in range(2))
            image = image[:, top:top + self.crop, left:left + self.crop]  # (C, crop, crop)
            if self.flips and torch.rand((), generator=g) < 0.5:
                image = image.flip(-1)
            if self.rotation > 0:
                from torchvision.transforms.v2 import functional as tvf

                angle = float((torch.rand((), generator=g) * 2 - 1) * self.rotation)
                image = tvf.rotate(image, angle)
        else:
            start = (size - self.crop) // 2
            image = image[:, start:start + self.crop, start:start + self.crop]  # (C, crop, crop)
        label = torch.tensor(float(self.labels[item]), dtype=torch.float32) if self.binary \
            else torch.tensor(int(self.labels[item]), dtype=torch.int64)
        return {"image": image.contiguous(), "label": label, "index": index}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_images"] = None  # workers reopen the memory map instead of copying it
        state["_generator"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._generator = torch.Generator().manual_seed(int(self.seed))


def predefined_split(cache_dir: Path, val_fraction: float = 0.1, seed: int = 0) -> Split | None:
    """The split a folder cache ships with (`train`/`val`/`test` folders), or None for an unsplit one.

    Without a `val` folder, `val_fraction` of the training images is held out for model selection
    (stratified by class; photos are their own subjects, so nothing can leak).
    """

    _open(cache_dir)
    frame = read_manifest(cache_dir, required=("subject_id", "label", "split"))
    parts = {name: np.flatnonzero(frame["split"].to_numpy() == name) for name in ("train", "val", "test")}
    if parts["train"].size == 0 or parts["test"].size == 0:
        return None
    train, val = parts["train"], parts["val"]
    if val.size == 0 and val_fraction > 0:
        train, val = holdout_split(train, frame["label"].to_numpy(), frame["subject_id"].to_numpy(),
                                   val_fraction, seed)
    return Split(np.sort(train), np.sort(val), np.sort(parts["test"]))
