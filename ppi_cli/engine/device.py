# SPDX-License-Identifier: MIT
"""Device selection and seeding."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from ppi_cli.errors import ConfigError

__all__ = ["select_device", "seed_everything"]


def select_device(spec: str = "auto") -> torch.device:
    """Turn `--device auto|cpu|cuda|cuda:N` into a `torch.device`.

    `auto` takes the first CUDA device when there is one, else the CPU.

    Raises:
        ConfigError: The spec is malformed or names a CUDA device that is not there.
    """
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        index_text = spec.partition(":")[2]
        if index_text and not index_text.isdigit():
            raise ConfigError(f"--device {spec}: expected cuda:N with N a number", hint="--device cuda:0")
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {spec}: CUDA is not available on this machine", hint="--device cpu")
        index = int(index_text) if index_text else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) here",
                              hint=f"--device cuda:{torch.cuda.device_count() - 1}")
        return torch.device("cuda", index)
    raise ConfigError(f"--device {spec}: unknown device", hint="use auto, cpu, cuda or cuda:N")


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch; with `deterministic`, ask torch for deterministic kernels."""
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        if torch.backends.cudnn.is_available():
            torch.backends.cudnn.benchmark = False
