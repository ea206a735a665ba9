# SPDX-License-Identifier: MIT
"""The layer contract (docs/design.md, scripts/check_layers.py): no import climbs a layer, none closes a circle.

The checker runs on the package as it is (no violation), and on copies with a deliberately added
upward import, a circle, a lazy import, a module named in a string and a package no layer holds:
each one is reported, so the contract cannot pass by checking nothing.
"""

from __future__ import annotations

import shutil

import pytest
from helpers import ROOT, load_script

check_layers = load_script("check_layers")


@pytest.fixture
def package(tmp_path):
    """A copy of ppi_cli's modules to add imports to."""
    root = tmp_path / "ppi_cli"
    shutil.copytree(ROOT / "ppi_cli", root, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return root


def _add(module, line: str) -> None:
    module.write_text(module.read_text(encoding="utf-8") + "\n" + line + "\n", encoding="utf-8")


def test_the_package_keeps_the_contract():
    problems = check_layers.check(ROOT / "ppi_cli")
    assert problems == [], "\n".join(map(str, problems))


def test_every_package_has_a_layer():
    packages = {p.name for p in (ROOT / "ppi_cli").iterdir() if (p / "__init__.py").is_file()}
    packages |= {p.stem for p in (ROOT / "ppi_cli").glob("*.py")}
    placed = {name for layer in check_layers.LAYERS for name in layer}
    assert packages <= placed, sorted(packages - placed)


def test_an_upward_import_fails_the_contract(package, capsys):
    _add(package / "data" / "cache.py", "from ppi_cli.engine.trainer import fit  # data knows nothing above it")
    problems = check_layers.check(package)
    assert [p.modules for p in problems if p.kind == "upward"] == [("ppi_cli.data.cache", "ppi_cli.engine.trainer")]
    assert {p.kind for p in problems} == {"upward", "circle"}  # the trainer reads caches: the edge closes a circle
    assert check_layers.main([str(package)]) == 1
    assert "upward: ppi_cli.data.cache -> ppi_cli.engine.trainer" in capsys.readouterr().out


def test_a_lazy_import_and_a_module_named_in_a_string_count(package):
    _add(package / "models" / "tiny.py", "def _later():\n    from ppi_cli.reports import tables  # noqa")
    _add(package / "saliency" / "core.py", 'HIDDEN = "ppi_cli.engine.explain"  # importlib.import_module(HIDDEN)')
    upward = {p.modules for p in check_layers.check(package) if p.kind == "upward"}
    assert upward == {("ppi_cli.models.tiny", "ppi_cli.reports.tables"),
                      ("ppi_cli.saliency.core", "ppi_cli.engine.explain")}


def test_a_circle_fails_the_contract_even_within_one_package(package):
    _add(package / "data" / "splits.py", "from ppi_cli.data import cache as _cache  # noqa")
    _add(package / "data" / "cache.py", "def _later():\n    from ppi_cli.data.splits import Split  # noqa")
    problems = check_layers.check(package)
    assert [(p.kind, p.modules) for p in problems] == [("circle", ("ppi_cli.data.cache", "ppi_cli.data.splits"))]


def test_a_package_without_a_layer_is_reported(package):
    (package / "extras").mkdir()
    (package / "extras" / "__init__.py").write_text("")
    assert [p.kind for p in check_layers.check(package)] == ["unplaced"]
