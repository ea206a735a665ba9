# SPDX-License-Identifier: MIT
"""The WBP map of a binary head taken from the clean pass that L_cls needs anyway (`ppi.map_from: auto`).

The clean forward runs once, under `WeightBackpropMode`, and serves both L_cls and the map.

*One backward for both.* For one logit z_i per sample, the gradient of the mean binary
cross-entropy with respect to sample i's input is

    ∂L_cls/∂x_i = Σ_j c_j · ∂z_j/∂x_i,   c_j = ∂L_cls/∂z_j = (σ(z_j) − y_j) / B.

When no layer had to be given a WBP rule (convolutions, linear layers, the ReLU family, pooling,
frozen batch norm and dropout already back-propagate as WBP does) and, with that, no layer mixes
the samples, this is c_i · W^0_i, W^0_i the WBP row of eq. 6. So L_cls's own backward, seeded
with c and run down to the input, yields every row: W^0_i = (∂L_cls/∂x)_i / c_i. The PPI step
then has no saliency pass at all. With `create_graph` that backward keeps its graph for the map
and takes the weight gradients outside it; the double back-propagation is the one the separate
pass would have needed. c is computed as ((1 − y)·σ(z) − y·σ(−z)) / B, equal to (σ(z) − y) / B
but without cancelling to 0 for a confident correct prediction (σ(20) − 1 is 0 in float32); it
is detached, so dividing by it is exact. A c_i below `_SMALLEST_SEED` (|z_i| above about 66)
hands the map back to the separate pass.

*A backward of its own.* When some layer got a WBP rule (train-mode batch norm, whose statistics
WBP holds constant and which couples the samples; SiLU, GELU, ... whose secant is not their
derivative), the map takes an input-only backward over the same forward graph with the rules
on, and L_cls a normal one. Batch norm in that forward updates the running statistics as
training's clean forward does.

Either way the map is that of the network as this training step runs it, **with this step's
dropout masks**, where the separate pass switches dropout off. Not shared (the trainer runs the
separate pass): multi-class heads (L_cls's gradient mixes every class's row), the multi-view
model (saliency per B-scan on the slice logit), saliency methods other than `wbp`, float16
autocast (scaled gradients), and instance norm tracking running statistics (the WBP forward
does not update them).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ppi_cli.autograd.double_backward import piecewise_linear_backward
from ppi_cli.autograd.phases import phase
from ppi_cli.autograd.tensors import broadcast_per_sample, full_precision
from ppi_cli.saliency.rules import WeightBackpropMode
from ppi_cli.saliency.wbp import map_from_rows

__all__ = ["shares_clean_pass", "ClassificationWithMap", "classification_with_map", "classification_seed"]

_SMALLEST_SEED = 1e-30  # c_i below this would leave c_i·∂z_i/∂x in float32's subnormal range


def shares_clean_pass(model: nn.Module, *, map_from: str, saliency: str, binary: bool, volume: bool,
                      scaled: bool) -> bool:
    """Whether the PPI step may take the WBP map from the clean pass (see the module docstring)."""
    if map_from != "auto" or saliency != "wbp" or not binary or volume or scaled:
        return False
    # instance norm tracking running statistics: the WBP forward would not update them
    return not any(isinstance(m, nn.modules.instancenorm._InstanceNorm) and m.training and m.track_running_stats
                   for m in model.modules())


def classification_seed(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """∂L_cls/∂z of the mean binary cross-entropy, `(B, 1)`, without cancellation for confident predictions."""
    z = logits.detach()
    y = labels.to(z.dtype).view_as(z)
    return ((1 - y) * torch.sigmoid(z) - y * torch.sigmoid(-z)) / z.shape[0]


@dataclass
class ClassificationWithMap:
    """What `classification_with_map` returns.

    Attributes:
        loss: L_cls of the clean batch, detached (for the record; its gradients are in `.grad`
            or in `deferred`).
        saliency: `(B, 1, *spatial)` WBP map of the positive logit (sign not yet turned to the true
            class), in the graph when `create_graph`; None when a seed was too small (the caller
            then takes the map from the separate pass).
        deferred: None when L_cls's gradients are already in `.grad`. Otherwise a scalar whose
            gradient is L_cls's, for the caller to add to its last backward: with `create_graph`
            and a map that took its own backward, that backward must still traverse the clean
            forward graph (the map depends on batch statistics or secants of its activations),
            and one traversal then serves both.
    """

    loss: torch.Tensor
    saliency: torch.Tensor | None
    deferred: torch.Tensor | None = None


def classification_with_map(net: nn.Module, x: torch.Tensor, labels: torch.Tensor, *,
                            create_graph: bool) -> ClassificationWithMap:
    """One clean forward for L_cls and the WBP map (see the module docstring and `ClassificationWithMap`).

    Args:
        net: The model, or its DDP wrapper (called inside `no_sync` by the trainer).
        x: `(B, C, *spatial)` clean images.
        labels: `(B,)` float {0, 1}.
        create_graph: Keep the map's graph for L_reg and the masks (double back-propagation).
    """
    inputs = x.detach().requires_grad_(True)
    mode = WeightBackpropMode(update_statistics=True)  # the clean forward of training: running statistics move
    cheaper = piecewise_linear_backward(weight_grads=True) if create_graph else None
    with phase("clean forward"), mode, cheaper or contextlib.nullcontext():
        logits = net(inputs)
    if cheaper is not None and mode.rewritten:
        cheaper.weight_grads = False  # the map's own backward asks for input gradients only
    with torch.no_grad():  # L_cls of a binary head (ppi.losses.classification_loss), whose ∂/∂z is the seed below
        z = full_precision(logits)  # half-precision autocast logits in float32, like the trainer's other losses
        loss = F.binary_cross_entropy_with_logits(z.squeeze(1), labels.to(z.dtype))
    seed = classification_seed(logits, labels).to(logits.dtype)
    if mode.rewritten:
        with phase("map backward"), mode.backward_rules():
            (rows,) = torch.autograd.grad(logits[:, 0].sum(), inputs, retain_graph=True, create_graph=create_graph)
        saliency = map_from_rows(inputs, rows)
        if create_graph:
            return ClassificationWithMap(loss, saliency, deferred=(logits * seed).sum())
        with phase("L_cls backward"):
            torch.autograd.backward(logits, seed)
        return ClassificationWithMap(loss, saliency)
    if bool((seed.abs() < _SMALLEST_SEED).any()):
        with phase("L_cls backward"):
            torch.autograd.backward(logits, seed)
        return ClassificationWithMap(loss, None)
    params = [p for p in net.parameters() if p.requires_grad]
    with phase("L_cls and map backward"):
        if create_graph:
            grads = torch.autograd.grad(logits, [inputs, *params], seed, create_graph=True, allow_unused=True)
            for p, g in zip(params, grads[1:], strict=True):
                if g is not None:
                    g = g.detach()
                    p.grad = g if p.grad is None else p.grad.add_(g)
            input_grad = grads[0]
        else:
            torch.autograd.backward(logits, seed, inputs=[inputs, *params])
            input_grad = inputs.grad
    rows = input_grad / broadcast_per_sample(seed, x)  # W^0_i = (∂L_cls/∂x)_i / c_i
    return ClassificationWithMap(loss, map_from_rows(inputs, rows))
