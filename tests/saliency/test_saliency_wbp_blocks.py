# SPDX-License-Identifier: MIT
"""WBP on torchvision's ResNet basic block (residual sum) and EfficientNet MBConv block (SiLU, depthwise
conv, squeeze-excitation) agrees with the naive layer-by-layer reference to 1e-6 in float64.

The engine runs the torchvision modules themselves; the reference walks a mirror built from the same
module instances (`Residual`, `Gate`), so the two share every weight.
"""

from __future__ import annotations

import pytest
import torch
from test_saliency_wbp import _randomise_norms
from torch import nn
from torchvision.models.efficientnet import MBConv, MBConvConfig
from torchvision.models.resnet import BasicBlock
from wbp_reference import Gate, Residual, reference_map

from ppi_cli.saliency import saliency_map


def _head(channels: int, classes: int = 3) -> list[nn.Module]:
    return [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes)]


def _agree(model: nn.Module, mirror: nn.Module, x: torch.Tensor, target: torch.Tensor) -> None:
    torch.testing.assert_close(mirror(x), model(x), rtol=1e-12, atol=1e-12)  # the mirror is the same function
    s = saliency_map(model, x, target, method="wbp")
    # 1e-6 relative to the map's scale (these maps are ~1e-3, where atol=1e-6 would hide the gate's rule)
    torch.testing.assert_close(s, reference_map(mirror, x, target), rtol=1e-6, atol=1e-6 * float(s.abs().max()))


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("downsample", [False, True], ids=["identity", "projection"])
def test_resnet_basic_block_residual_sum(train, downsample):
    torch.manual_seed(0)
    stem = nn.Conv2d(2, 4, 3, padding=1)
    short = nn.Sequential(nn.Conv2d(4, 6, 1, stride=2, bias=False), nn.BatchNorm2d(6)) if downsample else None
    block = BasicBlock(4, 6 if downsample else 4, stride=2 if downsample else 1, downsample=short)
    width = 6 if downsample else 4
    model = _randomise_norms(nn.Sequential(stem, block, *_head(width))).train(train)
    mirror = nn.Sequential(stem, Residual(nn.Sequential(block.conv1, block.bn1, block.relu, block.conv2, block.bn2),
                                          block.downsample), block.relu, *model[2:]).train(train)
    x, target = torch.rand(3, 2, 10, 10, dtype=torch.float64), torch.tensor([0, 2, 1])
    _agree(model, mirror, x, target)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_efficientnet_mbconv_block_silu_and_squeeze_excitation(train):
    torch.manual_seed(0)
    stem = nn.Conv2d(2, 8, 3, padding=1)
    block = MBConv(MBConvConfig(4, 3, 1, 8, 8, 1), stochastic_depth_prob=0.0, norm_layer=nn.BatchNorm2d)
    assert block.use_res_connect
    model = _randomise_norms(nn.Sequential(stem, nn.SiLU(), block, *_head(8))).train(train)
    expand, depthwise, se, project = block.block
    assert depthwise[0].groups == 32 and isinstance(depthwise[2], nn.SiLU)
    squeeze = nn.Sequential(se.avgpool, se.fc1, se.activation, se.fc2, se.scale_activation)
    mirror = nn.Sequential(stem, model[1], Residual(nn.Sequential(expand, depthwise, Gate(squeeze), project)),
                           *model[3:]).train(train)
    x, target = torch.rand(2, 2, 9, 9, dtype=torch.float64), torch.tensor([1, 0])
    _agree(model, mirror, x, target)


def test_swish_written_as_a_gated_product_is_silu():
    """`x * sigmoid(x)`: the gate as a constant is exactly SiLU's secant x sigmoid(x) / x."""

    class Swish(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(x)

    torch.manual_seed(1)
    body = [nn.Conv2d(1, 3, 3), None, nn.Conv2d(3, 2, 3), *_head(2, 2)]
    silu = nn.Sequential(*[m if m is not None else nn.SiLU() for m in body]).double()
    swish = nn.Sequential(*[m if m is not None else Swish() for m in body]).double()
    x, target = torch.rand(2, 1, 8, 8, dtype=torch.float64), torch.tensor([0, 1])
    torch.testing.assert_close(saliency_map(swish, x, target, method="wbp"),
                               saliency_map(silu, x, target, method="wbp"), rtol=1e-12, atol=1e-12)
