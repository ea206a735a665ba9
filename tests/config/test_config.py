# SPDX-License-Identifier: MIT
from __future__ import annotations

import dataclasses

import pytest

from ppi_cli.config import Recipe, list_recipes, load_recipe, load_site_configs
from ppi_cli.config.loader import config_hash
from ppi_cli.errors import ConfigError


def write(path, text):
    path.write_text(text)
    return path


def test_valid_recipe_fills_defaults_and_is_frozen(tmp_path):
    recipe = load_recipe(write(tmp_path / "r.yaml", "seed: 3\noptim:\n  lr: 0.5\nppi:\n  alpha: auto\n"))
    assert recipe.name == "r" and recipe.seed == 3
    assert recipe.optim.lr == 0.5 and recipe.optim.name == "adam"
    assert recipe.ppi.alpha == "auto" and recipe.ppi.beta == 0.1
    assert isinstance(recipe.data.window, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.seed = 1  # type: ignore[misc]


def test_unknown_key_names_file_path_and_suggestion(tmp_path):
    path = write(tmp_path / "typo.yaml", "optim:\n  lerning_rate: 0.1\n")
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    msg = err.value.one_line()
    assert str(path) in msg and "optim.lerning_rate" in msg and "unknown key" in msg
    path = write(tmp_path / "typo2.yaml", "optim:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"did you mean 'optim\.lr'"):
        load_recipe(path)


def test_unknown_section_suggests_nearest(tmp_path):
    with pytest.raises(ConfigError, match=r"did you mean 'schedule'"):
        load_recipe(write(tmp_path / "r.yaml", "shedule:\n  epochs: 2\n"))


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("optim:\n  lr: fast\n", "optim.lr: expected a number, got string 'fast'"),
        ("schedule:\n  epochs: 2.5\n", "schedule.epochs: expected an integer"),
        ("ppi:\n  enabled: 'yes'\n", "ppi.enabled: expected true or false"),
        ("ppi:\n  mask: sfot\n", "did you mean 'soft'"),
        ("data:\n  window: [1, 2, 3]\n", "data.window: expected a list of 2 values"),
        ("ppi:\n  alpha: lots\n", "ppi.alpha: expected a number or 'auto'"),
        ("model: 3\n", "model: expected a mapping"),
    ],
)
def test_wrong_types_are_rejected(tmp_path, text, fragment):
    with pytest.raises(ConfigError) as err:
        load_recipe(write(tmp_path / "r.yaml", text))
    assert fragment in err.value.one_line()


@pytest.mark.parametrize(
    "text, key",
    [
        ("optim:\n  lr: -1\n", "optim.lr"),
        ("data:\n  rotation: 400\n", "data.rotation"),
        ("ppi:\n  beta: -0.5\n", "ppi.beta"),
    ],
)
def test_out_of_range_values_are_rejected(tmp_path, text, key):
    with pytest.raises(ConfigError, match=rf"{key}: .* is out of range"):
        load_recipe(write(tmp_path / "r.yaml", text))


def test_extends_merges_and_blames_the_right_file(tmp_path):
    write(tmp_path / "base.yaml", "optim:\n  lr: 0.1\n  name: sgd\nschedule:\n  epochs: 7\n")
    child = write(tmp_path / "child.yaml", "extends: base.yaml\noptim:\n  lr: 0.2\n")
    recipe = load_recipe(child)
    assert (recipe.optim.lr, recipe.optim.name, recipe.schedule.epochs) == (0.2, "sgd", 7)
    write(tmp_path / "badbase.yaml", "optim:\n  lrr: 0.1\n")
    bad_child = write(tmp_path / "c2.yaml", "extends: badbase.yaml\n")
    with pytest.raises(ConfigError, match="badbase.yaml"):
        load_recipe(bad_child)


def test_extends_cycle_is_reported(tmp_path):
    write(tmp_path / "a.yaml", "extends: b.yaml\n")
    write(tmp_path / "b.yaml", "extends: a.yaml\n")
    with pytest.raises(ConfigError, match="circular"):
        load_recipe(tmp_path / "a.yaml")


def test_overrides_win_and_are_validated(tmp_path):
    path = write(tmp_path / "r.yaml", "optim:\n  lr: 0.1\n")
    assert load_recipe(path, {"optim.lr": 0.3, "seed": None}).optim.lr == 0.3
    with pytest.raises(ConfigError, match="command line: optim.lr"):
        load_recipe(path, {"optim.lr": "x"})
    with pytest.raises(ConfigError, match="unknown key"):
        load_recipe(path, {"optim.nope": 1})


def test_missing_recipe_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="no such file or bundled recipe"):
        load_recipe(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match=r"broken.yaml: line \d+, column \d+"):
        load_recipe(write(tmp_path / "broken.yaml", "optim:\n  lr: [0.1\n"))


def test_every_bundled_recipe_loads():
    names = list_recipes()
    assert names, "no bundled recipes found"
    for name in names:
        recipe = load_recipe(name)  # the cross-field checks included: a refused combination fails here
        assert isinstance(recipe, Recipe)
        if recipe.ppi.saliency.startswith("lrp-"):
            assert recipe.ppi.create_graph is False, name
    assert [n for n in names if "-lrp" in n], "the LRP recipes are bundled"


LRP_WITH_GRAPH = "ppi:\n  saliency: lrp-epsilon\n  create_graph: true\n"


def test_lrp_with_create_graph_is_refused_at_load_in_one_line(tmp_path):
    path = write(tmp_path / "r.yaml", LRP_WITH_GRAPH)
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    line = err.value.one_line()
    assert "\n" not in line and line.startswith(f"{path}: ")
    assert "ppi.saliency 'lrp-epsilon'" in line and f"ppi.create_graph: true (from {path})" in line
    assert "(fix: set `ppi.create_graph: false`" in line
    # The inherited default is named as such; a command-line override as the command line.
    with pytest.raises(ConfigError, match=r"create_graph: true \(from the default\)"):
        load_recipe(write(tmp_path / "d.yaml", "ppi:\n  saliency: lrp-gamma\n"))
    with pytest.raises(ConfigError, match=r"create_graph: true \(from command line\)"):
        load_recipe("ga-ppi-lrp-cpu", {"ppi.create_graph": True})
    with pytest.raises(ConfigError, match="lrp-flat"):
        load_recipe("ga-ppi-wbp-cpu").replace(**{"ppi.saliency": "lrp-flat"})


def test_lrp_without_graph_or_without_ppi_loads_and_a_child_may_fix_its_parent(tmp_path):
    write(tmp_path / "parent.yaml", LRP_WITH_GRAPH)
    child = load_recipe(write(tmp_path / "child.yaml", "extends: parent.yaml\nppi:\n  create_graph: false\n"))
    assert (child.ppi.saliency, child.ppi.create_graph) == ("lrp-epsilon", False)
    assert not load_recipe(tmp_path / "parent.yaml", {"ppi.enabled": False}).ppi.enabled
    assert load_recipe(tmp_path / "parent.yaml", {"ppi.create_graph": False}).ppi.create_graph is False
    for method in ("wbp", "gradient", "gradcam"):  # differentiable twice: a graph is fine
        assert load_recipe(tmp_path / "parent.yaml", {"ppi.saliency": method}).ppi.create_graph


def test_the_load_check_knows_every_saliency_method_that_keeps_no_graph():
    # config imports no torch, so it names the methods itself; the registry's flags are the truth.
    from ppi_cli.config.checks import keeps_no_graph
    from ppi_cli.saliency import method_names, saliency_method

    assert any(n.startswith("lrp-") for n in method_names())
    for name in method_names():
        assert keeps_no_graph(name) is (not saliency_method(name).differentiable), name


def test_cli_train_refuses_lrp_with_create_graph_in_one_line(tmp_path, cli):
    path = write(tmp_path / "lrp.yaml", LRP_WITH_GRAPH)
    result = cli("train", "--recipe", path, "--out", tmp_path / "run", "--device", "cpu")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("ppi: config error: ") and "ppi.create_graph: false" in lines[0]
    assert not (tmp_path / "run").exists()


def test_site_configs_a_to_d_load_and_are_validated(tmp_path):
    sites = load_site_configs()
    assert set("ABCD") <= set(sites)
    assert sites["D"].padding.rule == "edge-repeat"
    write(tmp_path / "X.yaml", "site: X\ngeometry:\n  widht: 10\n")
    with pytest.raises(ConfigError, match=r"geometry.widht: unknown key; did you mean 'geometry.width'"):
        load_site_configs(tmp_path)
    write(tmp_path / "X.yaml", "display_name: no id\n")
    with pytest.raises(ConfigError, match="site: required key is missing"):
        load_site_configs(tmp_path)


def test_config_hash_tracks_values():
    a, b = Recipe(), Recipe().replace(**{"optim.lr": 0.5})
    assert config_hash(a) == config_hash(Recipe()) and config_hash(a) != config_hash(b)


def test_changed_settings_names_moved_keys_and_lets_added_fields_at_their_default_pass():
    from ppi_cli.config.loader import changed_settings, to_dict

    recipe = load_recipe("ga-ppi-wbp-cpu")
    recorded = to_dict(recipe)
    assert changed_settings(recorded, recipe) == []
    older = to_dict(recipe)
    del older["ppi"]["look_to"], older["ppi"]["invariance"]  # fields the toolkit gained since
    assert changed_settings(older, recipe) == []
    moved = recipe.replace(**{"ppi.look_to": "random", "optim.lr": 0.5})
    assert changed_settings(older, moved) == ["optim.lr", "ppi.look_to"]
    assert changed_settings(recorded, moved) == ["optim.lr", "ppi.look_to"]
    # A whole section the record lacks: only its values off their defaults count (this recipe sets two).
    no_section = to_dict(recipe)
    del no_section["model"]["multiview"]
    assert changed_settings(no_section, recipe) == ["model.multiview.bias_epochs", "model.multiview.slices_per_volume"]
    plain = to_dict(Recipe())
    del plain["model"]["multiview"]
    assert changed_settings(plain, Recipe()) == []
    gone = to_dict(recipe) | {"retired": 1}
    gone["ppi"] = dict(gone["ppi"], old_knob=True)
    assert changed_settings(gone, recipe) == ["ppi.old_knob", "retired"]  # a key the toolkit lost is a change
