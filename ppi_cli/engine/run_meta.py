# SPDX-License-Identifier: MIT
"""The self-describing part of a checkpoint: what `explain` needs to rebuild preprocessing alone.

    {"model": ModelConfig, "recipe": Recipe, "input": {...}, "classes": [...], "data_hash": ...,
     "toolkit_version": ..., "epoch": n, "metrics": {...}, "split": {"fold": k},
     "threshold": {"value": t, "source": "validation Youden J" | "default 0.5 (...)" | "argmax (multi-class)"}}

`input` holds: dataset kind, "image" or "volume", channels, intensity window, crop, the network's
input size, how one channel meets the stem (input_adapt), and, from the cache's `cache.json`
parameters when there is a cache, the pixel spacing and the B-scan count and size. `threshold` is
the operating point chosen on this epoch's validation predictions (`engine.evaluate.operating_threshold`),
at which `explain` and `predict` call a sample positive.

Every run folder (`ppi train`, each fold or cell) and every study folder also gets `run.json`
(`write_run_record`): the command line, toolkit version and git commit (when it runs from a
checkout), Python, torch, CUDA and cuDNN versions, device name, host, seed, recipe hash and data
hash: what MONAI's bundle `metadata.json` and nnU-Net's `debug.json` record, enough to say later
what produced a number.
"""

from __future__ import annotations

import functools
import platform
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ppi_cli import __version__
from ppi_cli.config.loader import config_hash, to_dict
from ppi_cli.config.recipe import Recipe
from ppi_cli.data.cache import open_cache, rebuild_hint
from ppi_cli.files import write_json

__all__ = ["CacheDescription", "describe_cache", "checkpoint_meta", "class_names", "run_record", "write_run_record",
           "RUN_RECORD"]

RUN_RECORD = "run.json"

_SPACING_KEYS = ("spacing_mm", "pixel_spacing_mm", "resample_mm", "spacing")
_BSCAN_COUNT_KEYS = ("n_bscans", "bscans")
_BSCAN_SIZE_KEYS = ("bscan_size", "bscan_shape")


class CacheDescription(dict):
    """`cache.json`'s kind, params, extra and content hash (an empty description without a cache)."""


def describe_cache(kind: str, cache_dir: Path | None) -> CacheDescription:
    """Open and check a cache (`open_cache`) and keep what the checkpoint meta needs; None → empty."""
    if cache_dir is None:
        return CacheDescription()
    info = open_cache(Path(cache_dir), kind, rebuild=rebuild_hint(kind, cache_dir))
    return CacheDescription(params=dict(info.params), extra=dict(info.extra), hash=info.content_hash)


def _first(mapping: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if mapping.get(key) is not None:
            return mapping[key]
    return None


def class_names(recipe: Recipe, cache: CacheDescription) -> list[str]:
    """Class names from the cache (`classes` in params or extra), else generic ones."""
    for source in (cache.get("params", {}), cache.get("extra", {})):
        names = source.get("classes")
        if isinstance(names, list) and names:
            return [str(n) for n in names]
    k = recipe.model.num_classes
    return ["negative", "positive"] if k == 1 else [str(i) for i in range(k)]


def checkpoint_meta(recipe: Recipe, model: Any, cache: CacheDescription, *, epoch: int,
                    metrics: dict[str, float], fold: int | None,
                    threshold: dict[str, Any] | None = None) -> dict[str, Any]:
    """Plain JSON data describing a trained model (see the module docstring)."""
    params = {**cache.get("extra", {}), **cache.get("params", {})}
    volume = getattr(model, "kind", "image") == "volume"
    spacing = _first(params, _SPACING_KEYS)
    size = _first(params, _BSCAN_SIZE_KEYS)
    if size is None and params.get("bscan_height") is not None:  # the GA cache's form
        size = [params["bscan_height"], params.get("bscan_width")]
    size = size if volume else None
    return {
        "model": to_dict(recipe.model),
        "recipe": to_dict(recipe),
        "input": {
            "dataset": recipe.data.dataset,
            "kind": "volume" if volume else "image",
            "channels": recipe.model.in_channels,
            "window": list(recipe.data.window),
            "crop": recipe.data.crop,
            "input_size": recipe.model.input_size,
            "input_adapt": getattr(model, "input_adapt", "native"),
            "spacing_mm": float(spacing) if isinstance(spacing, (int, float)) else spacing,
            "n_bscans": _first(params, _BSCAN_COUNT_KEYS) if volume else None,
            "bscan_size": list(size) if isinstance(size, (list, tuple)) else size,
        },
        "classes": class_names(recipe, cache),
        "data_hash": cache.get("hash"),
        "toolkit_version": __version__,
        "epoch": epoch,
        "metrics": {k: (None if v != v else v) for k, v in metrics.items()},  # NaN is not JSON
        "split": {"fold": fold},
        "threshold": dict(threshold) if threshold is not None else {"value": 0.5, "source": "default 0.5"},
    }


@functools.lru_cache(maxsize=1)
def _git_commit() -> str | None:
    """The commit of the toolkit's checkout (None when installed from a wheel, or git is missing)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5,
                              check=False)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    if done.returncode != 0 or not commit:
        return None
    return commit + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def _device_name(device: Any) -> str:
    import torch

    if device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available():
        return str(torch.cuda.get_device_name(torch.device(device)))
    return f"cpu ({platform.processor() or platform.machine()})"


def run_record(*, seed: int | None, recipe_hash: str | dict[str, str] | None, data_hash: str | None,
               device: Any = None) -> dict[str, Any]:
    """What produced a run: command, versions, commit, device, host, seed and the recipe and data hashes."""
    import torch

    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "command": shlex.join([Path(sys.argv[0]).name or "ppi", *sys.argv[1:]]),
        "toolkit_version": __version__, "git_commit": _git_commit(),
        "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": cudnn, "device": str(device) if device is not None else None, "device_name": _device_name(device),
        "host": socket.gethostname(), "platform": platform.platform(), "seed": seed,
        "recipe_hash": recipe_hash, "data_hash": data_hash, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_run_record(folder: Path, recipe: Recipe | None, data_hash: str | None, *, device: Any = None,
                     seed: int | None = None) -> Path:
    """Write `run.json` (`run_record`) into a run or study folder; the recipe gives the seed and hash."""
    return write_json(Path(folder) / RUN_RECORD, run_record(
        seed=recipe.seed if recipe is not None and seed is None else seed,
        recipe_hash=config_hash(recipe) if recipe is not None else None, data_hash=data_hash, device=device))
