# SPDX-License-Identifier: MIT
"""The demo's GA recipes carry the shortcut benchmark's measured setting (docs/ppi.md, "The outside look in the
demo"); the study recipes, where it was measured not to transfer, keep the paper's soft masks."""

from __future__ import annotations

from pathlib import Path

import pytest

from ppi_cli.config import load_recipe

# The fields of the sweeps' `c30-mag-w25-out` variant, as docs/ppi.md lists them.
MEASURED = {"mask": "top-k", "coverage": 0.30, "map_centre": "batch", "map_smooth": 2.0, "map_sign": "magnitude",
            "fill": "swap", "swap_look": "blur", "look_from": "outside", "alpha": 0.25, "keep": 0.25, "beta": 0.1,
            "gamma": 0.0, "start_epoch": 5}


@pytest.mark.parametrize("name", ["demo-ga-ppi-wbp", "demo-ga-site-ppi-wbp"])
def test_demo_ga_recipes_carry_the_measured_setting(name):
    ppi = load_recipe(name).ppi
    assert {key: getattr(ppi, key) for key in MEASURED} == MEASURED


def test_the_site_recipe_is_the_sweeps_schedule_and_its_baseline_differs_only_by_ppi():
    site, baseline = load_recipe("demo-ga-site-ppi-wbp"), load_recipe("demo-ga-site-baseline")
    assert (site.schedule.epochs, site.model.input_size) == (40, 32)
    assert not baseline.ppi.enabled and baseline.schedule == site.schedule and baseline.model == site.model


@pytest.mark.parametrize("name", ["ga-ppi-wbp", "ga-ppi-wbp-cpu", "lidc-ppi-wbp-cpu", "demo-lidc-ppi-wbp"])
def test_recipes_where_the_setting_does_not_transfer_keep_the_papers_soft_masks(name):
    ppi = load_recipe(name).ppi
    assert (ppi.mask, ppi.fill, ppi.alpha, ppi.gamma) == ("soft", "zero", 1.0, 1.0)


def test_docs_list_the_fields_the_demo_recipe_sets():
    text = (Path(__file__).resolve().parents[2] / "docs" / "ppi.md").read_text(encoding="utf-8")
    section = " ".join(text.split("### The outside look in the demo", 1)[1].split("\n### ", 1)[0].split())
    listed = ["`ppi.mask: top-k`", "`coverage: 0.30`", "`map_centre: batch`", "`map_smooth: 2`",
              "`map_sign: magnitude`", "`fill: swap`", "`swap_look: blur`", "`look_from: outside`",
              "α = `keep` = 0.25, β = 0.1, γ = 0, PPI from epoch 5"]
    assert [field for field in listed if field not in section] == []
