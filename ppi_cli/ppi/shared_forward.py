# SPDX-License-Identifier: MIT
"""WBP from the clean forward itself, for networks where that is exactly WBP (one forward saved).

WBP's rules equal the transposed Jacobians of convolution, linear, pooling and ReLU layers; they
differ from autograd only for other activations (secant instead of derivative) and for
normalisation layers in training mode (statistics held constant). A network made of the former
alone (VGG11: convolutions, ReLU, max-pool, linear, dropout) has WBP rows W^0[y] = ∂z_y/∂x, so
the gradient of the clean forward's target logits with respect to the input *is* the WBP map
(paper eq. 7) and the training step need not run a second forward for the saliency. The map is
then that of the network as sampled for this step, dropout included.

The step uses this only with `create_graph: false`: a map kept in the graph would keep the clean
forward's activations alive until the last backward, which costs more memory than the second
forward saves time (measured: docs/benchmarks.md).

Every other network (batch norm, other activations), every other saliency method and the
multi-view model take the saliency engine's own pass (`ppi_cli.saliency.saliency_map`).
"""

from __future__ import annotations

import torch
from torch import nn

from ppi_cli.config.recipe import PPIConfig

__all__ = ["shares_clean_forward", "wbp_from_logits"]

_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def shares_clean_forward(model: nn.Module, cfg: PPIConfig, volume: bool) -> bool:
    """True when WBP of `model` is the input gradient of its logits in training mode (see the module docstring)."""
    if volume or cfg.saliency != "wbp":
        return False
    for module in model.modules():
        if isinstance(module, _NORMS) and module.training:
            return False
        if type(module).__module__ == nn.ReLU.__module__ and not isinstance(module, nn.ReLU):
            return False  # another activation: WBP uses its secant, not its derivative
    return True


def wbp_from_logits(logits: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor, *, binary: bool,
                    create_graph: bool) -> torch.Tensor:
    """s = Σ_c x ⊙ ∂z_y/∂x `(B, 1, *spatial)` for the true class y, from a forward that is kept for more.

    Args:
        logits: `(B, K)` of `inputs`, still in the graph.
        inputs: The forward's input, a tensor that requires grad.
        labels: True classes (binary: the map is negated for negatives, as `pseudo_intervention` does).
        binary: One logit per sample.
        create_graph: Keep the map in the graph.
    """
    from ppi_cli.ppi.intervention import true_class_sign

    if binary:
        score = logits[:, 0].sum()
    else:
        score = logits.gather(1, labels.long()[:, None]).sum()  # (B, 1) summed
    (rows,) = torch.autograd.grad(score, inputs, create_graph=create_graph, retain_graph=True)
    s = (inputs * rows).sum(dim=1, keepdim=True)  # (B, 1, *spatial)
    if binary:
        s = s * true_class_sign(labels).to(s.dtype).view(-1, *([1] * (s.ndim - 1)))
    return s if create_graph else s.detach()
