# SPDX-License-Identifier: MIT
"""`inception_v3` for LIDC patches and GA B-scans (paper sections 4.2-4.3).

torchvision's Inception_v3, wrapped so that `forward` always returns one tensor of logits:

- the input is resized to `model.input_size` (299 for the paper's models) inside the wrapper;
- ImageNet weights expect `(x - 0.5) / 0.5` inputs (torchvision's `transform_input` maps to that),
  so that is the normalisation here, identical for all channels, which makes the `sum` adaptation
  of a one-channel image exact;
- the auxiliary classifier is dropped after the weights are loaded: the paper does not use an
  auxiliary loss, and a second output type would break the one-contract rule (docs/train.md);
- on the CPU the 3×3 average pools of the mixed blocks (stride 1, zero padding counted) run as
  depthwise convolutions (`autograd.pools.box_pool_as_convolution`): the same linear map and the
  same gradient, five to ten times faster, which made them about 14 % of a plain training step.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ppi_cli.autograd.pools import box_pool_as_convolution
from ppi_cli.config.recipe import ModelConfig
from ppi_cli.models.registry import assemble_classifier, model_entry, register_model
from ppi_cli.models.weights import backbone_state, load_into

__all__ = ["inception_v3", "INCEPTION_BLOCKS"]

# The blocks of torchvision's Inception3._forward, in order (AuxLogits left out).
INCEPTION_BLOCKS = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
                    "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                    "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool")


class _Blocks(nn.Sequential):
    """Inception's blocks in order (state-dict keys as a plain `nn.Sequential`), with fast 3×3 average pools."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        with box_pool_as_convolution():
            return super().forward(x)


@register_model("inception_v3", "torchvision Inception_v3, input resized to model.input_size (paper: LIDC, GA)",
                mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), stem_channels=3, first_conv="body.Conv2d_1a_3x3.conv",
                gradcam_layer="body.Mixed_7c", min_size=75, imagenet="Inception_V3_Weights.IMAGENET1K_V1")
def inception_v3(cfg: ModelConfig) -> nn.Module:
    """Inception_v3 with a `(B, K)` head on its 2048-d pooled features."""
    import torchvision.models as tvm

    # aux_logits=True so that ImageNet state dicts (which hold AuxLogits.*) load strictly.
    net = tvm.Inception3(num_classes=cfg.num_classes, aux_logits=True, transform_input=False, init_weights=True,
                         dropout=cfg.dropout)
    state = backbone_state(cfg.weights, model_entry(cfg.name).imagenet_weights(), cfg.name)
    if state is not None:
        load_into(net, state, source=cfg.weights, head_keys=("fc.", "AuxLogits.fc."))
    body = _Blocks(OrderedDict(
        [(name, getattr(net, name)) for name in INCEPTION_BLOCKS] + [("flatten", nn.Flatten(1))]  # (B, 2048)
    ))
    head = nn.Sequential(OrderedDict(dropout=net.dropout, fc=net.fc))
    return assemble_classifier(cfg, body, head, 2048)
