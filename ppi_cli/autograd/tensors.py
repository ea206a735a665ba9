# SPDX-License-Identifier: MIT
"""Two tensor conventions the step's machinery and the paper's losses and masks share.

They sit here, below `ppi/`, so the fast paths of this package use them without importing the
method's modules; `ppi.losses` and `ppi.masks` re-export them under their old names.
"""

from __future__ import annotations

import torch

__all__ = ["broadcast_per_sample", "full_precision"]


def broadcast_per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """One value per sample, `(B,)` or `(B, 1)`, viewed as `(B, 1, 1, ...)` to broadcast over `like` `(B, ...)`."""
    return values.view(-1, *([1] * (like.ndim - 1)))


def full_precision(t: torch.Tensor) -> torch.Tensor:
    """Half-precision autocast outputs in float32 for the losses; float32/float64 left as they are."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t
