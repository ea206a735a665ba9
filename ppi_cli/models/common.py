# SPDX-License-Identifier: MIT
"""The one model contract: [0, 1] intensities in, logits out, preprocessing inside the wrapper.

Datasets hand every model float intensities in [0, 1] (see `ppi_cli.data.datasets`), so a masked
pixel is 0 there and saliency is taken with respect to those intensities. Everything a network
needs beyond that (resizing to its input size, a one-channel image meeting a three-channel stem,
ImageNet mean/std) is the `Preprocess` module at the front of the wrapper, part of the graph that
saliency and PPI differentiate through.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ppi_cli.errors import ConfigError

__all__ = ["Preprocess", "ImageClassifier", "IMAGENET_MEAN", "IMAGENET_STD", "adapt_stem_channels",
           "submodule"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Preprocess(nn.Module):
    """Resize to the network's input size, adapt channels, normalise: `(B, C, H, W)` → `(B, C', S, S)`.

    Args:
        in_channels: Channels of the images the dataset gives.
        stem_channels: Channels the network's first convolution expects.
        input_size: Side the image is resized to (bilinear) when it is not already that size.
        mean: Per-stem-channel mean subtracted after adaptation.
        std: Per-stem-channel std divided by after adaptation.
        adapt: `repeat` copies a grey channel to every stem channel; `native` means the channels
            already match (also used after the stem was summed to one channel).
    """

    def __init__(self, in_channels: int, stem_channels: int, input_size: int, mean: tuple[float, ...],
                 std: tuple[float, ...], adapt: str) -> None:
        super().__init__()
        if adapt == "repeat" and in_channels != 1:
            raise ConfigError(f"model.input_adapt: 'repeat' needs a 1-channel image, the data has {in_channels}",
                              hint="set model.input_adapt: sum, or model.in_channels: 1")
        if adapt == "native" and in_channels != stem_channels:
            raise ConfigError(f"model.in_channels: {in_channels} channels cannot feed a {stem_channels}-channel stem",
                              hint="use 1- or 3-channel images")
        self.in_channels = in_channels
        self.input_size = input_size
        self.adapt = adapt
        self.repeat = stem_channels if adapt == "repeat" else 1
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map `(B, C, H, W)` [0, 1] intensities to the normalised network input."""
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        if self.repeat > 1:
            x = x.expand(-1, self.repeat, -1, -1)  # (B, 3, S, S): the grey channel shared by every stem channel
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


class ImageClassifier(nn.Module):
    """`features(x) -> (B, F)` then `head(A) -> logits (B, K)`; `forward` always returns the logits.

    Sub-modules are named so that optimiser groups and GradCAM can find them: `preprocess`, `body`
    (the backbone, ending in a feature vector) and `head` (the classifier layer).

    Attributes:
        gradcam_layer: Dotted name of the last convolutional block (GradCAM's target layer).
        first_conv: Dotted name of the stem convolution.
        feature_dim: Size of the feature vector `body` returns.
        input_adapt: How a one-channel image meets the stem (`native`, `sum` or `repeat`).
    """

    def __init__(self, preprocess: Preprocess, body: nn.Module, head: nn.Module, *, feature_dim: int,
                 gradcam_layer: str, first_conv: str, input_adapt: str) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.body = body
        self.head = head
        self.feature_dim = feature_dim
        self.gradcam_layer = gradcam_layer
        self.first_conv = first_conv
        self.input_adapt = input_adapt

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features `(B, F)` of `(B, C, H, W)` [0, 1] images."""
        return self.body(self.preprocess(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits `(B, K)` (binary heads: `(B, 1)`) of `(B, C, H, W)` [0, 1] images."""
        return self.head(self.features(x))

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the backbone (the optimiser's `backbone_lr` group)."""
        return self.body.parameters()


def submodule(root: nn.Module, dotted: str) -> nn.Module:
    """The sub-module at a dotted path (`body.features.19`)."""
    return root.get_submodule(dotted)


def adapt_stem_channels(root: nn.Module, dotted: str) -> None:
    """Replace the 3-channel stem convolution by a 1-channel one whose kernel is the channel sum.

    Summing the kernels makes a grey image through the new stem equal a grey image repeated on every
    channel through the old one (exactly, when the normalisation is the same for every channel).
    """
    parent_name, _, leaf = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    old = getattr(parent, leaf)
    if not isinstance(old, nn.Conv2d):
        raise TypeError(f"{dotted} is not a Conv2d")  # a bug in a registry entry, not user input
    new = nn.Conv2d(1, old.out_channels, old.kernel_size, old.stride, old.padding, old.dilation,
                    old.groups, old.bias is not None, old.padding_mode)
    with torch.no_grad():
        new.weight.copy_(old.weight.sum(dim=1, keepdim=True))  # (C_out, 1, k, k)
        if old.bias is not None:
            new.bias.copy_(old.bias)
    setattr(parent, leaf, new)
