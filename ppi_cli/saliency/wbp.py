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

from ppi_cli.errors import ModelError
from ppi_cli.saliency.core import Target, as_input, register_saliency, target_score
from ppi_cli.saliency.rules import WeightBackpropMode

__all__ = ["weight_backprop", "weight_backprop_rows", "map_from_rows", "wbp_unsupported", "check_wbp_supports"]

# Leaf modules whose WBP rule is exact (rules.py): linear maps and pools by autograd's transposed
# Jacobian, activations by their secant (the ReLU family by autograd), normalisation with constant
# statistics, sigmoid gates as constant scales, and modules that only reshape, select or pass on.
WBP_MODULES: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.Bilinear, nn.Conv1d, nn.Conv2d, nn.Conv3d,
    nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Mish, nn.Hardswish, nn.Tanh,
    nn.Softsign, nn.ELU, nn.SELU, nn.CELU, nn.Hardtanh, nn.Sigmoid, nn.Hardsigmoid,
    nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.GroupNorm, nn.LayerNorm,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
    nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
    nn.ZeroPad2d, nn.ConstantPad2d,
    nn.Embedding,  # indexed by positions, not by the image: no row flows through it
)
# Containers whose forward multiplies two image-dependent branches in a way no rule covers
WBP_REFUSED: tuple[type[nn.Module], ...] = (nn.MultiheadAttention, nn.Transformer, nn.TransformerEncoderLayer,
                                            nn.TransformerDecoderLayer)
# Leaves of ppi's own and torchvision's models, by class name (no import of torchvision here)
WBP_MODULE_NAMES = frozenset({"Preprocess", "StochasticDepth", "Permute"})


def wbp_unsupported(model: nn.Module) -> list[str]:
    """Type names of the leaf modules of `model` that no WBP rule covers (empty: WBP is exact on it).

    Containers (modules with children) are not judged by type: the sums and gated products their
    forward writes are covered by `rules.py`; every leaf they hold is checked.
    """
    found: list[str] = []
    for module in model.modules():
        if isinstance(module, WBP_REFUSED):
            name = type(module).__name__
            if name not in found:
                found.append(name)
            continue
        if next(module.children(), None) is not None or isinstance(module, WBP_MODULES):
            continue
        name = type(module).__name__
        if name not in WBP_MODULE_NAMES and name not in found:
            found.append(name)
    return found


def check_wbp_supports(model: nn.Module, name: str) -> None:
    """Stop, in one line, when `model` (the recipe's `model.name` = `name`) holds a layer WBP has no rule for.

    Raises:
        ModelError: Naming the first unsupported module type and the methods that do support it.
    """
    missing = wbp_unsupported(model)
    if missing:
        raise ModelError(f"ppi.saliency: wbp has no rule for the {missing[0]} module of {name}"
                         + (f" (nor {', '.join(missing[1:])})" if missing[1:] else ""),
                         hint="set ppi.saliency: gradient or gradcam, which support any module")


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
