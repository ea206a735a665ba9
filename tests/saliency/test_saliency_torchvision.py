# SPDX-License-Identifier: MIT
"""Every method on torchvision VGG11 and Inception_v3 (weights=None, small inputs)."""

from __future__ import annotations

import pytest
import torch
import torchvision

from ppi_cli.saliency import method_names, saliency_map

pytestmark = pytest.mark.usefixtures("one_thread")


def _gradient_times_input(model, x, target):
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).gather(1, target[:, None]).sum(), x)
    return (x * grad).sum(1, keepdim=True).detach()


@pytest.fixture(scope="module")
def vgg11():
    torch.manual_seed(0)
    return torchvision.models.vgg11(weights=None, num_classes=3).eval()


@pytest.fixture(scope="module")
def inception_v3():
    torch.manual_seed(0)
    return torchvision.models.inception_v3(weights=None, num_classes=3, aux_logits=False, init_weights=False).eval()


@pytest.mark.slow
@pytest.mark.parametrize(("name", "size"), [("vgg11", 32), ("inception_v3", 75)])
def test_every_method_on_torchvision_models(name, size, request):
    model = request.getfixturevalue(name)
    x, target = torch.rand(2, 3, size, size), torch.tensor([0, 2])
    # ReLU, max/avg pools and eval-mode batch norm: every WBP rule is the transposed Jacobian here
    wbp = saliency_map(model, x, target)
    torch.testing.assert_close(wbp, _gradient_times_input(model, x, target), rtol=1e-4,
                               atol=1e-5 * float(wbp.abs().max()))
    layer = {"vgg11": "features", "inception_v3": "Mixed_7c"}[name]
    for method in method_names():
        options = {"layer": layer} if method == "gradcam" else {}
        s = saliency_map(model, x, target, method=method, **options)
        assert s.shape == (2, 1, size, size) and torch.isfinite(s).all(), method
        assert float(s.abs().sum()) > 0, method


@pytest.mark.slow
def test_inception_train_mode_wbp_holds_batch_statistics_constant(inception_v3):
    x, target = torch.rand(2, 3, 75, 75), torch.tensor([1, 1])
    inception_v3.train()
    try:
        state = {k: v.clone() for k, v in inception_v3.state_dict().items()}
        wbp = saliency_map(inception_v3, x, target)
        assert all(torch.equal(state[k], v) for k, v in inception_v3.state_dict().items())
        assert inception_v3.training
        # autograd also differentiates the batch statistics; WBP does not (paper Table 1, BN row)
        diff = (wbp - _gradient_times_input(inception_v3, x, target)).abs().max()
        assert float(diff) > 1e-3 * float(wbp.abs().max())
    finally:
        inception_v3.eval()
