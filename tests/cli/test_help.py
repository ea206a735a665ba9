# SPDX-License-Identifier: MIT
"""Help that reads like the workflow (issue 17, item 5)."""

from __future__ import annotations

import re

import pytest
from helpers import lidc_nodule_cache


@pytest.fixture(autouse=True)
def _wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "140")


def test_verbs_are_listed_in_workflow_order(cli):
    text = cli("--help").stdout
    listed = re.findall(r"│ ([a-z-]+) {2,}", text.split("Commands")[1])
    assert listed[:6] == ["prepare", "train", "crossval", "cross-site", "explain", "segment-eval"]


def test_on_off_flags_take_no_value_placeholder(cli):
    text = cli("cross-site", "--help").stdout
    line = next(line for line in text.splitlines() if "--baseline" in line)
    assert "<bool>" not in line and "Also run the same recipe without PPI" in line
    assert "<int range>" in next(line for line in text.splitlines() if "--bootstrap" in line)


def test_recipe_list_groups_by_dataset_and_filters(cli):
    every = cli("recipe", "list").stdout
    assert all(f"{kind} (" in every for kind in ("lidc", "ga", "folder", "synthetic"))
    lidc = cli("recipe", "list", "--dataset", "lidc").stdout
    assert "lidc-ppi-wbp-cpu" in lidc and "ga-ppi-wbp" not in lidc and "synthetic (" not in lidc
    bad = cli("recipe", "list", "--dataset", "mri")
    assert bad.exit_code == 1 and "no bundled recipe trains on it" in bad.stderr


def test_a_mistyped_recipe_gets_did_you_mean(cli):
    result = cli("recipe", "show", "lidc-ppi-wbb")
    assert result.exit_code == 1 and "did you mean lidc-ppi-wbp" in result.stderr and len(
        result.stderr.strip().splitlines()) == 1


def test_recipe_check_validates_and_holds_a_recipe_against_a_cache(cli, tmp_path):
    assert cli("recipe", "check", "demo-lidc-ppi-wbp").stdout.strip() == "demo-lidc-ppi-wbp: valid"
    cache = lidc_nodule_cache(tmp_path / "cache", side=180, patients=2)
    refused = cli("recipe", "check", "demo-lidc-ppi-wbp", "--data", cache)
    assert refused.exit_code == 1 and "data.crop 40" in refused.stderr
    fine = cli("recipe", "check", "demo-lidc-ppi-wbp", "--data", cache, "--set", "data.crop=128")
    assert fine.exit_code == 0 and "valid against" in fine.stdout


def test_compare_help_says_where_it_writes_and_what_the_seed_seeds(cli):
    text = " ".join(cli("compare", "--help").stdout.split())
    assert "RUN_A/compare-" in text and "a new folder under the workspace" not in text
    assert "Seed of the bootstrap resamples" in text and "overrides the recipe" not in text
