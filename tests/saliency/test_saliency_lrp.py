# SPDX-License-Identifier: MIT
"""LRP through zennit: known identities, conservation, refusals and the missing-extra error."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from ppi_cli.errors import ConfigError, MissingExtraError
from ppi_cli.saliency import saliency_map

pytestmark = pytest.mark.usefixtures("one_thread")

LRP = ["lrp-epsilon", "lrp-gamma", "lrp-alphabeta", "lrp-flat", "lrp-zplus"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def bias_free_relu_net(dims: int = 2) -> nn.Module:
    conv, pool = (nn.Conv2d, nn.MaxPool2d) if dims == 2 else (nn.Conv3d, nn.MaxPool3d)
    adaptive = nn.AdaptiveAvgPool2d(2) if dims == 2 else nn.AdaptiveAvgPool3d(2)
    return nn.Sequential(conv(3, 6, 3, padding=1, bias=False), nn.ReLU(), pool(2),
                         conv(6, 8, 3, padding=1, bias=False), nn.ReLU(), adaptive, nn.Flatten(),
                         nn.Linear(8 * 2**dims, 4, bias=False)).double().eval()


def test_lrp_epsilon_times_the_logit_is_gradient_times_input_on_a_bias_free_relu_net():
    # LRP-0 (epsilon -> 0) with relevance z at the output equals x * dz/dx for ReLU nets without
    # biases; our seed is the one-hot, so the map is that identity divided by the logit
    # inputs large enough that epsilon = 1e-6 is negligible against every pre-activation
    model, x, target = bias_free_relu_net(), 1e3 * torch.rand(3, 3, 8, 8, dtype=torch.float64), torch.tensor([0, 3, 1])
    logit = model(x).gather(1, target[:, None]).detach()  # (B, 1)
    lrp = saliency_map(model, x, target, method="lrp-epsilon")
    wbp = saliency_map(model, x, target, method="wbp")
    torch.testing.assert_close(lrp * logit[:, :, None, None], wbp, rtol=1e-6, atol=1e-6 * float(wbp.abs().max()))


@pytest.mark.parametrize("method", LRP)
@pytest.mark.parametrize("dims", [2, 3])
def test_relevance_is_conserved_on_a_bias_free_relu_net(method, dims):
    model = bias_free_relu_net(dims)
    x = torch.rand(2, 3, *[8] * dims, dtype=torch.float64)
    s = saliency_map(model, x, torch.tensor([2, 1]), method=method)
    assert s.shape == (2, 1, *[8] * dims)
    # the one-hot seed puts relevance 1 on the target; every rule here passes it on in full
    torch.testing.assert_close(s.sum(dim=tuple(range(1, s.ndim))), torch.ones(2, dtype=torch.float64),
                               rtol=0, atol=1e-3)


def test_rules_give_different_maps():
    model, x = bias_free_relu_net(), torch.rand(2, 3, 8, 8, dtype=torch.float64)
    maps = [saliency_map(model, x, 1, method=m) for m in LRP]
    for i in range(len(maps)):
        for j in range(i + 1, len(maps)):
            assert not torch.allclose(maps[i], maps[j], atol=1e-6), (LRP[i], LRP[j])


def test_batch_norm_is_merged_in_eval_and_restored_after():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 36, 2)).double().eval()
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    logits = model(x)
    s = saliency_map(model, x, 0, method="lrp-epsilon")
    assert torch.isfinite(s).all()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    torch.testing.assert_close(model(x), logits)


@pytest.mark.parametrize("method", LRP)
def test_lrp_refuses_create_graph(method):
    with pytest.raises(ConfigError, match="create_graph") as err:
        saliency_map(bias_free_relu_net(), torch.rand(1, 3, 8, 8, dtype=torch.float64), 0, method=method,
                     create_graph=True)
    assert "wbp" in err.value.hint


def test_missing_zennit_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m == "zennit" or m.startswith("zennit.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "zennit", None)  # import zennit now raises ImportError
    with pytest.raises(MissingExtraError) as err:
        saliency_map(bias_free_relu_net(), torch.rand(1, 3, 8, 8, dtype=torch.float64), 0, method="lrp-gamma")
    assert err.value.extra == "lrp" and "ppi-cli[lrp]" in err.value.one_line() and "zennit" in err.value.message
