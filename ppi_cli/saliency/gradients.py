# SPDX-License-Identifier: MIT
"""The gradient-based comparison methods of the paper: Gradient and GradCAM (Sec. 4, Table 7).

`gradient` is the saliency of Simonyan et al.: |dz_target/dx|, max over input channels.
`gradcam` is Selvaraju et al.'s map: ReLU(Σ_k a_k A_k) with A the output of a convolutional layer
and a_k the spatial mean of dz_target/dA_k, upsampled to the input size.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from ppi_cli.errors import ConfigError, ModelError
from ppi_cli.saliency.core import Target, as_input, register_saliency, target_score

__all__ = ["input_gradient", "gradcam", "gradcam_layer"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_UPSAMPLE = {1: "linear", 2: "bilinear", 3: "trilinear"}


@register_saliency("gradient", summary="|dz_target/dx|, max over input channels")
def input_gradient(model: nn.Module, x: torch.Tensor, target: Target, *, create_graph: bool) -> torch.Tensor:
    """Absolute input gradient of the target logit, max over channels ``(B, 1, *spatial)``.

    In train mode with batch norm the gradient is that of the summed target logits, so it includes
    the coupling of samples through the batch statistics, as autograd defines it.
    """
    inputs = as_input(x)
    score, _ = target_score(model(inputs), target, x.shape[0])
    (grad,) = torch.autograd.grad(score, inputs, create_graph=create_graph)
    return grad.abs().amax(dim=1, keepdim=True)  # (B, 1, *spatial)


def gradcam_layer(model: nn.Module, layer: str | nn.Module | None = None) -> nn.Module:
    """The module whose output GradCAM weighs.

    Order: `layer` (a dotted module name or a submodule), else the model's ``gradcam_layer``
    attribute (the model wrappers set it to their last convolutional block), else the last
    Conv1d/2d/3d module of `model.modules()`.

    Raises:
        ConfigError: The named layer is not in the model, or the model has no convolution.
    """
    layer = layer if layer is not None else getattr(model, "gradcam_layer", None)
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in model.modules()):
            raise ConfigError("gradcam layer is not a submodule of the model", hint="pass a module of this model")
        return layer
    if isinstance(layer, str):
        try:
            return model.get_submodule(layer)
        except AttributeError:
            convs = [n for n, m in model.named_modules() if isinstance(m, _CONV)][-3:]
            raise ConfigError(f"gradcam layer '{layer}' is not a module of {type(model).__name__}",
                              hint=f"name a module, e.g. {', '.join(convs) or 'a convolution'}") from None
    if layer is not None:
        raise ConfigError(f"gradcam layer must be a module name or a module, got {type(layer).__name__}")
    convs = [m for m in model.modules() if isinstance(m, _CONV)]
    if not convs:
        raise ConfigError(f"gradcam needs a convolutional layer and {type(model).__name__} has none",
                          hint="pass layer=... or set model.gradcam_layer")
    return convs[-1]


@contextmanager
def _captured_output(module: nn.Module) -> Iterator[list[torch.Tensor]]:
    outputs: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: outputs.append(out))
    try:
        yield outputs
    finally:
        handle.remove()


@register_saliency("gradcam", summary="ReLU(sum_k mean(dz/dA_k) A_k) of a conv layer, upsampled to the input")
def gradcam(model: nn.Module, x: torch.Tensor, target: Target, *, create_graph: bool,
            layer: str | nn.Module | None = None) -> torch.Tensor:
    """GradCAM of `layer` ``(B, 1, *spatial)``, non-negative, upsampled to the input size.

    The layer's output is taken as the model leaves it: an in-place activation right after a
    convolution (VGG's ``ReLU(inplace=True)``) rectifies it first, which is the usual GradCAM of
    "the last convolutional block".
    """
    module = gradcam_layer(model, layer)
    inputs = as_input(x)
    with _captured_output(module) as outputs:
        output = model(inputs)
    if len(outputs) != 1 or not isinstance(outputs[0], torch.Tensor):
        raise ModelError(f"gradcam layer {type(module).__name__} ran {len(outputs)} times or returned no tensor",
                         hint="pass layer= naming a module that runs once and returns a tensor")
    features = outputs[0]
    if features.ndim != x.ndim or features.shape[0] != x.shape[0]:
        raise ModelError(f"gradcam layer output has shape {tuple(features.shape)}; it needs (B, C, *spatial) "
                         f"like the input {tuple(x.shape)}", hint="pass layer= naming a convolutional block")
    score, _ = target_score(output, target, x.shape[0])
    (grad,) = torch.autograd.grad(score, features, create_graph=create_graph)
    weights = grad.mean(dim=tuple(range(2, grad.ndim)), keepdim=True)  # (B, C, 1, ..., 1)
    cam = F.relu((weights * features).sum(dim=1, keepdim=True))  # (B, 1, *feature spatial)
    spatial = tuple(x.shape[2:])
    if tuple(cam.shape[2:]) != spatial:
        cam = F.interpolate(cam, size=spatial, mode=_UPSAMPLE[len(spatial)], align_corners=False)
    return cam.to(x.dtype)
