# SPDX-License-Identifier: MIT
"""The GA recipes that run on a CPU carry the shortcut benchmark's measured setting: the demo's at 32 px (docs/ppi.md,
"The outside look in the demo"), ga-ppi-wbp-cpu and its twins at 64 px on a four-block tiny ("The CPU study recipe");
the recipes where it was not measured keep the paper's soft masks."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import one_ppi_step, step_configs

from ppi_cli.config import load_recipe

# The fields of the sweeps' `c30-mag-w25-out` variant, as docs/ppi.md lists them.
MEASURED = {"mask": "top-k", "coverage": 0.30, "map_centre": "batch", "map_smooth": 2.0, "map_sign": "magnitude",
            "fill": "swap", "swap_look": "blur", "look_from": "outside", "alpha": 0.25, "keep": 0.25, "beta": 0.1,
            "gamma": 0.0, "start_epoch": 5}


# ga-ppi-wbp-cpu: whole images swapped in each other's column look, the look's shape without its brightness, own
# 15 % masks, the counterfactuals faded in over ten epochs from epoch 1, a random training blur, 60 epochs
# (docs/ppi.md, "Counterfactuals faded in": the `fade` row, ten seeds on each diffuse form; "PPI from the first
# epoch": the start, ten seeds on every training site of both forms), batch norm on the clean batch's statistics
# with their gradient ("Why PPI runs were timid": five seeds on every training site of both forms), L_reg at
# β = 30 ("Sparser maps once batch norm is differentiated": five seeds on every training site of both forms), the
# look's level chosen per run between keep and top ("The look level chosen per run": ten seeds on every row).
MEASURED_64 = {"mask": "top-k", "coverage": 0.15, "map_centre": "batch", "map_smooth": 4.0, "map_sign": "magnitude",
               "fill": "swap", "swap_look": "columns", "swap_region": "image", "look_level": "select",
               "look_choices": "keep-top", "look_from": "outside", "intervened_norm": "clean-grad", "alpha": 0.5,
               "keep": 0.5, "beta": 30.0, "gamma": 0.0, "start_epoch": 1, "fade_in": 10, "fallback_drop": 0.02,
               "fallback_against": "baseline", "fallback_fit": 0.2}


@pytest.mark.parametrize("name", ["demo-ga-ppi-wbp", "demo-ga-site-ppi-wbp"])
def test_demo_ga_recipes_carry_the_measured_setting(name):
    recipe = load_recipe(name)
    assert {key: getattr(recipe.ppi, key) for key in MEASURED} == MEASURED
    assert (recipe.model.input_size, recipe.model.tiny_blocks, recipe.ppi.look_sigma) == (32, 3, 8.0)


@pytest.mark.parametrize("name", ["ga-ppi-wbp-cpu", "ga-ppi-grad-cpu", "ga-ppi-gradcam-cpu", "ga-ppi-lrp-cpu",
                                  "ga-ppi-wbp-box-cpu"])
def test_the_ga_cpu_study_recipes_carry_the_setting_measured_at_64_px(name):
    recipe = load_recipe(name)
    expected = MEASURED_64 | ({"mask": "box"} if name.endswith("box-cpu") else {})
    if recipe.ppi.saliency != "wbp":  # β was measured on WBP maps; the saliency twins keep the weight they had
        expected |= {"beta": 0.1}
    assert {key: getattr(recipe.ppi, key) for key in expected} == expected
    assert (recipe.model.backbone, recipe.model.tiny_blocks, recipe.model.input_size) == ("tiny", 4, 64)
    assert (recipe.schedule.epochs, recipe.model.multiview.bias_epochs, recipe.data.blur) == (60, 2, 1.0)
    assert recipe.eval.select == "loss"  # "Keeping the epoch of the lowest validation loss"


def test_the_ga_cpu_baseline_is_the_same_network_and_schedule_without_ppi():
    recipe, baseline = load_recipe("ga-ppi-wbp-cpu"), load_recipe("ga-baseline-cpu")
    assert not baseline.ppi.enabled and baseline.model == recipe.model
    assert baseline.schedule == recipe.schedule and baseline.eval == recipe.eval  # the same model selection


def test_the_site_recipe_is_the_sweeps_schedule_and_its_baseline_differs_only_by_ppi():
    site, baseline = load_recipe("demo-ga-site-ppi-wbp"), load_recipe("demo-ga-site-baseline")
    assert (site.schedule.epochs, site.model.input_size) == (40, 32)
    assert not baseline.ppi.enabled and baseline.schedule == site.schedule and baseline.model == site.model


@pytest.mark.parametrize("name", ["ga-ppi-grad", "ga-ppi-gradcam", "ga-ppi-lrp", "ga-ppi-wbp", "ga-ppi-wbp-box"])
def test_the_ga_gpu_recipes_carry_the_setting_measured_at_64_px_its_lengths_scaled_to_their_input(name):
    """The GPU recipes carry ga-ppi-wbp-cpu's PPI setting (unmeasured on Inception), every length in pixels scaled
    by their input size over the 64 px it was measured at."""
    recipe, cpu = load_recipe(name), load_recipe(f"{name}-cpu")
    scale = recipe.model.input_size / cpu.model.input_size
    assert (recipe.model.backbone, recipe.model.input_size, cpu.model.input_size) == ("inception_v3", 299, 64)
    lengths = {"ppi.map_smooth": (recipe.ppi.map_smooth, cpu.ppi.map_smooth),
               "ppi.look_sigma": (recipe.ppi.look_sigma, cpu.ppi.look_sigma),
               "data.blur": (recipe.data.blur, cpu.data.blur)}
    assert {key: gpu for key, (gpu, _) in lengths.items()} == pytest.approx(
        {key: measured * scale for key, (_, measured) in lengths.items()}, abs=0.05)
    same = [key for key in MEASURED_64 if key not in ("map_smooth", "beta")]
    assert {key: getattr(recipe.ppi, key) for key in same} == {key: getattr(cpu.ppi, key) for key in same}
    assert recipe.ppi.beta == 0.1  # L_reg charges a map's scale, and Inception's WBP maps have another
    assert recipe.eval.select == cpu.eval.select == "loss"


def test_the_ga_gpu_recipe_trains_a_ppi_step_at_both_look_levels_on_inception(one_thread):
    """ga-ppi-wbp's setting runs on Inception (from random weights, shrunk to 80 px, its smallest input is 75): one
    PPI step at each look level its select trains, finite losses and gradients."""
    recipe = load_recipe("ga-ppi-wbp", {"model.weights": "none"})
    configs = step_configs(recipe)
    assert sorted(cfg.look_level for cfg in configs) == ["keep", "top"]
    for cfg in configs:
        one_ppi_step(recipe, cfg, size=80)


@pytest.mark.parametrize("name", ["lidc-ppi-wbp", "lidc-ppi-wbp-cpu"])
def test_recipes_where_the_setting_does_not_transfer_keep_the_papers_soft_masks(name):
    ppi = load_recipe(name).ppi
    assert (ppi.mask, ppi.fill, ppi.alpha, ppi.gamma) == ("soft", "zero", 1.0, 1.0)


def test_the_lidc_demo_recipe_carries_the_own_mask_zero_fill_its_docs_section_measured():
    """demo-lidc-ppi-wbp: the paper's zero fill on masks of the top 40 % of the model's own smoothed WBP
    magnitude, the row docs/ppi.md's "LIDC's ceiling" chose; the other LIDC recipes keep the soft masks."""
    ppi = load_recipe("demo-lidc-ppi-wbp").ppi
    assert (ppi.mask, ppi.coverage, ppi.map_smooth, ppi.map_sign, ppi.fill) == ("top-k", 0.4, 2.0, "magnitude", "zero")
    assert (ppi.alpha, ppi.gamma, ppi.map_centre, ppi.delta) == (1.0, 1.0, "none", 0.3)
    section = _docs_section("LIDC's ceiling")
    listed = ["`demo-lidc-ppi-wbp`", "`mask: top-k`", "`coverage: 0.40`", "`map_smooth: 2`", "`map_sign: magnitude`",
              "zero fill"]
    assert [field for field in listed if field not in section] == []
    # L_out's weight: the value the table of its own section marks as the recipe's
    section = _docs_section("LIDC: the evidence a map leaves outside its mask")
    assert "**δ = 0.3 (`demo-lidc-ppi-wbp` now)**" in section and "`ppi.delta`" in section
    # batch norm on the intervened images: the mode its own section's tables chose, on both kinds of readers
    assert ppi.intervened_norm == "clean-grad"
    section = _docs_section("LIDC with batch norm differentiated")
    assert "`demo-lidc-ppi-wbp` carries `ppi.intervened_norm: clean-grad`" in section
    assert "twelve seeds" in section and "default readers" in section


def _docs_section(heading: str) -> str:
    """The docs/ppi.md section whose heading starts with `heading`, its whitespace collapsed."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "ppi.md").read_text(encoding="utf-8")
    return " ".join(text.split(f"### {heading}", 1)[1].split("\n### ", 1)[0].split())


def test_docs_list_the_fields_the_demo_recipe_sets():
    section = _docs_section("The outside look in the demo")
    listed = ["`ppi.mask: top-k`", "`coverage: 0.30`", "`map_centre: batch`", "`map_smooth: 2`",
              "`map_sign: magnitude`", "`fill: swap`", "`swap_look: blur`", "`look_from: outside`",
              "α = `keep` = 0.25, β = 0.1, γ = 0, PPI from epoch 5"]
    assert [field for field in listed if field not in section] == []


def test_docs_list_what_the_cpu_study_recipe_sets():
    section = _docs_section("The CPU study recipe")
    recipe = load_recipe("ga-ppi-wbp-cpu")
    listed = ["`model.tiny_blocks` (new, default 3)", f"`map_smooth: {recipe.ppi.map_smooth:g}`",
              f"`look_sigma: {recipe.ppi.look_sigma:g}`", "trains 40 epochs",  # that version's schedule
              f"`model.tiny_blocks: {recipe.model.tiny_blocks}`"]
    assert [field for field in listed if field not in section] == []
    # the section names the mode it measured against (the recipe's mode is pinned by the newer section)
    assert "`ppi.intervened_norm: clean`" in section


def test_docs_name_the_selection_rule_the_cpu_study_recipe_keeps():
    section = _docs_section("Keeping the epoch of the lowest validation loss")
    recipe = load_recipe("ga-ppi-wbp-cpu")
    assert f"`eval.select: {recipe.eval.select}`" in section and "`eval.select: metric`" in section


def test_docs_say_which_batch_norm_mode_the_cpu_study_recipe_kept_then():
    section = _docs_section("Batch norm chosen on the training site's validation split")
    # the section measured `select`, which the CPU study recipe carried until "Counterfactuals faded in"
    assert "`ga-ppi-wbp-cpu` and its twins carry `select`" in section
    assert "`ppi.intervened_norm: select`" in section and "`model.tiny_norm: group`" in section


def test_docs_list_every_field_the_cpu_study_recipe_sets_where_they_were_chosen():
    section = _docs_section("Counterfactuals faded in")
    recipe = load_recipe("ga-ppi-wbp-cpu")
    listed = [f"`ppi.{key}: {getattr(recipe.ppi, key)}`" for key in MEASURED_64
              if key not in ("map_centre", "map_smooth", "map_sign", "look_from", "beta", "gamma", "mask",
                             "fallback_drop", "fallback_against", "fallback_fit",  # the guards' own sections
                             "start_epoch",  # chosen later, "PPI from the first epoch" (below)
                             "intervened_norm",  # chosen later, "Why PPI runs were timid" (below)
                             "look_level", "look_choices")]  # chosen later, "The look level chosen per run"
    listed += [f"`data.blur: {recipe.data.blur:.1f}`", f"`schedule.epochs: {recipe.schedule.epochs}`"]
    assert [field for field in listed if field not in section] == []
    for twin in ("ga-ppi-grad-cpu", "ga-ppi-gradcam-cpu", "ga-ppi-lrp-cpu", "ga-ppi-wbp-box-cpu", "ga-baseline-cpu"):
        assert f"`{twin}`" in section


def test_docs_give_the_start_the_cpu_study_recipe_carries_and_the_ten_seed_table_that_chose_it():
    section = _docs_section("PPI from the first epoch")
    recipe = load_recipe("ga-ppi-wbp-cpu")
    assert f"`ga-ppi-wbp-cpu` carries `ppi.start_epoch: {recipe.ppi.start_epoch}`" in section
    assert "seeds 0-9" in section  # the table that chose it covers ten seeds on every row


def test_docs_give_the_look_level_the_cpu_study_recipe_carries_and_the_tables_that_chose_it():
    section = _docs_section("The recipe chooses its look level per run")
    ppi = load_recipe("ga-ppi-wbp-cpu").ppi
    assert f"`ga-ppi-wbp-cpu` carries `ppi.look_level: {ppi.look_level}`" in section
    assert f"`ppi.look_choices: {ppi.look_choices}`" in section
    assert "seeds 0-9" in section and "seeds 0-4" in section  # the ramp's ten seeds, the texture's five
    assert "`demo-ga-ppi-wbp`" in section  # the demo keeps one level, and the section says so


def test_docs_give_the_batch_norm_the_cpu_study_recipe_carries_and_the_table_that_chose_it():
    section = _docs_section("Why PPI runs were timid")
    recipe = load_recipe("ga-ppi-wbp-cpu")
    assert f"`ga-ppi-wbp-cpu` carries `ppi.intervened_norm: {recipe.ppi.intervened_norm}`" in section
    for form in ("ramp", "texture"):  # the table covers every training site of both forms
        assert all(f"| {form} | {site} " in section for site in "ABCD"), form


def test_docs_give_the_collapse_guard_the_recipe_carries_and_the_tables_that_chose_it():
    section = _docs_section("PPI rejected")  # the guard against the warm-up, the recipe's until the next section
    assert "`ppi.fallback_drop: 0.2`" in section
    assert "| `fallback_drop` |" in section  # the table of values against the runs each one rejects
    section = _docs_section("PPI measured against the recipe without PPI")
    recipe = load_recipe("ga-ppi-wbp-cpu")
    assert f"`ppi.fallback_drop: {recipe.ppi.fallback_drop:g}`" in section
    assert f"`ppi.fallback_against: {recipe.ppi.fallback_against}`" in section
    for rule in ("against the warm-up, 0.2", "against the recipe without PPI, 0.02",
                 "against the recipe without PPI, 0.05"):  # the table of rules, each row per training site
        assert rule in section
    for demo in ("demo-ga-ppi-wbp", "demo-ga-site-ppi-wbp"):  # the demo keeps its measured runs: no guard
        assert load_recipe(demo).ppi.fallback_drop is None and load_recipe(demo).ppi.fallback_fit is None


def test_docs_give_the_l_reg_weight_the_cpu_study_recipe_carries_and_the_rows_that_chose_it():
    section = _docs_section("Sparser maps once batch norm is differentiated")
    recipe = load_recipe("ga-ppi-wbp-cpu")
    assert f"**`ga-ppi-wbp-cpu` carries `ppi.beta: {recipe.ppi.beta:g}`" in section
    # chosen on every training site of both forms: rows A-C of each form, and trained on D
    rows = [f"| {form} | {row} | **β = {recipe.ppi.beta:g}** |" for form in ("ramp", "texture") for row in "ABC"]
    assert [row for row in rows if row not in section] == []
    assert all(f"| **β = {recipe.ppi.beta:g}** | {form} |" in section for form in ("ramp", "texture"))  # trained on D
    # the saliency twins keep the weight they had, and the section says so
    for twin in ("ga-ppi-grad-cpu", "ga-ppi-gradcam-cpu", "ga-ppi-lrp-cpu"):
        assert f"`{twin}`" in section and f"`ppi.beta: {load_recipe(twin).ppi.beta:g}`" in section


def test_docs_give_the_training_fit_guard_the_cpu_study_recipe_carries_and_the_runs_that_chose_it():
    section = _docs_section("PPI runs that stop fitting")
    recipe = load_recipe("ga-ppi-wbp-cpu")
    assert f"`ga-ppi-wbp-cpu` carries `ppi.fallback_fit: {recipe.ppi.fallback_fit:g}`" in section
    assert "| the recipe's rows | > 0.2" in section and "| held out | > 0.2" in section  # the gap against the costs
    for form in ("ramp", "texture"):  # every row under both rules, and the whole matrix
        assert f"| {form} | **the whole matrix** | **and fit** |" in section, form
    assert "ppi sweep --recipe ga-ppi-wbp-cpu --data cache-F --train B --seeds 10-14" in section  # the fresh seeds
