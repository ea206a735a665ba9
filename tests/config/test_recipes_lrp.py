# SPDX-License-Identifier: MIT
"""Every bundled LRP recipe trains a PPI step: its CPU twin, shrunk to 16×16 inputs and a batch of four."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from ppi_cli.config import list_recipes, load_recipe
from ppi_cli.config.recipe import SELECT_CHOICES
from ppi_cli.engine.step import TrainStep
from ppi_cli.models import build_model
from ppi_cli.ppi import LossWeights

pytest.importorskip("zennit")

LRP_TWINS = [name for name in list_recipes() if "-ppi-lrp" in name and name.endswith("-cpu")]


def test_every_lrp_recipe_has_a_cpu_twin():
    gpu = [name for name in list_recipes() if "-ppi-lrp" in name and not name.endswith("-cpu")]
    assert gpu and sorted(f"{name}-cpu" for name in gpu) == sorted(LRP_TWINS)


def _step_modes(recipe) -> list[str]:
    """The batch-norm modes the recipe's training steps run with (`select` trains each of its choices)."""
    mode = recipe.ppi.intervened_norm
    return list(SELECT_CHOICES["intervened_norm"]) if mode == "select" else [mode]


@pytest.mark.parametrize("name", LRP_TWINS)
def test_lrp_recipe_trains_one_ppi_step_with_finite_losses(name, one_thread):
    recipe = load_recipe(name)
    assert recipe.ppi.saliency.startswith("lrp-") and not recipe.ppi.create_graph
    for mode in _step_modes(recipe):
        _one_ppi_step(recipe, mode)


def _one_ppi_step(recipe, mode: str) -> None:
    model_cfg = dataclasses.replace(recipe.model, input_size=16,
                                    multiview=dataclasses.replace(recipe.model.multiview, num_positions=4))
    # the recipe's PPI section, from the first step, in one of the batch-norm modes its runs train with
    cfg = dataclasses.replace(recipe.ppi, start_epoch=0, intervened_norm=mode)
    torch.manual_seed(0)
    model = build_model(model_cfg).train()
    batch, channels = 4, model_cfg.in_channels
    if model_cfg.name == "multiview":
        x, positions = torch.rand(batch, 3, channels, 16, 16), torch.arange(3).repeat(batch, 1)
    else:
        x, positions = torch.rand(batch, channels, 16, 16), None
    binary = model_cfg.num_classes == 1
    y = torch.tensor([1.0, 0.0, 1.0, 0.0]) if binary else torch.arange(batch) % model_cfg.num_classes
    step = TrainStep(model=model, net=model, cfg=cfg, weights=LossWeights(cfg), binary=binary,
                     device=torch.device("cpu"))
    assert step.uses_ppi(epoch=0, batch_size=batch)
    values = step(x, y, positions, epoch=0, generator=torch.Generator().manual_seed(0))
    assert {"cls", "con", "reg", "ad", "loss"} <= set(values)
    assert all(math.isfinite(float(values[k])) for k in ("cls", "con", "reg", "ad", "loss")), values
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)
