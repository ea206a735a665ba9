# SPDX-License-Identifier: MIT
"""Size guards: an image or volume too large to be a scan is refused before it is decoded.

A 2-D image may hold at most 100 megapixels (`PPI_MAX_IMAGE_PIXELS`), a volume at most 2 000
million voxels (`PPI_MAX_VOLUME_VOXELS`). Sizes are read from the header wherever the format has
one (Pillow's lazy open, the `.npy` header, the NIfTI header, DICOM Rows × Columns × frames), so a
400-megapixel PNG is one line and exit 1, never a decompression bomb or an out-of-memory kill
(docs/reliability.md#size-limits).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ppi_cli.errors import ConfigError, DataError

__all__ = ["MAX_IMAGE_PIXELS", "MAX_VOLUME_VOXELS", "IMAGE_ENV", "VOLUME_ENV", "max_image_pixels",
           "max_volume_voxels", "check_image_size", "check_volume_size", "check_dicom_size", "open_image", "npy_shape"]

MAX_IMAGE_PIXELS = 100_000_000  # per 2-D image: 10 000 × 10 000; whole-slide scans are out of scope
MAX_VOLUME_VOXELS = 2_000_000_000  # per volume: 2 GB as uint8; a 1000 × 1024 × 1024 OCT or a 2000-slice CT fits
IMAGE_ENV, VOLUME_ENV = "PPI_MAX_IMAGE_PIXELS", "PPI_MAX_VOLUME_VOXELS"


def _limit(env: str, default: int) -> int:
    text = os.environ.get(env, "").strip()
    if not text:
        return default
    try:
        value = int(float(text))
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{env}={text}: not a positive whole number", hint=f"unset {env}, or e.g. {env}={default}")
    return value


def max_image_pixels() -> int:
    """The largest 2-D image accepted, in pixels (`PPI_MAX_IMAGE_PIXELS`, default 100 million)."""
    return _limit(IMAGE_ENV, MAX_IMAGE_PIXELS)


def max_volume_voxels() -> int:
    """The largest volume accepted, in voxels (`PPI_MAX_VOLUME_VOXELS`, default 2 000 million)."""
    return _limit(VOLUME_ENV, MAX_VOLUME_VOXELS)


def check_image_size(path: str | os.PathLike, height: int, width: int) -> None:
    """Refuse a 2-D image larger than `max_image_pixels()` (from its header, before decoding).

    Raises:
        DataError: Naming the file by base name, its size and the limit, with the variable that raises it.
    """
    limit = max_image_pixels()
    if int(height) * int(width) > limit:
        raise DataError(f"{Path(path).name}: a {width}×{height} image ({int(height) * int(width) / 1e6:.0f} "
                        f"megapixels) is larger than the {limit / 1e6:g}-megapixel limit; nothing was decoded",
                        hint=f"set {IMAGE_ENV} to a larger number of pixels if the image is genuine")


def check_volume_size(path: str | os.PathLike, shape: Sequence[int]) -> None:
    """Refuse a volume (or any array) with more than `max_volume_voxels()` elements, from its header.

    Raises:
        DataError: Naming the file by base name, its shape and the limit.
    """
    limit = max_volume_voxels()
    count = 1
    for n in shape:
        count *= max(int(n), 0)
    if count > limit:
        raise DataError(f"{Path(path).name}: a volume of shape {tuple(int(n) for n in shape)} ({count / 1e6:.0f} "
                        f"million voxels) is larger than the {limit / 1e6:g}-million-voxel limit; nothing was decoded",
                        hint=f"set {VOLUME_ENV} to a larger number of voxels if the volume is genuine")


@contextlib.contextmanager
def open_image(path: str | os.PathLike) -> Iterator[Any]:
    """`PIL.Image.open` with the size guard: the header is read, the size checked, and only then decoded.

    Pillow's own decompression-bomb check is set to the same limit (it would warn above its default of
    89 megapixels and refuse at twice that); every frame of a multi-page file is checked as it is read.
    """
    from PIL import Image

    limit = max_image_pixels()
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit
    try:
        try:
            with warnings.catch_warnings():  # Pillow warns between the limit and twice it; we refuse below
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(path)
        except Image.DecompressionBombError:
            raise DataError(f"{Path(path).name}: an image larger than the {limit / 1e6:g}-megapixel limit; "
                            "nothing was decoded",
                            hint=f"set {IMAGE_ENV} to a larger number of pixels if the image is genuine") from None
        with image:
            width, height = image.size
            check_image_size(path, height, width)
            yield image
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def check_dicom_size(path: str | os.PathLike, ds: Any) -> None:
    """Refuse a DICOM whose Rows × Columns (per frame) or frames × Rows × Columns is over a limit, before decoding."""
    try:
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return  # a malformed size tag: the decoder reports it
    check_image_size(path, rows, cols)
    if frames > 1:
        check_volume_size(path, (frames, rows, cols))


def npy_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """The shape in a `.npy` file's header (the data is mapped, not read); ValueError when it is no `.npy`."""
    import numpy as np

    return tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape)
