# SPDX-License-Identifier: MIT
"""`tiny`: a three-block CNN (conv-BN-ReLU, max-pool) so every recipe has a CPU-sized twin.

About 24 k parameters: it trains in seconds on a laptop, yet has every layer kind WBP has a rule
for (convolution, batch norm, ReLU, max-pool, average-pool, linear).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ppi_cli.config.recipe import ModelConfig
from ppi_cli.errors import ConfigError
from ppi_cli.models.registry import assemble_classifier, register_model

__all__ = ["tiny", "TINY_WIDTHS"]

TINY_WIDTHS = (16, 32, 64)


def _block(c_in: int, c_out: int) -> nn.Sequential:
    # No conv bias: batch norm's shift makes it redundant.
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


@register_model("tiny", "three conv-BN-ReLU blocks, 24 k parameters (CPU twin of every recipe)",
                first_conv="body.block1.0", gradcam_layer="body.block3")
def tiny(cfg: ModelConfig) -> nn.Module:
    """The tiny CNN: `(B, C, H, W)` → 16 → 32 → 64 channels → global average → `(B, K)` logits."""
    w1, w2, w3 = TINY_WIDTHS
    body = nn.Sequential(OrderedDict(
        block1=_block(cfg.in_channels, w1), pool1=nn.MaxPool2d(2),
        block2=_block(w1, w2), pool2=nn.MaxPool2d(2),
        block3=_block(w2, w3),
        pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(1),  # (B, 64)
    ))
    head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(w3, cfg.num_classes))
    if cfg.weights == "imagenet":
        raise ConfigError("model.weights: imagenet: the tiny model has no ImageNet weights",
                          hint="use weights: none or a path")
    return assemble_classifier(cfg, body, head, w3)
