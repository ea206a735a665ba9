# SPDX-License-Identifier: MIT
"""The LIDC training Dataset: memory-mapped crops from `ppi prepare lidc`, augmented at read time.

Training follows the protocol the LIDC 2D crops were made for (data-protocols.md A.1a, A.2): a
random `data.crop` (128) window of the 180×180 crop, random flips along both axes and a random
rotation within ±`data.rotation` (20°) about the window's centre, all in one bilinear resampling;
evaluation takes the centre window. HU are mapped to [0, 1] through `data.window`. Resizing to a
model's input size (299 for Inception) is the model wrapper's job.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ppi_cli.data.cache import load_array, open_cache, read_manifest, rebuild_hint
from ppi_cli.data.registry import register_dataset
from ppi_cli.errors import ConfigError

__all__ = ["LidcDataset", "preprocess_patch", "augment_patch", "augment_mask", "window_hu", "REQUIRED_COLUMNS"]

REQUIRED_COLUMNS = ("sample_id", "subject_id", "patient_id", "series_uid", "lesion_id", "z", "n_readers", "label")


def window_hu(hu: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Map HU linearly so that window[0] -> 0 and window[1] -> 1, clipped to [0, 1]; float32."""
    low, high = float(window[0]), float(window[1])
    if not high > low:
        raise ConfigError(f"data.window: [{low}, {high}] is empty", hint="give [low, high] with low < high, "
                          "e.g. [-1000, 400]")
    return np.clip((np.asarray(hu, np.float32) - low) / (high - low), 0.0, 1.0)


def _pad_to(hu: np.ndarray, crop: int, value: float) -> np.ndarray:
    """Pad (H, W) symmetrically with `value` so both sides are at least `crop`."""
    ph, pw = max(crop - hu.shape[0], 0), max(crop - hu.shape[1], 0)
    if not ph and not pw:
        return hu
    return np.pad(hu, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)), constant_values=value)


def preprocess_patch(hu: np.ndarray, window: tuple[float, float], crop: int) -> torch.Tensor:
    """The evaluation view of a HU patch: centre crop×crop window, then the HU window to [0, 1].

    `ppi explain` calls this on the patch it explains, so the overlay shows what the model saw.
    A patch smaller than `crop` is padded with the window's low end (0 after windowing).

    Args:
        hu: (H, W) HU values (any real dtype).
        window: (low, high) HU mapped to 0 and 1.
        crop: Side of the output.

    Returns:
        float32 tensor (1, crop, crop).

    Example:
        >>> x = preprocess_patch(images[i], (-1000.0, 400.0), 128)  # (1, 128, 128)
    """
    hu = _pad_to(np.asarray(hu), crop, window[0])
    top, left = (hu.shape[0] - crop) // 2, (hu.shape[1] - crop) // 2
    patch = window_hu(hu[top:top + crop, left:left + crop], window)  # (crop, crop)
    return torch.from_numpy(np.ascontiguousarray(patch))[None]  # (1, crop, crop)


def augment_patch(hu: np.ndarray, window: tuple[float, float], crop: int, *, top: int, left: int,
                  angle: float = 0.0, flip_rows: bool = False, flip_cols: bool = False) -> torch.Tensor:
    """One training view: the crop window at (top, left), flipped, then rotated by `angle` degrees about its centre.

    The three steps are one affine map sampled bilinearly; samples falling outside the patch take
    the nearest edge value. With angle 0 and no flips the view is exactly hu[top:top+crop, left:left+crop].

    Returns:
        float32 tensor (1, crop, crop), windowed to [0, 1].
    """
    view = _view(_pad_to(np.asarray(hu, np.float32), crop, window[0]), crop, top, left, angle, flip_rows, flip_cols)
    return torch.from_numpy(window_hu(view, window))[None]  # (1, crop, crop)


def augment_mask(mask: np.ndarray, crop: int, *, top: int, left: int, angle: float = 0.0, flip_rows: bool = False,
                 flip_cols: bool = False) -> torch.Tensor:
    """The same view of a `(H, W)` lesion mask as `augment_patch` takes of its patch: float32 `(1, crop, crop)`, 0 or 1.

    Sampled bilinearly like the image, a pixel is in the lesion when at least half of it is.
    """
    view = _view(_pad_to(np.asarray(mask, np.float32), crop, 0.0), crop, top, left, angle, flip_rows, flip_cols)
    return torch.from_numpy((view >= 0.5).astype(np.float32))[None]


def _view(array: np.ndarray, crop: int, top: int, left: int, angle: float, flip_rows: bool,
          flip_cols: bool) -> np.ndarray:
    """The affine view of a padded `(H, W)` float32 array both `augment_*` take: one bilinear resampling."""
    from scipy.ndimage import affine_transform

    theta = math.radians(angle)
    rotate = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    flip = np.diag([-1.0 if flip_rows else 1.0, -1.0 if flip_cols else 1.0])
    matrix = rotate @ flip  # output offset from the view centre -> input offset from the window centre
    half = (crop - 1) / 2.0
    centre_in = np.array([top + half, left + half])
    offset = centre_in - matrix @ np.array([half, half])
    return affine_transform(array, matrix, offset=offset, output_shape=(crop, crop), order=1, mode="nearest")


@register_dataset("lidc")
class LidcDataset(torch.utils.data.Dataset):
    """Samples of a `ppi prepare lidc` cache: {"image": (1, crop, crop) float32, "label": float32, "index": int}.

    Args:
        cache_dir: The cache folder (None: `data.cache`, else the workspace's `cache/lidc`).
        indices: Manifest rows to serve (None: all).
        cfg: The recipe's `DataConfig` (crop, window, flips, rotation).
        train: Random views when True, the centre view otherwise.
        seed: Seed of the augmentation in the main process; DataLoader workers use their own seeds.
        regions: Add `mask`, the union of the readers' masks in the sample's view, to training samples
            of a cache prepared with masks. Only a PPI step reads it (its diagnostics,
            `ppi.mask: lesion`); other epochs leave it out.
    """

    def __init__(self, cache_dir: Path | None, indices: Any, cfg: Any, *, train: bool, seed: int = 0,
                 regions: bool = True):
        if cache_dir is None:
            from ppi_cli.workspace import Workspace

            cache_dir = Path(cfg.cache) if getattr(cfg, "cache", "") else Workspace.resolve().cache("lidc")
        self.cache_dir = Path(cache_dir)
        self.info = open_cache(self.cache_dir, "lidc",
                               rebuild=rebuild_hint("lidc", self.cache_dir))
        manifest = read_manifest(self.cache_dir, required=REQUIRED_COLUMNS)
        self.indices = np.arange(len(manifest)) if indices is None else np.asarray(indices, dtype=np.int64)
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= len(manifest)):
            raise ConfigError(f"{self.cache_dir}: sample indices outside 0..{len(manifest) - 1}",
                              hint="rebuild the split from this cache's manifest")
        self._labels = manifest["label"].to_numpy(np.float32)
        side = int(self.info.params.get("crop", 0)) or None
        self.crop, self.window = int(cfg.crop), (float(cfg.window[0]), float(cfg.window[1]))
        if side is not None and self.crop > side:
            raise ConfigError(f"data.crop: {self.crop} is larger than the cached crops ({side} px)",
                              hint=f"set data.crop <= {side}, or re-run ppi prepare lidc with --crop {self.crop}")
        self.train, self.flips, self.rotation = bool(train), bool(cfg.flips), float(cfg.rotation)
        self.seed = int(seed)
        self._images: np.ndarray | None = None
        self._mask_array: np.ndarray | None = None
        self.regions = bool(regions) and self.train
        self._has_masks = (self.cache_dir / "masks.npy").is_file()  # asked once, not once per sample
        self._rng: np.random.Generator | None = None
        self._rng_key: object = None

    @property
    def labels(self) -> np.ndarray:
        """float32 (len(self),) labels of the served samples, in order."""
        return self._labels[self.indices]

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_images"] = state["_mask_array"] = None  # each worker maps the files itself instead of receiving a copy
        state["_rng"] = None
        return state

    def _array(self) -> np.ndarray:
        if self._images is None:
            self._images = load_array(self.cache_dir, "images.npy", mmap=True)  # (N, S, S) int16, memory-mapped
        return self._images

    def _masks(self) -> np.ndarray | None:
        """The memory-mapped `(N, readers, S, S)` uint8 reader masks, or None for a cache without them."""
        if self._mask_array is None and self._has_masks:
            self._mask_array = load_array(self.cache_dir, "masks.npy", mmap=True)
        return self._mask_array

    def _generator(self) -> np.random.Generator:
        """This process's augmentation stream: the dataset seed here, the worker's own seed in a DataLoader worker."""
        info = torch.utils.data.get_worker_info()
        key = None if info is None else info.seed
        if self._rng is None or key != self._rng_key:
            self._rng = np.random.default_rng(self.seed if info is None else info.seed)
            self._rng_key = key
        return self._rng

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = int(self.indices[i])
        hu = np.asarray(self._array()[row])  # (S, S) int16 HU
        sample = {"label": torch.tensor(self._labels[row], dtype=torch.float32), "index": row}
        if not self.train:
            return sample | {"image": preprocess_patch(hu, self.window, self.crop)}
        rng = self._generator()
        span_r, span_c = max(hu.shape[0] - self.crop, 0), max(hu.shape[1] - self.crop, 0)
        view = dict(top=int(rng.integers(0, span_r + 1)), left=int(rng.integers(0, span_c + 1)),
                    angle=float(rng.uniform(-self.rotation, self.rotation)) if self.rotation else 0.0,
                    flip_rows=bool(self.flips and rng.random() < 0.5),
                    flip_cols=bool(self.flips and rng.random() < 0.5))
        sample["image"] = augment_patch(hu, self.window, self.crop, **view)
        masks = self._masks() if self.regions else None
        if masks is not None:  # the union of the readers' masks, in the same view (diagnostics; ppi.mask: lesion)
            sample["mask"] = augment_mask(np.asarray(masks[row]).any(axis=0), self.crop, **view)
        return sample
