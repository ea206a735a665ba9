# SPDX-License-Identifier: MIT
"""WBP agrees with the naive layer-by-layer reference (tests/wbp_reference.py) to 1e-6 in float64."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from wbp_reference import Branches, Elementwise, reference_map

from ppi_cli.saliency import saliency_map
from ppi_cli.saliency.rules import SECANTS

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _randomise_norms(model: nn.Module) -> nn.Module:
    """Running statistics and affine parameters away from their identity defaults."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm | nn.GroupNorm | nn.LayerNorm
                          | nn.modules.instancenorm._InstanceNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.double()


def _gradient_times_input(model, x, target):
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).gather(1, target[:, None]).sum(), x)
    return (x * grad).sum(1, keepdim=True).detach()


def _agree(model, x, target):
    """Engine vs reference; returns the engine's map."""
    s = saliency_map(model, x, target, method="wbp")
    torch.testing.assert_close(s, reference_map(model, x, target), rtol=1e-6, atol=1e-6)
    return s


def _differs(a, b):
    return float((a - b).abs().max()) > 1e-3 * float(b.abs().max())


def vgg_style() -> nn.Module:
    return _randomise_norms(nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 16), nn.ReLU(), nn.Linear(16, 4),
    ))


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_vgg_style_with_batch_norm(train):
    model = vgg_style().train(train)
    x, target = torch.rand(3, 3, 16, 16, dtype=torch.float64), torch.tensor([0, 3, 1])
    s = _agree(model, x, target)
    # eval-mode BN is affine with constant statistics, so WBP = gradient x input; train mode is not
    assert _differs(s, _gradient_times_input(model, x, target)) == train


def test_silu_net_differs_from_gradient_times_input():
    model = nn.Sequential(
        nn.Conv2d(2, 5, 3, padding=1), nn.SiLU(), nn.Conv2d(5, 6, 3, stride=2, padding=1), nn.GELU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, 3),
    ).double()
    x, target = torch.rand(2, 2, 12, 12, dtype=torch.float64), torch.tensor([2, 0])
    s = _agree(model, x, target)
    assert _differs(s, _gradient_times_input(model, x, target))


def test_strided_dilated_convs_and_pools():
    model = nn.Sequential(
        nn.Conv2d(2, 4, 4, stride=3), nn.ELU(),                       # 35 -> 11, last row never reached
        nn.Conv2d(4, 5, 3, dilation=2, padding=2), nn.Tanh(),         # 11 -> 11
        nn.Conv2d(5, 6, 3, stride=2, padding=1), nn.SiLU(),           # 11 -> 6
        nn.MaxPool2d(3, stride=2, padding=1),                         # 6 -> 3, overlapping windows
        nn.AvgPool2d(3, stride=1, padding=1),                         # 3 -> 3, padding counted
        nn.AdaptiveAvgPool2d(2),                                      # 3 -> 2, overlapping windows
        nn.Flatten(), nn.Linear(24, 3),
    ).double()
    _agree(model, torch.rand(2, 2, 35, 35, dtype=torch.float64), torch.tensor([1, 2]))


def inception_style() -> nn.Module:
    return _randomise_norms(nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), Elementwise(lambda v: F.relu(v, inplace=True)),
        Branches(
            nn.Sequential(nn.Conv2d(4, 3, 1), nn.BatchNorm2d(3), Elementwise(torch.relu)),
            nn.Sequential(nn.Conv2d(4, 3, 1), nn.ReLU(), nn.Conv2d(3, 4, 3, padding=1), nn.SiLU()),
            nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(4, 2, 1)),
            nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1), nn.Conv2d(4, 2, 1),
                          Elementwise(lambda v: F.gelu(v, approximate="tanh"))),
        ),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(11 * 4, 3),
    ))


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_inception_style_block_with_concatenated_branches(train):
    model = inception_style().train(train)
    _agree(model, torch.rand(2, 3, 10, 10, dtype=torch.float64), torch.tensor([0, 2]))


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_3d_conv_net(train):
    model = _randomise_norms(nn.Sequential(
        nn.Conv3d(1, 3, 3, padding=1), nn.BatchNorm3d(3), nn.SiLU(), nn.MaxPool3d(2),
        nn.Conv3d(3, 4, 3, stride=2, padding=1), Elementwise(torch.tanh),
        nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 2),
    )).train(train)
    x = torch.rand(2, 1, 8, 8, 8, dtype=torch.float64)
    s = _agree(model, x, torch.tensor([1, 0]))
    assert s.shape == (2, 1, 8, 8, 8)


@pytest.mark.parametrize("norm", [nn.GroupNorm(2, 4), nn.LayerNorm([4, 6, 6]), nn.InstanceNorm2d(4, affine=True)],
                         ids=["group", "layer", "instance"])
def test_other_norms_hold_their_statistics_constant(norm):
    model = _randomise_norms(nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), norm, nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 2),
    ))
    x, target = torch.rand(2, 2, 6, 6, dtype=torch.float64), torch.tensor([0, 1])
    assert _differs(_agree(model, x, target), _gradient_times_input(model, x, target))


ACTIVATIONS = {
    "silu": nn.SiLU(), "gelu": nn.GELU(), "gelu-tanh": nn.GELU("tanh"), "tanh": nn.Tanh(),
    "torch.tanh": Elementwise(torch.tanh), "Tensor.tanh": Elementwise(lambda v: v.tanh()),
    "elu": nn.ELU(0.7), "celu": nn.CELU(1.3), "selu": nn.SELU(), "mish": nn.Mish(), "hardswish": nn.Hardswish(),
    "relu6": nn.ReLU6(), "F.relu6": Elementwise(F.relu6), "hardtanh": nn.Hardtanh(-2.0, 3.0),
    "softsign": nn.Softsign(), "leaky_relu": nn.LeakyReLU(0.1),
    "silu-inplace-ignored-return": Elementwise(lambda v: (F.silu(v, inplace=True), v)[1]),
    "elu-inplace": nn.ELU(inplace=True),
}
_SAME_AS_DERIVATIVE = {"leaky_relu"}  # piecewise linear through 0: secant = derivative


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_every_activation_uses_its_secant(name):
    act = ACTIVATIONS[name]
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), act, nn.Conv2d(4, 3, 3), act,
                          nn.Flatten(), nn.Linear(3 * 16, 2)).double()
    x = 30.0 * torch.rand(2, 2, 6, 6, dtype=torch.float64) - 15.0  # wide range: relu6/hardtanh saturate
    target = torch.tensor([0, 1])
    s = _agree(model, x, target)
    assert _differs(s, _gradient_times_input(model, x, target)) == (name not in _SAME_AS_DERIVATIVE)


@pytest.mark.parametrize(("name", "fn", "limit"), [
    ("silu", F.silu, 0.5), ("gelu", F.gelu, 0.5), ("mish", F.mish, math.tanh(math.log(2.0))),
    ("hardswish", F.hardswish, 0.5), ("tanh", torch.tanh, 1.0), ("softsign", F.softsign, 1.0),
    ("elu", F.elu, 1.0), ("selu", F.selu, 1.0507009873554805 * 1.6732632423543772), ("relu6", F.relu6, 0.0),
])
def test_secants_equal_h_over_x_and_their_limit_at_zero(name, fn, limit):
    x = torch.linspace(-9, 9, 181, dtype=torch.float64)
    x = x[x != 0]
    torch.testing.assert_close(SECANTS[name](x), fn(x) / x, rtol=1e-12, atol=1e-12)
    at_zero = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    value = SECANTS[name](at_zero)
    assert value.item() == pytest.approx(limit, abs=1e-12)
    (grad,) = torch.autograd.grad(value.sum(), at_zero)
    assert torch.isfinite(grad).all()  # create_graph through a secant never meets 0/0


def _bound(model: nn.Module, names: list[str]):
    """A module whose parameters `names` are replaced by the tensors given to gradcheck."""

    class Bound(nn.Module):
        def __init__(self, values):
            super().__init__()
            self.inner, self.values = model, dict(zip(names, values, strict=True))

        def forward(self, x):
            return torch.func.functional_call(self.inner, self.values, (x,))

    return Bound


@pytest.mark.parametrize(("method", "train"), [("wbp", False), ("wbp", True), ("gradcam", False),
                                               ("gradient", False)])
def test_gradcheck_of_a_loss_on_the_map_wrt_parameters(method, train):
    model = _randomise_norms(nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.SiLU(), nn.Conv2d(2, 3, 3, stride=2), Elementwise(torch.tanh),
        nn.Flatten(), nn.Linear(3 * 4 * 4, 3),
    )).train(train)
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())
    x, target = torch.rand(2, 1, 11, 11, dtype=torch.float64), torch.tensor([0, 2])
    weights = torch.rand(2, 1, 11, 11, dtype=torch.float64)
    bound = _bound(model, names)

    def loss(*values):
        s = saliency_map(bound(values), x, target, method=method, create_graph=True)
        return (weights * s).sum() + (s * s).sum()

    assert torch.autograd.gradcheck(loss, params, eps=1e-6, atol=1e-5, rtol=1e-4)
