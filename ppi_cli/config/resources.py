# SPDX-License-Identifier: MIT
"""Where the bundled recipes and site configs live, in a checkout and in an installed wheel."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

__all__ = ["bundled_dir"]

_PACKAGE = Path(__file__).resolve().parents[1]
_REPO_ROOT = _PACKAGE.parent


def bundled_dir(kind: Literal["recipes", "site_configs"]) -> Path:
    """The folder of bundled `recipes` or `site_configs`.

    A checkout (editable install) uses the top-level folders; a wheel carries them as
    `ppi_cli/bundled/<kind>/` (see the package-dir mapping in pyproject.toml).
    """
    local = _REPO_ROOT / kind
    if local.is_dir() and (_REPO_ROOT / "pyproject.toml").is_file():
        return local
    return _PACKAGE / "bundled" / kind
