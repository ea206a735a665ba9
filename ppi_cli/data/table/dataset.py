# SPDX-License-Identifier: MIT
"""The `table` Dataset: a cohort cache written by `ppi prepare table`, served like GA volumes.

A `table` cache stores `volumes.npy` (N, S, size, size) uint8 in the GA layout (S = 1 when every
image is 2-D), so the GA Dataset serves it unchanged: training samples K slices per sample
(`data/bscans.sample_bscans`) with their position ids and flips/noise from the recipe, evaluation
serves every slice, and the multi-view model pools them. Only the cache kind differs.
"""

from __future__ import annotations

from ppi_cli.data.ga.dataset import GaDataset
from ppi_cli.data.registry import register_dataset

__all__ = ["TableDataset"]


@register_dataset("table")
class TableDataset(GaDataset):
    """Samples of a `table` cache as `{"image", "positions", "label", "index"}` (datasets.py layout).

    Example:
        >>> ds = TableDataset(Path("cache/cohort"), None, recipe, train=False)
        >>> ds[0]["image"].shape  # (S, 1, size, size)
    """

    kind = "table"
