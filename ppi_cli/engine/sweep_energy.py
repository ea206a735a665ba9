# SPDX-License-Identifier: MIT
"""`ppi sweep --energy METHOD`: each kept model's energy inside the lesion, the share of its saliency map's positive
part inside the expert masks of the sweep's data (`segment_eval.lesion_energy`), kept beside the model so that a
resumed sweep reads it; `reports.sweep_summary.summarise_energy` pairs the values with the baseline's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ppi_cli.errors import CacheError, ConfigError

__all__ = ["ENERGY_FILE", "check_energy", "kept_energy"]

ENERGY_FILE = "energy-{method}.json"  # beside a kept best.pt: its energy inside the data's masks, read on resume


def check_energy(data: Path, method: str) -> None:
    """Refuse `--energy` with an unknown method or on data without expert masks, before any study trains.

    Raises:
        ConfigError: No saliency method has that name.
        CacheError: `data` holds no masks.npy.
    """
    from ppi_cli.saliency import saliency_method

    try:
        saliency_method(method)
    except ConfigError as error:
        raise ConfigError(f"--energy: {error.message}", hint=error.hint) from None
    if not (data / "masks.npy").is_file():
        raise CacheError(f"--energy: {data} holds no expert masks (masks.npy), so there is no lesion to measure "
                         "a map's energy inside", hint="prepare the cache with its masks, or leave out --energy")


def kept_energy(best: Path, data: Any, method: str, device: str) -> float:
    """The share of `method`'s map of the model at `best` inside the expert masks of the study's data (a
    `StudyData`), over its masked samples (`segment_eval.lesion_energy`), kept beside `best` with the data's hash
    so that a resumed sweep reads it. A run the collapse guard rejected holds the recipe without PPI's best.pt,
    so it measures that model."""
    from ppi_cli.engine.segment_eval import lesion_energy
    from ppi_cli.files import write_json

    path = best.parent / ENERGY_FILE.format(method=method)
    key = {"method": method, "data": data.name, "data_hash": data.data_hash}
    if path.is_file():
        held = json.loads(path.read_text())
        if {k: held.get(k) for k in key} == key:
            return float(held["energy"])
    value, samples = lesion_energy(best, data.cache_dir or Path(data.kind), method, device=device)
    write_json(path, {**key, "energy": value, "samples": samples})
    return value
