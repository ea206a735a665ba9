# SPDX-License-Identifier: MIT
"""Site configs: one YAML per OCT acquisition site (A-D) describing geometry, padding and intensity.

`ppi prepare ga` reads them to bring every volume to one cache geometry, and records in the cache
manifest what was done to each volume. The schema is documented in docs/prepare-ga.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ppi_cli.config.loader import build, param, read_yaml
from ppi_cli.config.resources import bundled_dir
from ppi_cli.errors import ConfigError

__all__ = ["Geometry", "Padding", "Intensity", "SiteConfig", "load_site_config", "load_site_configs"]


@dataclass(frozen=True)
class Geometry:
    """What a volume from this site is expected to look like on disk."""

    n_bscans: int = param(100, "B-scans per volume (A2A Bioptigen: 100).", min=1)
    height: int = param(512, "Axial samples per A-scan, i.e. B-scan rows (Bioptigen: 512).", min=1)
    width: int = param(1000, "A-scans per B-scan, i.e. B-scan columns (Bioptigen: 1000).", min=1)
    spacing_mm: tuple[float, float, float] | None = param(
        None, "Spacing [between B-scans, axial, lateral] in mm when files do not carry it.")


@dataclass(frozen=True)
class Padding:
    """How B-scans narrower than the site's nominal width are brought to it."""

    rule: Literal["none", "edge-repeat", "reflect", "zero"] = param(
        "none", "edge-repeat repeats the left/right border areas (paper: site D's narrower scans).")
    target_width: int | None = param(None, "Pad to this many columns; null uses geometry.width.", min=1)


@dataclass(frozen=True)
class Intensity:
    """Per-volume intensity normalisation to uint8 before caching."""

    method: Literal["none", "minmax", "percentile"] = param(
        "percentile", "none keeps values; minmax stretches to 0-255; percentile clips to [low, high] first.")
    low_percentile: float = param(0.5, "Lower clip percentile (percentile method).", min=0, max=100)
    high_percentile: float = param(99.5, "Upper clip percentile (percentile method).", min=0, max=100)


@dataclass(frozen=True)
class SiteConfig:
    """One acquisition site."""

    site: str = param(help="Site id as it appears in the manifest's `site` column (A, B, C, D).")
    display_name: str = param("", "Human-readable name for reports.")
    geometry: Geometry = param(default_factory=Geometry, help="Expected volume geometry.")
    padding: Padding = param(default_factory=Padding, help="Padding rule for narrow B-scans.")
    intensity: Intensity = param(default_factory=Intensity, help="Intensity normalisation.")
    notes: str = param("", "Free text: device, protocol, known quirks.")


def load_site_config(path: Path) -> SiteConfig:
    """Load and validate one site config YAML."""
    return build(SiteConfig, read_yaml(path), source=str(path))


def load_site_configs(folder: Path | None = None) -> dict[str, SiteConfig]:
    """All site configs of a folder (default: the bundled `site_configs/`), keyed by site id."""
    folder = folder or bundled_dir("site_configs")
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such folder of site configs", hint="pass --sites DIR with one YAML per site")
    configs: dict[str, SiteConfig] = {}
    for path in sorted(folder.glob("*.y*ml")):
        cfg = load_site_config(path)
        if cfg.site in configs:
            raise ConfigError(f"{path}: site '{cfg.site}' is defined twice in {folder}")
        configs[cfg.site] = cfg
    if not configs:
        raise ConfigError(f"{folder}: holds no site config (*.yaml)", hint="copy the bundled site_configs/ as a start")
    return configs
