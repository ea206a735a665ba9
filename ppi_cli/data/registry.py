# SPDX-License-Identifier: MIT
"""The dataset registry: one Dataset class per cache kind, registered by its module on import.

The Dataset modules (`lidc/dataset.py`, `ga/dataset.py`, `folder/dataset.py`, `synth/dataset.py`)
import this module; `datasets.py` imports them, so asking `datasets` for a kind finds it registered.
"""

from __future__ import annotations

from collections.abc import Callable

from ppi_cli.errors import ConfigError

__all__ = ["register_dataset", "dataset_class", "dataset_kinds", "MANIFEST_COLUMNS"]

# Columns every manifest has, whatever the dataset (splits need subjects and labels).
MANIFEST_COLUMNS = ("sample_id", "subject_id", "label")

_REGISTRY: dict[str, type] = {}


def register_dataset(kind: str) -> Callable[[type], type]:
    """Class decorator registering a Dataset for a cache kind; a duplicate kind is an error."""

    def wrap(cls: type) -> type:
        if kind in _REGISTRY:
            raise ValueError(f"dataset kind '{kind}' is registered twice")
        _REGISTRY[kind] = cls
        return cls

    return wrap


def dataset_kinds() -> list[str]:
    """The registered kinds, sorted."""
    return sorted(_REGISTRY)


def dataset_class(kind: str) -> type:
    """The Dataset class of a cache kind.

    Raises:
        ConfigError: No dataset of that kind, listing the known ones.
    """
    if kind not in _REGISTRY:
        raise ConfigError(f"data.dataset: no dataset of kind '{kind}'",
                          hint=f"use one of: {', '.join(dataset_kinds())}")
    return _REGISTRY[kind]
