# SPDX-License-Identifier: MIT
"""`ppi.map_from: auto`: the WBP map taken from L_cls's own backward equals the separate pass, exactly."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ppi_cli.autograd.shared_map as shared_map
from ppi_cli.autograd.shared_map import classification_seed, classification_with_map, shares_clean_pass
from ppi_cli.config.recipe import ModelConfig, PPIConfig
from ppi_cli.engine.step import TrainStep
from ppi_cli.models import build_model
from ppi_cli.ppi import LossWeights, classification_loss
from ppi_cli.saliency import saliency_map


def _net(activation: Callable[[], nn.Module] = nn.ReLU, dropout: float = 0.0,
         norm: nn.Module | None = None) -> nn.Module:
    """A VGG-like binary classifier: convolutions, pooling, a dropout head, one logit."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1), norm or nn.Identity(), activation(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, stride=2, padding=1), activation(), nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(2),
        nn.Flatten(), nn.Linear(32, 16), activation(), nn.Dropout(dropout), nn.Linear(16, 1),
    ).double().train()


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(6, 2, 16, 16, generator=g, dtype=torch.float64), torch.tensor([1.0, 0, 1, 1, 0, 0],
                                                                                     dtype=torch.float64)


def _step_gradients(net: nn.Module, cfg: PPIConfig) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    x, y = _batch()
    step = TrainStep(model=net, net=net, cfg=cfg, weights=LossWeights(cfg), binary=True, device=torch.device("cpu"))
    net.zero_grad(set_to_none=True)
    values = step(x, y, epoch=0, generator=torch.Generator().manual_seed(3))
    return values, {n: p.grad.clone() for n, p in net.named_parameters()}


def _assert_same_step(net: nn.Module, cfg: PPIConfig) -> None:
    separate_net = copy.deepcopy(net)
    shared_values, shared = _step_gradients(net, replace(cfg, map_from="auto"))
    separate_values, separate = _step_gradients(separate_net, replace(cfg, map_from="separate"))
    for term in separate_values:
        assert shared_values[term] == pytest.approx(separate_values[term], rel=1e-10, abs=1e-14), term
    for name, grad in separate.items():
        assert torch.allclose(shared[name], grad, rtol=1e-9, atol=1e-13), name
    for (name, a), b in zip(net.named_buffers(), separate_net.buffers(), strict=True):  # running statistics
        assert torch.allclose(a.double(), b.double(), rtol=1e-12, atol=1e-14), name


@pytest.mark.parametrize("create_graph", [True, False])
@pytest.mark.parametrize("layers", ["relu", "silu", "relu+batchnorm", "inplace relu+batchnorm"])
def test_shared_step_gives_the_separate_steps_gradients(create_graph, layers):
    # ReLU: the map comes out of L_cls's backward. SiLU (secant ≠ derivative) and train-mode batch norm
    # (statistics held constant, samples coupled): the forward is shared and the map takes a backward of
    # its own. Without dropout every route equals the separate pass exactly, running statistics included.
    # In-place ReLU (torchvision's Inception_v3) takes the double-backward mode's in-place rule.
    cfg = PPIConfig(saliency="wbp", mask="soft", alpha=0.7, beta=0.3, gamma=1.3, create_graph=create_graph,
                    start_epoch=0)
    norm = nn.BatchNorm2d(6).double() if "batchnorm" in layers else None
    activation = {"silu": nn.SiLU, "inplace relu+batchnorm": functools.partial(nn.ReLU, inplace=True)}
    net = _net(activation.get(layers, nn.ReLU), norm=norm)
    assert shares_clean_pass(net, map_from="auto", saliency="wbp", binary=True, volume=False, scaled=False)
    _assert_same_step(net, cfg)


def test_shared_map_is_the_wbp_map_and_lcls_gradient_is_unchanged():
    net = _net(dropout=0.0)
    x, y = _batch()
    out = classification_with_map(net, x, y, create_graph=False)
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    expected_map = saliency_map(net, x, 0, method="wbp")
    assert out.saliency is not None
    assert torch.allclose(out.saliency, expected_map, rtol=1e-10, atol=1e-14)
    net.zero_grad(set_to_none=True)
    loss = classification_loss(net(x), y)
    loss.backward()
    assert float(out.loss) == pytest.approx(float(loss.detach()), rel=1e-12)
    for name, p in net.named_parameters():
        assert torch.allclose(grads[name], p.grad, rtol=1e-10, atol=1e-14), name


def test_with_dropout_the_map_is_that_of_the_steps_thinned_network():
    net = _net(dropout=0.5)
    x, y = _batch()
    torch.manual_seed(7)
    out = classification_with_map(net, x, y, create_graph=False)
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    net.zero_grad(set_to_none=True)
    torch.manual_seed(7)  # the same dropout masks
    inputs = x.clone().requires_grad_(True)
    logits = net(inputs)
    (rows,) = torch.autograd.grad(logits.sum(), inputs, retain_graph=True)
    classification_loss(logits, y).backward()
    assert torch.allclose(out.saliency, (inputs * rows).sum(1, keepdim=True), rtol=1e-10, atol=1e-14)
    for name, p in net.named_parameters():
        assert torch.allclose(grads[name], p.grad, rtol=1e-10, atol=1e-14), name
    # ... and not the map with dropout off, which the separate pass takes
    assert not torch.allclose(out.saliency, saliency_map(net.eval(), x, 0, method="wbp"), atol=1e-6)


def test_seed_does_not_cancel_for_confident_predictions():
    z = torch.tensor([[25.0], [-25.0], [0.3], [-40.0]])
    y = torch.tensor([1.0, 0.0, 1.0, 1.0])
    seed = classification_seed(z, y)
    z64 = z.double().requires_grad_(True)
    (reference,) = torch.autograd.grad(F.binary_cross_entropy_with_logits(z64.squeeze(1), y.double()), z64)
    assert (seed != 0).all()  # autograd's float32 σ(25) − 1 is exactly 0
    # float64's own σ(25) − 1 cancels to about 1e-5 relative, hence the tolerance
    assert torch.allclose(seed.double(), reference, rtol=1e-4, atol=0)
    z32 = z.clone().requires_grad_(True)
    (float32,) = torch.autograd.grad(F.binary_cross_entropy_with_logits(z32.squeeze(1), y), z32)
    assert float32[0, 0] == 0  # the cancellation the seed avoids


def test_small_seed_falls_back_to_the_separate_pass(monkeypatch):
    monkeypatch.setattr(shared_map, "_SMALLEST_SEED", 10.0)  # every seed counts as too small
    net = _net()
    x, y = _batch()
    out = classification_with_map(net, x, y, create_graph=True)
    assert out.saliency is None
    assert all(p.grad is not None for p in net.parameters())  # L_cls was still back-propagated
    cfg = PPIConfig(saliency="wbp", mask="soft", create_graph=True, start_epoch=0)
    _assert_same_step(net, cfg)


def test_which_models_share_the_clean_pass():
    def shares(model: nn.Module, **overrides: object) -> bool:
        options = {"map_from": "auto", "saliency": "wbp", "binary": True, "volume": False, "scaled": False}
        return shares_clean_pass(model, **{**options, **overrides})

    vgg_like = _net()
    assert shares(vgg_like)
    assert not shares(vgg_like, map_from="separate")
    assert not shares(vgg_like, saliency="gradient")
    assert not shares(vgg_like, binary=False)
    assert not shares(vgg_like, volume=True)
    assert not shares(vgg_like, scaled=True)  # float16 autocast with its gradient scaler
    assert shares(_net(norm=nn.BatchNorm2d(6).double()))  # the map's own backward over the shared forward
    assert shares(_net(norm=nn.GroupNorm(2, 6).double()))
    assert shares(build_model(ModelConfig(name="tiny", input_size=16)).train())
    tracking = _net(norm=nn.InstanceNorm2d(6, track_running_stats=True).double())
    assert not shares(tracking)  # the WBP forward would not update its running statistics
    assert shares(tracking.eval())


@pytest.mark.parametrize("map_from", ["auto", "separate"])
@pytest.mark.parametrize("create_graph", [True, False])
def test_channels_last_step_equals_the_contiguous_step(create_graph, map_from):
    # training on CUDA runs in channels_last; the WBP rules and double-backward Functions must give the
    # same gradients in that memory format (checked here on the CPU, in float64)
    cfg = PPIConfig(saliency="wbp", mask="soft", alpha=0.7, beta=0.3, gamma=1.3, create_graph=create_graph,
                    start_epoch=0, map_from=map_from)
    net = _net(functools.partial(nn.ReLU, inplace=True), norm=nn.BatchNorm2d(6).double())
    nhwc = copy.deepcopy(net).to(memory_format=torch.channels_last)
    x, y = _batch()
    results = []
    for model, images in ((net, x), (nhwc, x.contiguous(memory_format=torch.channels_last))):
        step = TrainStep(model=model, net=model, cfg=cfg, weights=LossWeights(cfg), binary=True,
                         device=torch.device("cpu"))
        values = step(images, y, epoch=0, generator=torch.Generator().manual_seed(3))
        results.append((values, {n: p.grad.clone() for n, p in model.named_parameters()}))
    (v0, g0), (v1, g1) = results
    assert nhwc[0].weight.is_contiguous(memory_format=torch.channels_last)
    for term in v0:
        assert v1[term] == pytest.approx(v0[term], rel=1e-10, abs=1e-14), term
    for name, grad in g0.items():
        assert torch.allclose(g1[name], grad, rtol=1e-9, atol=1e-13), name
