# SPDX-License-Identifier: MIT
"""Vendor OCT formats through the optional `oct` extra (oct-converter, eyepy), imported only when needed.

| format | library | call |
|---|---|---|
| Heidelberg `.e2e` | oct-converter | `E2E(path).read_oct_volume()` (first volume) |
| Heidelberg `.vol` | eyepy | `eyepy.import_heyex_vol(path)` |
| Topcon `.fds` / `.fda` | oct-converter | `FDS(path)` / `FDA(path)` `.read_oct_volume()` |
| Bioptigen `.OCT` | oct-converter | `BOCT(path).read_oct_volume()` (first volume) |

Sources: data-protocols.md B.6. Neither library is installed by default, so these adapters are
tested against stand-in modules; `read_vendor` turns a missing library into a `MissingExtraError`
that names the extra.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli.console import warn
from ppi_cli.data.oct.volume import OctVolume, as_bscan_stack, to_uint8
from ppi_cli.errors import DataError, MissingExtraError

__all__ = ["read_vendor", "VENDOR_FORMATS", "VendorFormat"]

EXTRA = "oct"


@dataclass(frozen=True)
class VendorFormat:
    """How one vendor format is read."""

    label: str  # for messages
    module: str  # the optional package's import name
    attribute: str  # class (oct-converter) or function (eyepy) inside `module`


VENDOR_FORMATS: dict[str, VendorFormat] = {
    "heidelberg-e2e": VendorFormat("Heidelberg .e2e", "oct_converter.readers", "E2E"),
    "heidelberg-vol": VendorFormat("Heidelberg .vol", "eyepy", "import_heyex_vol"),
    "topcon-fds": VendorFormat("Topcon .fds", "oct_converter.readers", "FDS"),
    "topcon-fda": VendorFormat("Topcon .fda", "oct_converter.readers", "FDA"),
    "bioptigen-oct": VendorFormat("Bioptigen .OCT", "oct_converter.readers", "BOCT"),
}


def read_vendor(path: Path, fmt: str) -> OctVolume:
    """Read a vendor file with its optional library.

    Raises:
        MissingExtraError: The library is not installed (`pip install 'ppi-cli[oct]'`).
        DataError: The library returned no volume.
    """
    spec = VENDOR_FORMATS[fmt]
    try:
        module = importlib.import_module(spec.module)
    except ImportError:
        raise MissingExtraError(f"reading {spec.label} files ({path.name})", EXTRA,
                                spec.module.split(".")[0].replace("_", "-")) from None
    entry = getattr(module, spec.attribute)
    if spec.module == "eyepy":
        return _from_eyepy(entry(path), fmt)
    return _from_oct_converter(path, entry(path).read_oct_volume(), fmt)


def _from_oct_converter(path: Path, result: Any, fmt: str) -> OctVolume:
    """oct-converter returns one `OCTVolumeWithMetaData` or a list of them; `.volume` holds the B-scans."""
    volumes = list(result) if isinstance(result, (list, tuple)) else [result]
    if not volumes:
        raise DataError(f"{path}: the file holds no OCT volume")
    if len(volumes) > 1:
        warn(f"{path.name}: holds {len(volumes)} volumes; the first is used")
    chosen = volumes[0]
    array, notes = to_uint8(as_bscan_stack(np.stack([np.asarray(b) for b in chosen.volume]), str(path)))
    spacing = getattr(chosen, "pixel_spacing", None)  # [x (lateral), y (axial), z (between B-scans)] in mm
    spacing_mm = None
    if spacing is not None and len(spacing) == 3 and all(s and float(s) > 0 for s in spacing):
        spacing_mm = (float(spacing[2]), float(spacing[1]), float(spacing[0]))
    return OctVolume(np.ascontiguousarray(array), spacing_mm, fmt, notes)


def _from_eyepy(volume: Any, fmt: str) -> OctVolume:
    """eyepy's `EyeVolume.data` is already (n_bscans, H, W); scales are in mm."""
    array, notes = to_uint8(as_bscan_stack(np.asarray(volume.data), fmt))
    scales = [getattr(volume, f"scale_{axis}", None) for axis in ("z", "y", "x")]
    spacing_mm = tuple(float(s) for s in scales) if all(s and float(s) > 0 for s in scales) else None
    return OctVolume(np.ascontiguousarray(array), spacing_mm, fmt, notes)
