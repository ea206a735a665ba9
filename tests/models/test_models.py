# SPDX-License-Identifier: MIT
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from ppi_cli.checkpoint import save_checkpoint
from ppi_cli.config.loader import to_dict
from ppi_cli.config.recipe import ModelConfig, MultiviewConfig
from ppi_cli.errors import ConfigError, ModelError
from ppi_cli.models import build_model, is_volume_model, load_model, model_names


def _tiny(**kw) -> ModelConfig:
    return ModelConfig(**{"name": "tiny", "in_channels": 1, "num_classes": 1, "input_size": 16, **kw})


def test_registry_lists_models_and_rejects_unknown():
    assert {"tiny", "vgg11", "vgg11_bn", "inception_v3", "multiview"} <= set(model_names())
    with pytest.raises(ConfigError, match="no model 'resnet'") as exc:
        build_model(ModelConfig(name="resnet"))
    assert "inception_v3" in exc.value.hint


@pytest.mark.parametrize("channels,classes", [(1, 1), (3, 4)])
def test_tiny_contract(channels, classes):
    model = build_model(ModelConfig(name="tiny", in_channels=channels, num_classes=classes, input_size=16))
    logits = model(torch.rand(3, channels, 20, 24))  # resized to 16 inside
    assert logits.shape == (3, classes)
    assert isinstance(model.get_submodule(model.gradcam_layer), torch.nn.Module)
    assert model.get_submodule(model.first_conv).in_channels == channels
    assert not is_volume_model(model)


def _last_block_and_columns_seen(model, side: int) -> tuple[int, int]:
    """The last block's grid side, and the width in input pixels of what one of its central units responds
    to over random images."""
    model.eval()
    grid = {}
    hook = model.get_submodule(model.gradcam_layer).register_forward_hook(lambda m, i, o: grid.setdefault("out", o))
    x = torch.rand(32, 1, side, side, requires_grad=True)
    model(x)
    hook.remove()
    out = grid["out"]
    out[:, :, out.shape[2] // 2, out.shape[3] // 2].sum().backward()
    columns = (x.grad.abs().sum((0, 1, 2)) > 0).nonzero().flatten()
    return out.shape[-1], int(columns.max() - columns.min() + 1)


@pytest.mark.parametrize("blocks,grid,params", [(3, 16, 23_473), (4, 8, 60_465), (2, 32, 4_881)])
def test_tiny_blocks_set_the_depth_and_what_a_unit_sees(blocks, grid, params):
    torch.manual_seed(0)
    model = build_model(_tiny(input_size=64, tiny_blocks=blocks))
    # counted by hand: each block a 3x3 convolution without bias and a batch norm (2 per channel);
    # the head: the last width + 1
    assert sum(p.numel() for p in model.parameters()) == params
    assert model.gradcam_layer == f"body.block{blocks}"
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.modules()) == blocks - 1
    last_grid, seen = _last_block_and_columns_seen(model, 64)
    assert last_grid == grid
    # receptive field: 8 px for 2 blocks, 18 for 3, 38 for 4; max-pool routes the gradient, so a union over images
    limit = {2: 8, 3: 18, 4: 38}[blocks]
    assert seen <= limit and seen > {2: 3, 3: 8, 4: 18}[blocks]


def test_tiny_group_norm_makes_each_image_its_own_function():
    torch.manual_seed(0)
    group = build_model(_tiny(input_size=32, tiny_blocks=4, tiny_norm="group", dropout=0.0))
    batch = build_model(_tiny(input_size=32, tiny_blocks=4, dropout=0.0))
    norms = [m for m in group.modules() if isinstance(m, torch.nn.GroupNorm)]
    # one per block, 8 channels a group; the same parameter count as batch norm (a scale and a shift per channel)
    assert [(m.num_groups, m.num_channels) for m in norms] == [(2, 16), (4, 32), (8, 64), (8, 64)]
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in group.modules())
    assert sum(p.numel() for p in group.parameters()) == sum(p.numel() for p in batch.parameters())
    x = torch.rand(6, 1, 32, 32)
    alone = group.train()(x[:1])
    # an image's logit depends neither on the batch it is in nor on train/eval mode
    torch.testing.assert_close(group(x)[:1], alone)
    torch.testing.assert_close(group.eval()(x)[:1], alone)
    # batch norm's does (the reason for the field)
    assert not torch.allclose(batch.train()(x)[:1], batch.train()(x[:2])[:1])


def test_preprocess_resizes_then_normalises():
    model = build_model(_tiny())
    x = torch.rand(2, 1, 8, 8)
    expected = (F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False) - 0.5) / 0.5
    assert torch.allclose(model.preprocess(x), expected)


def test_inception_sum_adaptation_equals_repeating_the_grey_channel():
    cfg = ModelConfig(name="inception_v3", in_channels=1, num_classes=2, input_size=75, input_adapt="repeat")
    torch.manual_seed(3)
    repeat = build_model(cfg).eval()
    torch.manual_seed(3)
    summed = build_model(dataclasses.replace(cfg, input_adapt="sum")).eval()
    assert repeat.input_adapt == "repeat" and summed.input_adapt == "sum"
    assert summed.get_submodule(summed.first_conv).in_channels == 1
    x = torch.rand(2, 1, 40, 40)
    with torch.no_grad():
        assert torch.allclose(repeat(x), summed(x), atol=1e-4)
    assert summed.get_submodule(summed.gradcam_layer).__class__.__name__ == "InceptionE"


def test_vgg11_contract():
    model = build_model(ModelConfig(name="vgg11", in_channels=3, num_classes=5, input_size=32))
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 5)
    assert model.head.weight.shape == (5, 4096)
    assert isinstance(model.get_submodule(model.gradcam_layer), torch.nn.ReLU)
    assert not any(m.inplace for m in model.modules() if isinstance(m, torch.nn.ReLU))


def test_imagenet_and_torchvision_files_load_into_the_backbone(monkeypatch, tmp_path):
    import torchvision

    torch.manual_seed(0)
    published = torchvision.models.Inception3(num_classes=1000, aux_logits=True, init_weights=False).state_dict()
    urls = []

    def fake_download(url, *args, **kwargs):
        urls.append(url)
        return published

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", fake_download)
    cfg = ModelConfig(name="inception_v3", in_channels=3, num_classes=1, input_size=75, weights="imagenet")
    model = build_model(cfg)
    assert urls == [torchvision.models.Inception_V3_Weights.IMAGENET1K_V1.url]
    key = "Mixed_7c.branch1x1.conv.weight"
    assert torch.equal(model.body.Mixed_7c.branch1x1.conv.weight, published[key])
    assert model.head.fc.weight.shape == (1, 2048)  # the 1000-class head does not fit: left fresh
    # The same tensors from a local torchvision-format file.
    path = tmp_path / "inception.pth"
    torch.save(published, path)
    from_file = build_model(dataclasses.replace(cfg, weights=str(path)))
    assert torch.equal(from_file.body.Mixed_7c.branch1x1.conv.weight, published[key])
    with pytest.raises(ConfigError, match="no ImageNet weights"):
        build_model(_tiny(weights="imagenet"))


def test_weights_file_errors(tmp_path):
    with pytest.raises(ModelError, match="no such file"):
        build_model(_tiny(weights=str(tmp_path / "absent.pt")))
    wrong = tmp_path / "wrong.pt"
    torch.save({"body.block1.0.weight": torch.zeros(16, 3, 3, 3)}, wrong)
    with pytest.raises(ModelError, match=r"wrong.pt: 'body.block1.0.weight' has shape"):
        build_model(_tiny(weights=str(wrong)))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"w": Evil()}, evil)
    with pytest.raises(ModelError, match="never loaded"):
        build_model(_tiny(weights=str(evil)))


def test_load_model_rebuilds_from_meta_alone(tmp_path):
    cfg = _tiny()
    torch.manual_seed(1)
    model = build_model(cfg).eval()
    path = save_checkpoint(tmp_path / "best.pt", model.state_dict(), {"model": to_dict(cfg), "classes": ["a", "b"]})
    loaded, meta = load_model(path)
    assert meta["classes"] == ["a", "b"] and not loaded.training
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    # The same file as model.weights starts a new model from those weights.
    warm = build_model(dataclasses.replace(cfg, weights=str(path))).eval()
    with torch.no_grad():
        assert torch.equal(model(x), warm(x))
    bad = save_checkpoint(tmp_path / "bad.pt", model.state_dict(), {"model": to_dict(_tiny(in_channels=3))})
    with pytest.raises(ModelError, match="do not fit"):
        load_model(bad)


def test_multiview_matches_eq_12_and_exposes_slices():
    mv = MultiviewConfig(tau=0.5, bias_start=2.0, num_positions=10)
    model = build_model(ModelConfig(name="multiview", backbone="tiny", input_size=16, multiview=mv)).eval()
    assert is_volume_model(model) and model.gradcam_layer == "slice_classifier.body.block3"
    x, pos = torch.rand(2, 4, 1, 16, 16), torch.tensor([[0, 3, 6, 9], [1, 2, 3, 4]])
    with torch.no_grad():
        out = model.views(x, pos)
        # Naive eq. 11-12: h_k, p_k = σ(FC(h_k)), a_k = FC([h_k; e_k]), w = softmax(a / (τ + b)).
        h = torch.stack([model.slice_classifier.features(x[i]) for i in range(2)])  # (2, 4, F)
        logits = torch.stack([model.slice_classifier(x[i]).squeeze(1) for i in range(2)])  # (2, 4)
        a = model.attention(torch.cat([h, model.position(pos)], dim=2)).squeeze(2)  # (2, 4)
        w = torch.softmax(a / (0.5 + 2.0), dim=1)
        p = (w * torch.sigmoid(logits)).sum(1)
        assert torch.allclose(out.slice_logits, logits, atol=1e-6)
        assert torch.allclose(out.attention, w, atol=1e-6)
        assert torch.allclose(out.probability, p, atol=1e-6)
        assert torch.allclose(torch.sigmoid(model(x, pos)).squeeze(1), p, atol=1e-6)
        model.set_attention_bias(0.0)
        sharp = model.views(x, pos).attention
        assert torch.allclose(sharp, torch.softmax(a / 0.5, dim=1), atol=1e-6)
    with pytest.raises(ConfigError, match="num_positions"):
        model(x, pos + 5)
    with pytest.raises(ConfigError, match="binary"):
        build_model(ModelConfig(name="multiview", num_classes=3))


def test_inception_average_pools_run_as_convolutions_with_the_same_outputs_and_gradients():
    from torch.overrides import TorchFunctionMode

    class Count(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.pools, self.depthwise = 0, 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            self.pools += func is F.avg_pool2d
            self.depthwise += func is F.conv2d and kwargs.get("groups", 1) > 1
            return func(*args, **kwargs)

    torch.manual_seed(1)
    model = build_model(ModelConfig(name="inception_v3", in_channels=1, num_classes=1, input_size=75)).double()
    model.eval()  # train-mode batch norm over 2 images amplifies float64 rounding towards 1e-8
    x = torch.rand(2, 1, 75, 75, dtype=torch.float64)
    h = model.preprocess(x)
    with Count() as count:
        fast = model.body(h.clone().requires_grad_(True))
    assert (count.pools, count.depthwise) == (0, 9)  # the mixed blocks' nine 3×3 pools
    inputs = h.clone().requires_grad_(True)
    fast = model.body(inputs)
    (fast_grad,) = torch.autograd.grad(fast.sum(), inputs)
    inputs = h.clone().requires_grad_(True)
    plain = torch.nn.Sequential.forward(model.body, inputs)  # the blocks without the mode
    (plain_grad,) = torch.autograd.grad(plain.sum(), inputs)
    for got, want in ((fast, plain), (fast_grad, plain_grad)):  # float64 rounding of ~1e-15 of the scale
        assert torch.allclose(got, want, rtol=0, atol=1e-13 * float(want.detach().abs().max()))


def test_inception_depthwise_pools_keep_the_wbp_map_and_its_second_order_gradients():
    from ppi_cli.autograd.double_backward import piecewise_linear_backward
    from ppi_cli.saliency import saliency_map

    torch.manual_seed(2)
    model = build_model(ModelConfig(name="inception_v3", in_channels=1, num_classes=1, input_size=75)).double().eval()
    x = torch.rand(2, 1, 75, 75, dtype=torch.float64)
    params = [p for p in model.parameters() if p.requires_grad]

    def map_and_grads():
        with piecewise_linear_backward():  # as the PPI step differentiates the map (create_graph)
            s = saliency_map(model, x, 0, method="wbp", create_graph=True)
        return s.detach(), torch.autograd.grad(s.abs().mean(), params, allow_unused=True)

    fast = map_and_grads()
    model.body.__class__ = torch.nn.Sequential  # the same blocks with the CPU pooling kernel
    plain = map_and_grads()
    scale = float(plain[0].abs().max())
    assert torch.allclose(fast[0], plain[0], rtol=0, atol=1e-12 * scale)
    used = [(f, p) for f, p in zip(fast[1], plain[1], strict=True) if p is not None]
    assert len(used) > 100 and all(f is not None for f, _ in used)
    for f, p in used:
        assert torch.allclose(f, p, rtol=1e-9, atol=1e-12 * float(p.abs().max()))
