# SPDX-License-Identifier: MIT
"""`vgg11` / `vgg11_bn` for natural images (CUB, CIFAR-style folders; paper section 4.1).

torchvision's VGG, wrapped: `body` is the convolutional features, the 7×7 average pool and the
two 4096-wide hidden layers; `head` is the last linear layer. ReLUs are made out-of-place so that
saliency hooks and double back-propagation never meet an in-place edit.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ppi_cli.config.recipe import ModelConfig
from ppi_cli.models.common import IMAGENET_MEAN, IMAGENET_STD
from ppi_cli.models.registry import assemble_classifier, model_entry, register_model
from ppi_cli.models.weights import backbone_state, load_into

__all__ = ["vgg11", "vgg11_bn"]


def _vgg(cfg: ModelConfig, batch_norm: bool) -> nn.Module:
    import torchvision.models as tvm

    factory = tvm.vgg11_bn if batch_norm else tvm.vgg11
    net = factory(weights=None, num_classes=cfg.num_classes, dropout=cfg.dropout)
    state = backbone_state(cfg.weights, model_entry(cfg.name).imagenet_weights(), cfg.name)
    if state is not None:
        load_into(net, state, source=cfg.weights, head_keys=("classifier.6.",))
    for module in net.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    body = nn.Sequential(OrderedDict(
        features=net.features, avgpool=net.avgpool, flatten=nn.Flatten(1),  # (B, 512 * 7 * 7)
        hidden=net.classifier[:6],  # (B, 4096)
    ))
    return assemble_classifier(cfg, body, net.classifier[6], 4096)


# The GradCAM layer is the ReLU after the last convolution (before the last max-pool).
@register_model("vgg11", "torchvision VGG11 (paper: CUB, CIFAR-10, ImageNet)", mean=IMAGENET_MEAN, std=IMAGENET_STD,
                stem_channels=3, first_conv="body.features.0", gradcam_layer="body.features.19", min_size=32,
                imagenet="VGG11_Weights.IMAGENET1K_V1")
def vgg11(cfg: ModelConfig) -> nn.Module:
    """VGG11 (configuration A, no batch norm)."""
    return _vgg(cfg, batch_norm=False)


@register_model("vgg11_bn", "torchvision VGG11 with batch norm", mean=IMAGENET_MEAN, std=IMAGENET_STD,
                stem_channels=3, first_conv="body.features.0", gradcam_layer="body.features.27", min_size=32,
                imagenet="VGG11_BN_Weights.IMAGENET1K_V1")
def vgg11_bn(cfg: ModelConfig) -> nn.Module:
    """VGG11 with batch norm after every convolution."""
    return _vgg(cfg, batch_norm=True)
