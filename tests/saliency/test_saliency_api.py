# SPDX-License-Identifier: MIT
"""The saliency entry point: registry, target checks, behaviour rules, Gradient and GradCAM values."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ppi_cli.errors import ConfigError, ModelError
from ppi_cli.saliency import gradcam_layer, method_names, register_saliency, saliency_map
from ppi_cli.saliency.core import _REGISTRY

pytestmark = pytest.mark.usefixtures("one_thread")

METHODS = method_names()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def small_net(classes: int = 3, dims: int = 2) -> nn.Module:
    conv, bn, pool = {2: (nn.Conv2d, nn.BatchNorm2d, nn.AdaptiveAvgPool2d),
                      3: (nn.Conv3d, nn.BatchNorm3d, nn.AdaptiveAvgPool3d)}[dims]
    return nn.Sequential(conv(2, 4, 3, padding=1), bn(4), nn.ReLU(), conv(4, 5, 3, padding=1), nn.SiLU(),
                         pool(2), nn.Flatten(), nn.Linear(5 * 2**dims, classes)).double()


def _x(*shape):
    return torch.rand(*shape, dtype=torch.float64)


def test_registry_lists_every_method_of_the_issue():
    assert set(METHODS) == {"wbp", "gradient", "gradcam", "lrp-epsilon", "lrp-gamma", "lrp-alphabeta",
                            "lrp-flat", "lrp-zplus"}


def test_duplicate_registration_is_an_error():
    with pytest.raises(ValueError, match="registered twice"):
        register_saliency("wbp")(lambda model, x, target, *, create_graph: x)


def test_a_new_method_registers_and_runs(monkeypatch):
    monkeypatch.setattr("ppi_cli.saliency.core._REGISTRY", dict(_REGISTRY))

    @register_saliency("input-times-two")
    def _double(model, x, target, *, create_graph, scale=2.0):
        """Twice the input."""
        return scale * x.sum(1, keepdim=True)

    x = _x(2, 2, 4, 4)
    torch.testing.assert_close(saliency_map(small_net(), x, 0, method="input-times-two", scale=3.0),
                               3.0 * x.sum(1, keepdim=True))


def test_unknown_method_lists_the_valid_names():
    with pytest.raises(ConfigError) as err:
        saliency_map(small_net(), _x(1, 2, 4, 4), 0, method="wpb")
    assert "wpb" in err.value.message and all(name in err.value.hint for name in METHODS)


def test_unknown_option_names_the_valid_ones():
    with pytest.raises(ConfigError, match="no option layer"):
        saliency_map(small_net(), _x(1, 2, 4, 4), 0, method="wbp", layer="0")


@pytest.mark.parametrize(("target", "match"), [
    (3, "out of range"), (-1, "out of range"), (torch.tensor([0.0, 1.0]), "integers"),
    (torch.tensor([0, 1, 2]), "shape"), ("1", "int or a LongTensor"), (True, "int or a LongTensor"),
])
def test_bad_targets_are_config_errors(target, match):
    with pytest.raises(ConfigError, match=match):
        saliency_map(small_net(), _x(2, 2, 4, 4), target)


def test_int_and_zero_dim_targets_broadcast():
    model, x = small_net(), _x(2, 2, 4, 4)
    expected = saliency_map(model, x, torch.tensor([2, 2]))
    torch.testing.assert_close(saliency_map(model, x, 2), expected)
    torch.testing.assert_close(saliency_map(model, x, torch.tensor(2)), expected)


def test_binary_head_accepts_only_target_zero():
    model, x = small_net(classes=1), _x(2, 2, 4, 4)
    assert saliency_map(model, x, 0).shape == (2, 1, 4, 4)
    with pytest.raises(ConfigError, match="binary head with one logit") as err:
        saliency_map(model, x, torch.tensor([0, 1]))
    assert "target=0" in err.value.hint


@pytest.mark.parametrize("x", [torch.zeros(2, 2, 4, 4, dtype=torch.long), torch.zeros(2, 16), [1.0]])
def test_bad_inputs_are_config_errors(x):
    with pytest.raises(ConfigError, match="saliency input"):
        saliency_map(small_net(), x, 0)


def test_a_model_that_does_not_return_logits_is_a_model_error():
    with pytest.raises(ModelError, match=r"return logits"):
        saliency_map(nn.Conv2d(2, 3, 3).double(), _x(2, 2, 4, 4), 0)


def test_torchvision_style_named_tuple_output_uses_its_logits():
    class WithAux(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = small_net()

        def forward(self, x):
            from torchvision.models.inception import InceptionOutputs

            return InceptionOutputs(self.net(x), None)

    model, x = WithAux(), _x(2, 2, 4, 4)
    torch.testing.assert_close(saliency_map(model, x, 1), saliency_map(model.net, x, 1))


# ---- behaviour rules: mode, .grad, hooks, statistics ----

def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(m._backward_pre_hooks) for m in model.modules())


def _function_modes() -> int:
    return len(torch.overrides._get_current_function_mode_stack())


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_call_leaves_mode_grads_hooks_and_statistics_untouched(method, train):
    model = small_net().train(train)
    model[0].eval()  # a mixed-mode model keeps its exact per-module flags
    modes = [m.training for m in model.modules()]
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    s = saliency_map(model, _x(2, 2, 6, 6), torch.tensor([0, 2]), method=method)
    assert s.shape == (2, 1, 6, 6) and not s.requires_grad and torch.isfinite(s).all()
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())
    assert _hook_count(model) == 0 and _function_modes() == 0
    assert all(torch.equal(buffers[k], v) for k, v in model.state_dict().items())


class Exploding(nn.Module):
    """Raises in the middle of its forward, after the hooked layers ran."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.act = nn.SiLU()

    def forward(self, x):
        self.act(self.conv(x))
        raise RuntimeError("boom")


@pytest.mark.parametrize("method", METHODS)
def test_no_hook_or_mode_survives_an_exception(method):
    model = Exploding()
    with pytest.raises(RuntimeError, match="boom"):
        saliency_map(model, torch.rand(1, 2, 5, 5), 0, method=method)
    assert _hook_count(model) == 0 and _function_modes() == 0
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("method", ["wbp", "gradient", "gradcam"])
def test_create_graph_lets_a_loss_on_the_map_train_the_model(method):
    model, x, target = small_net(), _x(4, 2, 6, 6), torch.tensor([0, 1, 2, 0])
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05)

    def loss():
        return saliency_map(model, x, target, method=method, create_graph=True).abs().mean()

    before = loss()
    assert before.requires_grad
    before.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    for _ in range(5):
        optimiser.step()
        optimiser.zero_grad()
        loss().backward()
    assert loss().item() < before.item()


def test_works_under_no_grad_and_keeps_an_input_graph():
    model, x = small_net(), _x(2, 2, 4, 4)
    with torch.no_grad():
        s = saliency_map(model, x, 0)
    torch.testing.assert_close(s, saliency_map(model, x, 0))
    leaf = x.clone().requires_grad_(True)
    s = saliency_map(model, leaf * 2.0, 0, create_graph=True)
    (grad,) = torch.autograd.grad(s.sum(), leaf)
    assert float(grad.abs().sum()) > 0


# ---- gradient and gradcam against naive versions ----

def test_gradient_is_absolute_input_gradient_max_over_channels():
    model, x, target = small_net().eval(), _x(3, 2, 5, 5), torch.tensor([2, 0, 1])
    per_sample = []
    for i in range(3):  # one sample at a time: no batch sum trick in the reference
        xi = x[i:i + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model(xi)[0, target[i]], xi)
        per_sample.append(g.abs().max(dim=1, keepdim=True).values)
    torch.testing.assert_close(saliency_map(model, x, target, method="gradient"), torch.cat(per_sample))


def _naive_gradcam(head: nn.Module, tail: nn.Module, x, target, mode):
    features = head(x).detach().requires_grad_(True)
    logits = tail(features)
    maps = []
    for i in range(x.shape[0]):
        (g,) = torch.autograd.grad(logits[i, target[i]], features, retain_graph=True)
        alpha = g[i].mean(dim=tuple(range(1, g.ndim - 1)))  # (C,)
        cam = F.relu((alpha.reshape(-1, *[1] * (g.ndim - 2)) * features[i]).sum(0))
        maps.append(cam[None, None])
    return F.interpolate(torch.cat(maps), size=x.shape[2:], mode=mode, align_corners=False).detach()


@pytest.mark.parametrize("dims", [2, 3])
def test_gradcam_matches_a_naive_split_of_the_network(dims):
    pool = nn.MaxPool2d(2) if dims == 2 else nn.MaxPool3d(2)
    conv = nn.Conv2d(4, 5, 3, padding=1) if dims == 2 else nn.Conv3d(4, 5, 3, padding=1)
    model = small_net(dims=dims).eval()
    model[3] = conv.double()
    model.insert(3, pool)  # the feature map is smaller than the input: upsampling is exercised
    x, target = _x(2, 2, *[8] * dims), torch.tensor([1, 2])
    expected = _naive_gradcam(model[:5], model[5:], x, target, "bilinear" if dims == 2 else "trilinear")
    # default layer: the last convolution, whose output feeds the SiLU
    torch.testing.assert_close(saliency_map(model, x, target, method="gradcam"), expected)


def test_gradcam_layer_choice():
    model = small_net()
    assert gradcam_layer(model) is model[3]
    assert gradcam_layer(model, "0") is model[0]
    assert gradcam_layer(model, model[1]) is model[1]
    model.gradcam_layer = "1"
    assert gradcam_layer(model) is model[1]
    with pytest.raises(ConfigError, match="'nope' is not a module") as err:
        gradcam_layer(model, "nope")
    assert "0" in err.value.hint and "3" in err.value.hint
    with pytest.raises(ConfigError, match="not a submodule"):
        gradcam_layer(model, nn.Conv2d(1, 1, 1))
    with pytest.raises(ConfigError, match="has none"):
        gradcam_layer(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))


def test_gradcam_rejects_a_flat_layer():
    model = small_net()
    with pytest.raises(ModelError, match="needs \\(B, C, \\*spatial\\)"):
        saliency_map(model, _x(2, 2, 4, 4), 0, method="gradcam", layer="6")
