# SPDX-License-Identifier: MIT
"""The wheel ships every sub-package: pyproject lists packages explicitly (so recipes/ can be mapped in)."""

from __future__ import annotations

import tomllib

from helpers import ROOT


def test_every_python_package_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "ppi_cli").rglob("__init__.py")}
    assert on_disk <= listed, f"add to [tool.setuptools] packages: {sorted(on_disk - listed)}"
    mapped = set(config["package-dir"])
    for name in listed - on_disk:
        assert name in mapped and (ROOT / config["package-dir"][name]).is_dir(), name
