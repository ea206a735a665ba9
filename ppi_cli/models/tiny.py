# SPDX-License-Identifier: MIT
"""`tiny`: a small CNN of conv-BN-ReLU blocks and max-pools so every recipe has a CPU-sized twin.

Three blocks by default (about 24 k parameters): it trains in seconds on a laptop, yet has every
layer kind WBP has a rule for (convolution, batch norm, ReLU, max-pool, average-pool, linear).
Each block after the first follows a 2x max-pool, so `model.tiny_blocks` sets how far a unit of
the last block sees: 18 px of the input with 3 blocks, 38 px with 4 (block n adds 5·2^(n-2) px:
its pool and its convolution). The GA CPU twins read 64-px B-scans with 4 (docs/ppi.md).
`model.tiny_norm: group` swaps batch norm for GroupNorm, so an image's output does not depend on
the batch it is in nor on train/eval mode (PPI's intervened images meet the same function as L_cls).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

from torch import nn

from ppi_cli.config.recipe import ModelConfig
from ppi_cli.errors import ConfigError
from ppi_cli.models.registry import assemble_classifier, model_entry, register_model

__all__ = ["tiny", "TINY_WIDTHS"]

TINY_WIDTHS = (16, 32, 64)  # the first three blocks; any further block keeps the last width


GROUP_CHANNELS = 8  # `tiny_norm: group`: channels per GroupNorm group (2 groups in the first block)


def _block(c_in: int, c_out: int, norm: str) -> nn.Sequential:
    # No conv bias: the norm's shift makes it redundant.
    layer = nn.BatchNorm2d(c_out) if norm == "batch" else nn.GroupNorm(c_out // GROUP_CHANNELS, c_out)
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), layer, nn.ReLU())


@register_model("tiny", "conv-BN-ReLU blocks (3 by default, model.tiny_blocks), 24 k parameters with 3 "
                "(CPU twin of every recipe)", first_conv="body.block1.0", gradcam_layer="body.block3")
def tiny(cfg: ModelConfig) -> nn.Module:
    """The tiny CNN: `(B, C, H, W)` → 16 → 32 → 64 (→ 64 …) channels → global average → `(B, K)` logits."""
    if cfg.weights == "imagenet":
        raise ConfigError("model.weights: imagenet: the tiny model has no ImageNet weights",
                          hint="use weights: none or a path")
    n = cfg.tiny_blocks
    widths = TINY_WIDTHS[:n] + TINY_WIDTHS[-1:] * max(0, n - len(TINY_WIDTHS))
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    c_in = cfg.in_channels
    for i, width in enumerate(widths, start=1):
        if i > 1:
            layers[f"pool{i - 1}"] = nn.MaxPool2d(2)
        layers[f"block{i}"] = _block(c_in, width, cfg.tiny_norm)
        c_in = width
    layers["pool"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten(1)  # (B, last width)
    head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(c_in, cfg.num_classes))
    # GradCAM's layer is the last block, whatever the depth
    entry = dataclasses.replace(model_entry("tiny"), gradcam_layer=f"body.block{n}")
    return assemble_classifier(cfg, nn.Sequential(layers), head, c_in, entry=entry)
