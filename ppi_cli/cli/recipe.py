# SPDX-License-Identifier: MIT
"""`ppi recipe list|show|check`: the bundled recipes, a recipe resolved through `extends:`, and checked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]


def list_cmd(
    dataset: Annotated[str | None, typer.Option("--dataset", help="Only the recipes of this dataset (lidc, ga, "
                                                "folder, synthetic).", show_default=False)] = None,
) -> None:
    """List the bundled recipes by dataset, with their one-line descriptions."""
    # Imported here, not at the top: `ppi --help` imports every verb module (cli/main.py).
    from rich.table import Table

    from ppi_cli.config import list_recipes, load_recipe
    from ppi_cli.console import stdout
    from ppi_cli.errors import ConfigError

    groups: dict[str, list[tuple[str, str]]] = {}
    for name in list_recipes():
        recipe = load_recipe(name)
        groups.setdefault(recipe.data.dataset, []).append((name, recipe.description))
    if dataset is not None and dataset not in groups:
        raise ConfigError(f"--dataset {dataset}: no bundled recipe trains on it",
                          hint=f"one of {', '.join(sorted(groups))}")
    for kind in [dataset] if dataset else sorted(groups):
        table = Table("recipe", "description", title=f"{kind} ({len(groups[kind])})", title_justify="left",
                      box=None, pad_edge=False)
        for name, description in groups[kind]:
            table.add_row(name, description)
        stdout.print(table)


def check_cmd(
    recipe: Annotated[str, typer.Argument(help="Recipe YAML path or bundled recipe name.")],
    data: Annotated[Path | None, typer.Option("--data", help="A prepared cache: check the recipe against its "
                                              "fingerprint too (training window, intensity window).",
                                              show_default=False)] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a field, e.g. --set data.crop=128 "
                                                    "(value parsed as YAML); repeatable.")] = None,
) -> None:
    """Resolve and validate a recipe and, with --data, hold it against a cache's fingerprint, as training would."""
    # Imported here, not at the top: `ppi --help` imports every verb module (cli/main.py).
    from ppi_cli.config import load_recipe
    from ppi_cli.console import stdout
    from ppi_cli.engine.run_checks import check_study
    from ppi_cli.engine.study import load_study_data

    resolved = load_recipe(recipe, parse_set_options(set_ or []))
    found = check_study(resolved, load_study_data(resolved, data), {}) if data is not None else []
    against = f" against {data}" if data is not None else ""
    stdout.print(f"{resolved.name}: valid{against}" + (f" ({len(found)} warning(s))" if found else ""))


def show_cmd(
    recipe: Annotated[str, typer.Argument(help="Recipe YAML path or bundled recipe name.")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a field, e.g. --set optim.lr=0.1 "
                                                    "(value parsed as YAML); repeatable.")] = None,
) -> None:
    """Validate a recipe and print it fully resolved (every default filled in, `extends:` followed)."""
    # Imported here, not at the top: `ppi --help` imports every verb module (cli/main.py).
    from ppi_cli.config import dump_yaml, load_recipe

    typer.echo(dump_yaml(load_recipe(recipe, parse_set_options(set_ or []))), nl=False)


def parse_set_options(items: list[str]) -> dict[str, object]:
    """`["optim.lr=0.1", "ppi.enabled=false", "ppi.fallback_drop=null"]` to `{"optim.lr": 0.1, "ppi.enabled": False,
    "ppi.fallback_drop": NULL}` (NULL sets the field to null)."""
    # Imported here, not at the top: `ppi --help` imports every verb module (cli/main.py).
    import yaml

    from ppi_cli.config import override_value

    out: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"'{item}' is not KEY=VALUE", param_hint="--set")
        try:
            out[key.strip()] = override_value(raw)
        except yaml.YAMLError:
            raise typer.BadParameter(f"'{raw}' is not a valid value", param_hint="--set") from None
    return out


def register(group: typer.Typer) -> None:
    """Attach `list`, `show` and `check` to the `recipe` group."""
    group.command("list")(list_cmd)
    group.command("show")(show_cmd)
    group.command("check")(check_cmd)
