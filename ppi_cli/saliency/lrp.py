# SPDX-License-Identifier: MIT
"""Layer-wise Relevance Propagation through zennit (optional extra ``lrp``), the paper's LRP rows (Table 7).

Each method is a zennit composite: a rule for convolutions, the epsilon rule for dense layers,
activations pass relevance through, average pools and sums distribute it in proportion. The
relevance at the output is the one-hot of the target logit; the map is the relevance of each
input element summed over channels (signed). In eval mode batch norm is merged into the
preceding convolution or linear layer (zennit's canonizer; restored afterwards). In train mode it
is not, because the forward normalises with batch statistics that a merge would replace; relevance
then passes batch norm as a gradient.

zennit's rules are not differentiable twice, so LRP refuses ``create_graph=True``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ppi_cli.errors import ConfigError, MissingExtraError
from ppi_cli.saliency.core import Target, class_logits, register_saliency, resolve_target

__all__ = ["lrp_map", "LRP_METHODS"]

# method -> what it does; the composites are built from zennit on first use. epsilon 1e-6 and
# gamma 0.25 are the usual defaults (Montavon et al. 2019; zennit's own composites use them).
LRP_METHODS: dict[str, str] = {
    "lrp-epsilon": "epsilon rule everywhere (LRP-ε, ε = 1e-6)",
    "lrp-gamma": "gamma rule (γ = 0.25) on convolutions, epsilon on dense layers",
    "lrp-alphabeta": "alpha-beta rule (α = 2, β = 1) on convolutions, epsilon on dense layers",
    "lrp-flat": "flat rule on the first layer, z-plus on convolutions, epsilon on dense layers",
    "lrp-zplus": "z-plus rule on convolutions, epsilon on dense layers",
}


def _zennit() -> tuple[Any, Any, Any, Any]:
    try:
        from zennit import canonizers, composites, rules, types
    except ImportError:
        raise MissingExtraError("LRP saliency", extra="lrp", module="zennit") from None
    return canonizers, composites, rules, types


def _composite(method: str, merge_batch_norm: bool) -> Any:
    canonizers, composites, rules, types = _zennit()
    conv_rules: dict[str, Callable[[], Any]] = {
        "lrp-epsilon": lambda: rules.Epsilon(epsilon=1e-6),
        "lrp-gamma": lambda: rules.Gamma(gamma=0.25),
        "lrp-alphabeta": lambda: rules.AlphaBeta(alpha=2.0, beta=1.0),
        "lrp-flat": lambda: rules.ZPlus(),
        "lrp-zplus": lambda: rules.ZPlus(),
    }
    layer_map = [
        (types.Activation, rules.Pass()),
        (types.AvgPool, rules.Norm()),
        (types.Convolution, conv_rules[method]()),
        (nn.Linear, rules.Epsilon(epsilon=1e-6)),
    ]
    merge = [canonizers.SequentialMergeBatchNorm()] if merge_batch_norm else []
    if method == "lrp-flat":
        return composites.SpecialFirstLayerMapComposite(
            layer_map=layer_map, first_map=[(types.Linear, rules.Flat())], canonizers=merge)
    return composites.LayerMapComposite(layer_map=layer_map, canonizers=merge)


def lrp_map(model: nn.Module, x: torch.Tensor, target: Target, *, create_graph: bool, method: str) -> torch.Tensor:
    """LRP relevance of `target`, summed over input channels ``(B, 1, *spatial)``, signed.

    Raises:
        ConfigError: `create_graph` is requested.
        MissingExtraError: zennit is not installed.
    """
    if create_graph:
        raise ConfigError(f"saliency method '{method}' cannot keep a graph (create_graph=True): zennit's rules "
                          "are not differentiable twice", hint="use wbp, gradient or gradcam, or create_graph=False")
    batch_norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    composite = _composite(method, merge_batch_norm=not any(m.training for m in batch_norms))
    inputs = x.detach().requires_grad_(True)
    with composite.context(model) as modified:
        logits = class_logits(modified(inputs), x.shape[0])
        index = resolve_target(target, logits)
        seed = torch.zeros_like(logits).scatter_(1, index[:, None], 1.0)  # one-hot relevance (B, K)
        (relevance,) = torch.autograd.grad(logits, inputs, grad_outputs=seed)
    return relevance.sum(dim=1, keepdim=True)  # (B, 1, *spatial)


def _register(method: str) -> None:
    def compute(model: nn.Module, x: torch.Tensor, target: Target, *, create_graph: bool) -> torch.Tensor:
        return lrp_map(model, x, target, create_graph=create_graph, method=method)

    compute.__doc__ = f"LRP: {LRP_METHODS[method]}."
    register_saliency(method, differentiable=False, summary=LRP_METHODS[method])(compute)


for _name in LRP_METHODS:
    _register(_name)
