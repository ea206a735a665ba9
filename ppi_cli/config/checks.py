# SPDX-License-Identifier: MIT
"""Checks across fields of a whole recipe, run once it is merged and overridden.

`build` checks each key alone; a combination of keys that cannot train is refused here, at
load, in one line naming the fields, where they were set and the fix, instead of failing at the
first PPI epoch. Every file of an `extends:` chain is not checked alone: a child may fix what its
parent set (the LRP twins of the WBP recipes set `create_graph: false`).

This module imports no torch: which saliency methods cannot keep a graph is written down here,
and tests/test_config.py holds it equal to the saliency registry's `differentiable` flags.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from ppi_cli.errors import ConfigError

__all__ = ["check_recipe", "keeps_no_graph"]

# Saliency methods whose map cannot be differentiated with respect to the parameters
# (registered with differentiable=False): zennit's LRP rules are not twice differentiable.
_NO_GRAPH_PREFIXES = ("lrp-",)


def keeps_no_graph(saliency: str) -> bool:
    """Whether saliency method `saliency` refuses `create_graph=True` (LRP)."""
    return saliency.startswith(_NO_GRAPH_PREFIXES)


class _Recipe(Protocol):
    """What the checks read of a `Recipe` (config/recipe.py imports this module, not the reverse)."""

    @property
    def name(self) -> str: ...

    @property
    def ppi(self) -> Any: ...

    @property
    def eval(self) -> Any: ...


def check_recipe(recipe: _Recipe, provenance: Mapping[str, str], *, unset: str = "the default") -> None:
    """Refuse field combinations that cannot train.

    Args:
        recipe: The merged recipe, overrides applied.
        provenance: Dotted key → the file (or "command line") that set it; "" → the recipe itself.
        unset: Where a key missing from `provenance` came from.

    Raises:
        ConfigError: `ppi.saliency` is an LRP method while `ppi.create_graph` is true (PPI on), or
            `ppi.lesion_drop`/`ppi.lesion_extra` without `ppi.mask: lesion` (they would do nothing), or
            `ppi.swap_region: image` without `ppi.fill: swap` and a `ppi.swap_look`, or with L_ad (`ppi.gamma`),
            or `ppi.counterfactual_loss: hinge` without it, or `eval.select_on: looks` without a
            `ppi.swap_look` (baselines too), or `ppi.look_level: select` without a swapped look, or
            `ppi.look_choices` without `ppi.look_level: select`, or
            `ppi.fallback_drop` against a warm-up that is not there (`ppi.start_epoch` 0), or `ppi.fallback_fit`
            in a guard without `ppi.fallback_against: baseline` (no run without PPI to compare with), or a
            `ppi.out_form` or `ppi.out_coverage` with L_out off (`ppi.delta` 0), or a `ppi.reg_form` with L_reg off
            (`ppi.beta` 0).
    """
    ppi = recipe.ppi
    where = provenance.get("", f"recipe '{recipe.name}'")
    if recipe.eval.select_on == "looks" and ppi.swap_look == "none":
        raise ConfigError(f"{where}: eval.select_on: looks puts validation images in each other's look, and "
                          "ppi.swap_look is 'none'", hint="set ppi.swap_look: blur or columns (a baseline reads it "
                          "too), or eval.select_on: clean")
    if not ppi.enabled:
        return  # a baseline trains whatever its PPI fields say
    degrading = [name for name in ("lesion_drop", "lesion_extra") if getattr(ppi, name, 0) > 0]
    if degrading and ppi.mask != "lesion":
        raise ConfigError(f"{where}: ppi.{degrading[0]} changes lesion masks, and ppi.mask is '{ppi.mask}'",
                          hint="set ppi.mask: lesion (on a cache with lesion masks), or leave it at 0")
    for field, default, weight, term, what in (("out_form", "evidence", "delta", "L_out", "form"),
                                               ("out_coverage", 0.0, "delta", "L_out", "mask"),
                                               ("reg_form", "l1", "beta", "L_reg", "form")):
        chosen = getattr(ppi, field, default)  # a term's form or mask means nothing while the term's weight is 0
        if chosen != default and getattr(ppi, weight) == 0:
            raise ConfigError(f"{where}: ppi.{field} '{chosen}' chooses {term}'s {what}, and ppi.{weight} is 0: "
                              f"{term} is off", hint=f"set ppi.{weight} (e.g. 1), or leave ppi.{field} at {default}")
    against = getattr(ppi, "fallback_against", "warmup")  # without a fallback_drop (the guard off) it does nothing
    guard = getattr(ppi, "fallback_drop", None) is not None  # and nor does fallback_fit, a rule of the same guard
    if guard and ppi.start_epoch == 0 and against == "warmup":
        raise ConfigError(f"{where}: ppi.fallback_drop {ppi.fallback_drop:g} compares the kept PPI epoch with the "
                          "best warm-up epoch, and ppi.start_epoch is 0: there is no warm-up",
                          hint="set ppi.start_epoch to the warm-up's length (e.g. 5), or ppi.fallback_drop: null")
    if guard and getattr(ppi, "fallback_fit", None) is not None and against != "baseline":
        raise ConfigError(f"{where}: ppi.fallback_fit {ppi.fallback_fit:g} compares PPI's training loss with the "
                          f"recipe trained without PPI, and ppi.fallback_against is '{against}': that run is not "
                          "trained", hint="set ppi.fallback_against: baseline, or ppi.fallback_fit: null")
    swaps_a_look = ppi.fill == "swap" and ppi.swap_look != "none"  # what look_level and swap_region: image need
    if getattr(ppi, "look_level", "swap") == "select" and not swaps_a_look:
        raise ConfigError(f"{where}: ppi.look_level: select trains twice to choose how a swapped look is carried, "
                          f"and no look is swapped (fill '{ppi.fill}', swap_look '{ppi.swap_look}')",
                          hint="set ppi.fill: swap and ppi.swap_look: blur or columns, or ppi.look_level: swap")
    if getattr(ppi, "look_choices", "swap-keep") != "swap-keep" and getattr(ppi, "look_level", "swap") != "select":
        raise ConfigError(f"{where}: ppi.look_choices '{ppi.look_choices}' says what ppi.look_level: select chooses "
                          f"between, and ppi.look_level is '{ppi.look_level}'",
                          hint="set ppi.look_level: select, or leave ppi.look_choices at swap-keep")
    if getattr(ppi, "swap_region", "mask") == "image":
        if not swaps_a_look:
            raise ConfigError(f"{where}: ppi.swap_region: image swaps whole images between the classes, and needs "
                              f"ppi.fill: swap with a ppi.swap_look (fill is '{ppi.fill}', swap_look "
                              f"'{ppi.swap_look}'): without a look to carry, x* would be the donor itself",
                              hint="set ppi.fill: swap and ppi.swap_look: blur or columns, or ppi.swap_region: mask")
        if ppi.gamma != 0:
            raise ConfigError(f"{where}: ppi.swap_region: image with ppi.gamma {ppi.gamma}: with whole images "
                              "swapped, x' is the donor itself in x's look, x*'s very image, and L_ad would give it "
                              "x's label", hint="set ppi.gamma: 0 (L_keep, ppi.keep, gives x^k the label instead)")
    elif getattr(ppi, "counterfactual_loss", "ce") == "hinge":
        raise ConfigError(f"{where}: ppi.counterfactual_loss: hinge holds each counterfactual to the score of the "
                          "clean image it was made from, and ppi.swap_region is 'mask': a masked x* has no such "
                          "image", hint="set ppi.swap_region: image, or ppi.counterfactual_loss: ce")
    if ppi.create_graph and keeps_no_graph(ppi.saliency):
        graph_from = provenance.get("ppi.create_graph", unset)
        raise ConfigError(
            f"{where}: ppi.saliency '{ppi.saliency}' with ppi.create_graph: true (from {graph_from}): zennit's "
            "LRP rules are not differentiable twice, so the first PPI epoch would fail",
            hint="set `ppi.create_graph: false` in the recipe, so L_reg is reported, not trained; "
                 "or use ppi.saliency wbp, gradient or gradcam")
