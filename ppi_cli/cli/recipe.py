# SPDX-License-Identifier: MIT
"""`ppi recipe list|show`: the bundled recipes and a recipe resolved through `extends:`."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["register"]


def list_cmd() -> None:
    """List the bundled recipes with their one-line descriptions."""
    # Imported here, not at the top: `ppi --help` imports every verb module (cli/main.py).
    from rich.table import Table

    from ppi_cli.config import list_recipes, load_recipe
    from ppi_cli.console import stdout

    table = Table("recipe", "description", box=None, pad_edge=False)
    for name in list_recipes():
        table.add_row(name, load_recipe(name).description)
    stdout.print(table)


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
    """`["optim.lr=0.1", "ppi.enabled=false"]` to `{"optim.lr": 0.1, "ppi.enabled": False}`."""
    # Imported here, not at the top: `ppi --help` imports every verb module (cli/main.py).
    import yaml

    out: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"'{item}' is not KEY=VALUE", param_hint="--set")
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise typer.BadParameter(f"'{raw}' is not a valid value", param_hint="--set") from None
    return out


def register(group: typer.Typer) -> None:
    """Attach `list` and `show` to the `recipe` group."""
    group.command("list")(list_cmd)
    group.command("show")(show_cmd)
