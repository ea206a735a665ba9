# SPDX-License-Identifier: MIT
"""Named spans of a training step, for `ppi bench train --profile` (torch.profiler's `record_function`).

Outside a profiler a span costs about 10 µs (a PPI step has about ten). Under one, each span's
inclusive CPU time says which pass of the step the time went to: on CPU a backward runs on the
calling thread, so a span around a backward call holds the whole backward.
"""

from __future__ import annotations

import torch

__all__ = ["PREFIX", "phase"]

PREFIX = "ppi step: "


def phase(name: str) -> torch.profiler.record_function:
    """A context manager marking `name` as a phase of the training step."""
    return torch.profiler.record_function(PREFIX + name)
