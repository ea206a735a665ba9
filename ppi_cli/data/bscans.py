# SPDX-License-Identifier: MIT
"""K B-scans of a volume for one training sample (paper appendix E.2): the one place that samples them.

Every volume Dataset (`ga`, and `synthetic` with `synthetic_slices`) serves training samples of K
B-scans drawn here, kept in B-scan order with their position ids; evaluation serves every B-scan.
"""

from __future__ import annotations

import torch

__all__ = ["sample_bscans"]


def sample_bscans(n: int, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Positions of `min(k, n)` of a volume's `n` B-scans, drawn without replacement, in B-scan order.

    Returns:
        `(K,)` int64 indices, ascending.
    """
    return torch.randperm(n, generator=generator)[: min(k, n)].sort().values
