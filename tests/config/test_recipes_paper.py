# SPDX-License-Identifier: MIT
"""The paper's recipes: every experiment present, each variant differs from its parent only where the paper's
variant does, and every `*-cpu` twin differs from its GPU recipe only by its dataset's CPU block (the sizing and,
for GA, the PPI setting measured on the tiny backbone)."""

from __future__ import annotations

import re

import pytest

from ppi_cli.config import list_recipes, load_recipe, to_dict
from ppi_cli.config.resources import bundled_dir

# The paper's experiments (issue 7): what each recipe must change relative to its dataset's PPI+WBP recipe.
# LRP keeps no saliency graph: zennit's rules are not differentiable twice (refused at load with create_graph).
LRP = {"ppi.saliency": "lrp-epsilon", "ppi.create_graph": False}
EXPERIMENTS = {
    "ga": {"baseline": {"ppi.enabled": False}, "ppi-grad": {"ppi.saliency": "gradient"},
           "ppi-gradcam": {"ppi.saliency": "gradcam"}, "ppi-lrp": LRP,
           "ppi-wbp": {}, "ppi-wbp-box": {"ppi.mask": "box"}},
    "lidc": {"baseline": {"ppi.enabled": False}, "ppi-wbp": {}, "ppi-wbp-adaptive": {"ppi.mask": "soft-adaptive"},
             "ppi-wbp-hard": {"ppi.mask": "hard"}, "ppi-wbp-box": {"ppi.mask": "box"}},
    "cub": {"baseline": {"ppi.enabled": False}, "ppi-grad": {"ppi.saliency": "gradient"},
            "ppi-gradcam": {"ppi.saliency": "gradcam"}, "ppi-lrp": LRP, "ppi-wbp": {}},
    "cifar10": {"baseline": {"ppi.enabled": False}, "ppi-grad": {"ppi.saliency": "gradient"},
                "ppi-gradcam": {"ppi.saliency": "gradcam"}, "ppi-lrp": LRP,
                "ppi-wbp": {}},
}
ALL = [(dataset, variant) for dataset, variants in EXPERIMENTS.items() for variant in variants]


def flat(recipe):
    out = {}

    def walk(node, prefix):
        for key, value in node.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(value, path + ".")
            else:
                out[path] = value

    walk(to_dict(recipe), "")
    return out


def diff(a, b):
    fa, fb = flat(a), flat(b)
    return {k: fb[k] for k in fa if fa[k] != fb[k] and k not in ("name", "description")}


def without(changes, keys):
    return {k: v for k, v in changes.items() if k not in keys}


def test_every_experiment_and_twin_is_bundled():
    names = set(list_recipes())
    expected = {f"{d}-{v}{cpu}" for d, v in ALL for cpu in ("", "-cpu")}
    assert expected <= names, sorted(expected - names)


@pytest.mark.parametrize(("dataset", "variant"), ALL)
def test_variant_changes_only_what_the_paper_varies_and_twin_only_cpu_sizing(dataset, variant):
    root, root_cpu = load_recipe(f"{dataset}-ppi-wbp"), load_recipe(f"{dataset}-ppi-wbp-cpu")
    full, cpu = load_recipe(f"{dataset}-{variant}"), load_recipe(f"{dataset}-{variant}-cpu")
    change = EXPERIMENTS[dataset][variant]
    assert diff(root, full) == {k: v for k, v in change.items() if flat(root)[k] != v}
    # the twin's only differences are its dataset's CPU block, less the keys the variant itself sets
    # (ga-ppi-wbp-cpu's block sets ppi.mask, which the box variant sets to box in both twins). A twin with another
    # saliency method keeps its GPU recipe's L_reg weight: ga-ppi-wbp-cpu's β = 30 was measured on WBP maps, and
    # L_reg charges a map's scale (docs/ppi.md, "Sparser maps once batch norm is differentiated")
    scaled = {"ppi.beta"} if "ppi.saliency" in change else set()
    assert without(diff(full, cpu), change.keys() | scaled) == without(diff(root, root_cpu), change.keys() | scaled)
    assert cpu.ppi.beta == (full.ppi.beta if scaled else root_cpu.ppi.beta)
    assert full.model.weights != "none" or full.model.name != "tiny"
    assert cpu.model.name == "tiny" or cpu.model.backbone == "tiny"
    assert full.data.dataset == {"ga": "ga", "lidc": "lidc"}.get(dataset, "folder")


def test_recipes_say_which_values_are_the_papers_and_which_are_ours():
    for path in bundled_dir("recipes").glob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        assert text.startswith("#"), f"{path.name}: starts without a comment saying what it is"
        if path.stem in {f"{dataset}-ppi-wbp" for dataset in EXPERIMENTS}:
            assert re.search(r"#.*paper:", text) and re.search(r"#.*ours", text), path.name
    ga = load_recipe("ga-ppi-wbp")
    assert ga.model.multiview.position_dim == 6 and ga.eval.folds == 5  # printed in the paper
    cub = load_recipe("cub-ppi-wbp")
    assert (cub.optim.name, cub.optim.lr, cub.schedule.step_size, cub.schedule.epochs, cub.data.batch_size) == \
        ("sgd", 0.01, 30, 100, 32)
    assert (cub.ppi.top_k, cub.ppi.reg_boost, cub.ppi.reg_boost_epoch) == (1000, 100.0, 20)
