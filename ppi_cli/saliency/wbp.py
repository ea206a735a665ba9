# SPDX-License-Identifier: MIT
"""Weight Back Propagation (WBP), the paper's saliency (Sec. 3.2, Eqs. 6-10, Table 1).

W^L is the K x K identity; each layer maps W^{l+1} to W^l by its rule; the map is the target row
of W^0 times the input, summed over input channels: s = sum_c x ⊙ W^0[target] (Eq. 7). One
forward under `WeightBackpropMode` and one backward to the input compute every sample's row at
once, at the cost of an input gradient (see `rules.py` for why that is exact).
"""

from __future__ import annotations

import torch
from torch import nn

from ppi_cli.saliency.core import Target, as_input, register_saliency, target_score
from ppi_cli.saliency.rules import WeightBackpropMode

__all__ = ["weight_backprop", "weight_backprop_rows", "map_from_rows"]


def weight_backprop_rows(model: nn.Module, x: torch.Tensor, target: Target, *,
                         create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The input-level WBP rows W^0[target] ``(B, C, *spatial)`` and the (differentiable) input used.

    Args:
        model: Returns logits ``(B, K)``.
        x: ``(B, C, *spatial)`` float input.
        target: Class index per sample or one int.
        create_graph: Keep the graph of the rows for a loss on the map.
    """
    inputs = as_input(x)
    mode = WeightBackpropMode()
    with mode:
        output = model(inputs)
    score, _ = target_score(output, target, x.shape[0])
    with mode.backward_rules():
        (rows,) = torch.autograd.grad(score, inputs, create_graph=create_graph)
    return rows, inputs


@register_saliency("wbp", summary="s = sum_c x * W0[target]: the WBP rows (secant activations, "
                                  "constant normalisation statistics) times the input, signed")
def weight_backprop(model: nn.Module, x: torch.Tensor, target: Target, *, create_graph: bool) -> torch.Tensor:
    """The WBP saliency map s = Σ_c x ⊙ W^0[target] ``(B, 1, *spatial)``, signed (paper Eq. 7)."""
    rows, inputs = weight_backprop_rows(model, x, target, create_graph=create_graph)
    return map_from_rows(inputs, rows)


def map_from_rows(inputs: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Eq. 7 from the rows: s = Σ_c x ⊙ W^0[target], ``(B, 1, *spatial)``, signed."""
    return (inputs * rows).sum(dim=1, keepdim=True)
