# SPDX-License-Identifier: MIT
"""Recipes and site configs: YAML in, frozen typed objects out."""

from ppi_cli.config.loader import build, config_hash, dump_yaml, param, to_dict
from ppi_cli.config.recipe import (
    NULL,
    Recipe,
    apply_overrides,
    list_recipes,
    load_recipe,
    override_value,
    resolve_recipe_path,
)
from ppi_cli.config.site import SiteConfig, load_site_config, load_site_configs

__all__ = [
    "Recipe", "SiteConfig", "build", "param", "to_dict", "dump_yaml", "config_hash", "load_recipe", "apply_overrides",
    "list_recipes", "resolve_recipe_path", "load_site_config", "load_site_configs", "NULL", "override_value",
]
