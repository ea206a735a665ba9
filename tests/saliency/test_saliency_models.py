# SPDX-License-Identifier: MIT
"""Saliency on the project's own models: the tiny backbone and the multi-view model's slice classifier."""

from __future__ import annotations

import pytest
import torch

from ppi_cli.config.recipe import ModelConfig
from ppi_cli.errors import ConfigError
from ppi_cli.models import build_model
from ppi_cli.saliency import gradcam_layer, method_names, saliency_map

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _gradient_times_input(model, x, target):
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).gather(1, target[:, None]).sum(), x)
    return (x * grad).sum(1, keepdim=True).detach()


def _randomise_statistics(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("blocks", [3, 4])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_every_method_on_the_tiny_backbone(train, blocks):
    model = _randomise_statistics(build_model(ModelConfig(name="tiny", in_channels=1, num_classes=3, input_size=16,
                                                          dropout=0.0, tiny_blocks=blocks))).double().train(train)
    x, target = torch.rand(2, 1, 16, 16, dtype=torch.float64), torch.tensor([0, 2])
    wbp = saliency_map(model, x, target)
    # conv, ReLU, pools, linear and eval-mode BN: WBP is gradient x input; train-mode BN is not
    differs = float((wbp - _gradient_times_input(model, x, target)).abs().max()) > 1e-6 * float(wbp.abs().max())
    assert differs == train
    for method in method_names():
        s = saliency_map(model, x, target, method=method)
        assert s.shape == (2, 1, 16, 16) and torch.isfinite(s).all(), method
    # GradCAM follows the wrapper's own gradcam_layer
    assert gradcam_layer(model) is model.get_submodule(model.gradcam_layer)
    torch.testing.assert_close(saliency_map(model, x, target, method="gradcam"),
                               saliency_map(model, x, target, method="gradcam", layer=model.gradcam_layer))


def test_wbp_on_the_group_norm_tiny_is_gradient_times_input_with_frozen_statistics():
    model = build_model(ModelConfig(name="tiny", in_channels=1, num_classes=1, input_size=16, dropout=0.0,
                                    tiny_blocks=3, tiny_norm="group")).double().train()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    x, target = torch.rand(3, 1, 16, 16, dtype=torch.float64), torch.tensor([0, 0, 0])
    wbp = saliency_map(model, x, target)

    def frozen(m, args, out):
        # the same affine map with each image's group statistics held constant (WBP's rule, written out)
        (h,) = args
        g = h.view(h.shape[0], m.num_groups, -1)
        mean, var = g.mean(-1, keepdim=True).detach(), g.var(-1, unbiased=False, keepdim=True).detach()
        normed = ((g - mean) / torch.sqrt(var + m.eps)).view_as(h)
        return normed * m.weight[None, :, None, None] + m.bias[None, :, None, None]

    hooks = [m.register_forward_hook(frozen) for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    reference = _gradient_times_input(model, x, target)
    for h in hooks:
        h.remove()
    torch.testing.assert_close(wbp, reference)
    # and not the plain gradient x input, which differentiates through the statistics
    assert float((wbp - _gradient_times_input(model, x, target)).abs().max()) > 1e-6 * float(wbp.abs().max())


def test_multiview_slice_classifier_gives_per_bscan_maps_of_the_slice_logit():
    volume_model = build_model(ModelConfig(name="multiview", backbone="tiny", in_channels=1, num_classes=1,
                                           input_size=24, dropout=0.0)).double().train()
    slices = volume_model.slice_classifier
    bscans = torch.rand(2, 4, 1, 24, 24, dtype=torch.float64).flatten(0, 1)  # (B*S, 1, H, W)
    s = saliency_map(slices, bscans, 0, create_graph=True)
    assert s.shape == (8, 1, 24, 24)
    # the map is that of the slice logit the volume model pools (paper Sec. 4.4 of paper-math)
    positions = torch.arange(4).expand(2, 4)
    slice_logits = volume_model.views(bscans.view(2, 4, 1, 24, 24), positions).slice_logits.flatten()  # (B*S,)
    torch.testing.assert_close(slices(bscans)[:, 0], slice_logits)
    s.abs().mean().backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in slices.parameters())
    assert volume_model.training and slices.training
    with pytest.raises(ConfigError, match="binary head"):
        saliency_map(slices, bscans, 1)
    cam = saliency_map(slices, bscans, 0, method="gradcam")
    assert cam.shape == (8, 1, 24, 24) and float(cam.min()) >= 0
