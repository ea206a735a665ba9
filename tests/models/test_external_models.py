# SPDX-License-Identifier: MIT
"""`model.name` by source: torchvision:NAME, module.path:factory (always run); timm:, monai: (optional extras)."""

from __future__ import annotations

import dataclasses
import sys

import pytest
import torch

from ppi_cli.checkpoint import save_checkpoint
from ppi_cli.config.recipe import ModelConfig, PPIConfig, load_recipe
from ppi_cli.engine.step import TrainStep
from ppi_cli.engine.study import load_study_data, study_split
from ppi_cli.engine.trainer import fit
from ppi_cli.errors import ConfigError, MissingExtraError, ModelError
from ppi_cli.models import build_model, load_model
from ppi_cli.ppi import LossWeights
from ppi_cli.saliency import wbp_unsupported

USER_NETS = """
from torch import nn


def factory(cfg):
    # A user's own network.
    return nn.Sequential(nn.Conv2d(cfg.in_channels, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(4, 4, 3),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 7))


def softmax_factory(cfg):
    # A network with a layer WBP has no rule for (a channel softmax).
    return nn.Sequential(nn.Conv2d(cfg.in_channels, 4, 3), nn.Softmax(dim=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, cfg.num_classes))
"""


@pytest.fixture
def user_nets(tmp_path, monkeypatch):
    """The user's own code as an importable module `ppi_user_nets` (written to a folder on sys.path)."""
    (tmp_path / "ppi_user_nets.py").write_text(USER_NETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "ppi_user_nets", raising=False)
    return "ppi_user_nets"


def test_torchvision_resnet18_trains_one_ppi_wbp_step():
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="torchvision:resnet18", weights="none", in_channels=1, num_classes=1,
                                    input_size=32)).train()
    assert (model.first_conv, model.gradcam_layer, model.input_adapt) == ("body.conv1", "body.layer4.1.conv2", "sum")
    assert model.get_submodule(model.first_conv).in_channels == 1
    x, y = torch.rand(4, 1, 32, 32), torch.tensor([1.0, 0.0, 1.0, 0.0])
    cfg = PPIConfig(saliency="wbp", start_epoch=0)
    step = TrainStep(model=model, net=model, cfg=cfg, weights=LossWeights(cfg), binary=True,
                     device=torch.device("cpu"))
    before = model.head.weight.detach().clone()
    values = step(x, y, None, epoch=0, generator=torch.Generator().manual_seed(1))
    assert {"cls", "con", "reg", "ad"} <= set(values) and all(torch.isfinite(torch.tensor(v)) for v in values.values())
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert model.get_submodule("body.conv1").weight.grad.abs().sum() > 0
    assert torch.equal(model.head.weight.detach(), before)  # the step computes gradients; the optimiser steps


def test_torchvision_head_and_checkpoint_round_trip(tmp_path):
    cfg = ModelConfig(name="torchvision:efficientnet_b0", in_channels=3, num_classes=3, input_size=32)
    model = build_model(cfg).eval()
    assert model.head.out_features == 3 and model.first_conv == "body.features.0.0"
    path = tmp_path / "m.pt"
    save_checkpoint(path, model.state_dict(), {"model": dataclasses.asdict(cfg)})
    loaded, _ = load_model(path)
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(loaded(x), model(x))


def test_module_path_factory_gets_the_model_config(user_nets):
    model = build_model(ModelConfig(name=f"{user_nets}:factory", in_channels=2, num_classes=2, input_size=16))
    assert model(torch.rand(3, 2, 16, 16)).shape == (3, 2)
    assert (model.first_conv, model.gradcam_layer) == ("body.0", "body.2")
    assert not model.body[1].inplace


@pytest.mark.parametrize(("name", "match"), [
    ("torchvision:nonet", "torchvision has no classification model 'nonet'"),
    ("no_such_module_xyz:f", "cannot import 'no_such_module_xyz'"),
    ("ppi_user_nets:nothing", "has no function 'nothing'"),
])
def test_bad_names_stop_with_one_line(name, match, user_nets):
    with pytest.raises(ConfigError, match=match) as exc:
        build_model(ModelConfig(name=name))
    assert "\n" not in exc.value.one_line()


@pytest.mark.parametrize("source", ["timm", "monai"])
def test_missing_extra_names_the_install_command(source, monkeypatch):
    monkeypatch.setitem(sys.modules, source, None)  # as if the optional extra were not installed
    monkeypatch.setitem(sys.modules, f"{source}.networks", None)
    monkeypatch.setitem(sys.modules, f"{source}.networks.nets", None)
    with pytest.raises(MissingExtraError) as exc:
        build_model(ModelConfig(name=f"{source}:x"))
    assert f'pip install -e ".[{source}]"' in exc.value.one_line()


def test_timm_efficientnet_b0():
    pytest.importorskip("timm")  # optional extra `timm`: skipped where it is not installed (CI)
    model = build_model(ModelConfig(name="timm:efficientnet_b0", in_channels=1, num_classes=1, input_size=32))
    assert model(torch.rand(2, 1, 32, 32)).shape == (2, 1)


def test_monai_densenet121():
    pytest.importorskip("monai")  # optional extra `monai`: skipped where it is not installed (CI)
    model = build_model(ModelConfig(name="monai:DenseNet121", in_channels=1, num_classes=1, input_size=32))
    assert model(torch.rand(2, 1, 32, 32)).shape == (2, 1)


def test_unsupported_module_stops_wbp_training_in_one_line(tmp_path, user_nets):
    recipe = load_recipe("synthetic-ppi-wbp-cpu")
    name = f"{user_nets}:softmax_factory"
    recipe = dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, name=name))
    split = study_split(load_study_data(recipe, None), fold=None, folds=recipe.eval.folds, seed=recipe.seed,
                        val_fraction=recipe.data.val_fraction)
    with pytest.raises(ModelError) as exc:
        fit(recipe, cache_dir=None, split=split, out_dir=tmp_path / "run", device="cpu")
    line = exc.value.one_line()
    assert "\n" not in line and "Softmax" in line and "gradient" in line and "gradcam" in line
    assert not (tmp_path / "run" / "last.pt").exists()
    # a transformer's attention is refused too; the torchvision CNNs pass
    assert wbp_unsupported(build_model(ModelConfig(name="torchvision:vit_b_16", input_size=224))) == [
        "MultiheadAttention"]
    assert wbp_unsupported(build_model(ModelConfig(name="torchvision:resnet18", input_size=32))) == []
