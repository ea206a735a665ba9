# SPDX-License-Identifier: MIT
"""Where the bundled recipes and site configs live, in a checkout and in an installed wheel."""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Literal

__all__ = ["bundled_dir"]

_REPO_ROOT = Path(__file__).resolve().parents[2]


def bundled_dir(kind: Literal["recipes", "site_configs"]) -> Path:
    """The folder of bundled `recipes` or `site_configs`.

    A checkout (editable install) uses the top-level folders; a wheel carries them as the
    `ppi_cli.bundled.*` packages (see pyproject.toml).
    """
    local = _REPO_ROOT / kind
    if local.is_dir() and (_REPO_ROOT / "pyproject.toml").is_file():
        return local
    return Path(str(importlib.resources.files(f"ppi_cli.bundled.{kind}")))
