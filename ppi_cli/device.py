# SPDX-License-Identifier: MIT
"""Device selection, seeding and the host allocator for CPU training."""

from __future__ import annotations

import ctypes
import os
import random
import sys

import numpy as np
import torch

from ppi_cli.errors import ConfigError

__all__ = ["select_device", "seed_everything", "keep_host_memory", "glibc", "M_MMAP_THRESHOLD"]


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


_M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4  # glibc mallopt parameters (malloc.h)
_host_memory_kept = False


def glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc on Linux (it has `mallopt` and `malloc_trim`), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def keep_host_memory() -> bool:
    """Let glibc keep freed tensor memory for reuse instead of handing it back to the kernel (CPU training).

    By default glibc serves every block above 32 MiB with a fresh `mmap` and unmaps it on free, so
    each large activation of every step is page-faulted and zeroed by the kernel again (measured on
    the VGG11 PPI step in docs/benchmarks.md). With mmap off and no trimming, freed blocks go back
    to the heap and the next step reuses them; the process keeps its peak footprint, as PyTorch's
    CUDA allocator does. Set `PPI_MALLOC=system` to leave glibc's defaults. Returns whether the
    settings were applied (never off glibc).
    """
    global _host_memory_kept
    if _host_memory_kept:
        return True
    libc = glibc()
    if libc is None or os.environ.get("PPI_MALLOC", "").lower() == "system":
        return False
    _host_memory_kept = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _host_memory_kept
