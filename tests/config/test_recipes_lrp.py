# SPDX-License-Identifier: MIT
"""Every bundled LRP recipe trains a PPI step: its CPU twin, shrunk to 16×16 inputs and a batch of four."""

from __future__ import annotations

import pytest
from helpers import one_ppi_step, step_configs

from ppi_cli.config import list_recipes, load_recipe
from ppi_cli.config.recipe import SELECT_CHOICES

pytest.importorskip("zennit")

LRP_TWINS = [name for name in list_recipes() if "-ppi-lrp" in name and name.endswith("-cpu")]


def test_every_lrp_recipe_has_a_cpu_twin():
    gpu = [name for name in list_recipes() if "-ppi-lrp" in name and not name.endswith("-cpu")]
    assert gpu and sorted(f"{name}-cpu" for name in gpu) == sorted(LRP_TWINS)


@pytest.mark.parametrize("name", LRP_TWINS)
def test_lrp_recipe_trains_one_ppi_step_with_finite_losses(name, one_thread):
    recipe = load_recipe(name)
    assert recipe.ppi.saliency.startswith("lrp-") and not recipe.ppi.create_graph
    configs = step_configs(recipe)
    assert all(getattr(cfg, field) != "select" for cfg in configs for field in SELECT_CHOICES)  # a step runs one
    for cfg in configs:
        one_ppi_step(recipe, cfg)
