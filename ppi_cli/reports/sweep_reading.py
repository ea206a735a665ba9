# SPDX-License-Identifier: MIT
"""What a `ppi sweep` summary says in words: each variant's paired intervals read as `ppi cross-site` reads a
row, the ceiling's line, and how far a variant went in the ceiling's direction.

The rows are `sweep_summary.summarise_sweep`'s: per variant and site (`in-site`, each other site and
`CROSS_SITE`, the mean over the other sites) the paired difference from the baseline, `delta`, with its
95 % interval, `low` to `high`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["CROSS_SITE", "sweep_reading", "ceiling_reading", "against_ceiling", "interval_text"]

CROSS_SITE = "cross-site mean"  # the site label of the mean over the other sites


def sweep_reading(part: Any) -> str:
    """What one variant's paired intervals say, in the words of `ppi cross-site`'s reading (a site "rose" or
    "fell" only when its 95 % interval is clear of 0):

    - `opposite moves`: one other site rose and another fell (a site-dependent cue read differently, e.g.
      learnt in reverse);
    - `helped`: the mean over the other sites rose and no site fell, in-site included;
    - `trade-off`: the mean over the other sites rose and in-site fell;
    - `cost`: the mean over the other sites fell, or a site did;
    - `not shown`: no interval clear of 0 says either.

    With no other site (cross-validated without `--test`) the in-site interval alone, in the same words.

    Args:
        part: The variant's rows of `summarise_sweep`, with `site`, `delta`, `low`, `high`.
    """
    by_site = part.set_index("site")
    if CROSS_SITE not in by_site.index:  # cross-validated without --test: the test folds alone
        return _in_site_reading(by_site)
    others = [s for s in by_site.index if s not in ("in-site", CROSS_SITE)]
    rose = [s for s in others if by_site.loc[s, "low"] > 0]
    fell = [s for s in others if by_site.loc[s, "high"] < 0]
    cross_up, cross_down = by_site.loc[CROSS_SITE, "low"] > 0, by_site.loc[CROSS_SITE, "high"] < 0
    in_down = "in-site" in by_site.index and by_site.loc["in-site", "high"] < 0

    def said(sites: Sequence[str]) -> str:
        return ", ".join(f"{s} {by_site.loc[s, 'delta']:+.3f}" for s in sites)

    if rose and fell:
        return f"opposite moves: {said(rose)} rose while {said(fell)} fell"
    if cross_up and not fell:
        return (f"trade-off: the other sites rose ({said([CROSS_SITE])}) and in-site fell ({said(['in-site'])})"
                if in_down else f"helped: {said([CROSS_SITE])}" + (f" ({said(rose)})" if rose else ""))
    if cross_down or fell or in_down:
        return "cost: " + said([s for s in (CROSS_SITE, *fell, "in-site") if s in by_site.index
                                 and (by_site.loc[s, "high"] < 0)] or [CROSS_SITE])
    return f"not shown: {said([CROSS_SITE])}, its interval across 0"


def interval_text(row: Any) -> str:
    """A paired difference and its 95 % interval, as the summary's tables print them."""
    return f"{row['delta']:+.3f} [{row['low']:+.3f}, {row['high']:+.3f}]"


def _in_site_reading(by_site: Any) -> str:
    """The reading of a sweep with no other site: the in-site interval alone."""
    row = by_site.loc["in-site"]
    said = f"in-site {interval_text(row)}"
    if row["low"] > 0:
        return f"helped: {said}"
    if row["high"] < 0:
        return f"cost: {said}"
    return f"not shown: {said}, its interval across 0"


def ceiling_reading(part: Any) -> str:
    """The ceiling row's line: not a method to judge, the yardstick of the others."""
    by_site = part.set_index("site")
    if CROSS_SITE not in by_site.index:
        return (f"the baseline trained on the twin, whose training data carry no cue or one independent of the "
                f"label, and tested on these test folds: in-site {interval_text(by_site.loc['in-site'])}. What the cue "
                "is worth here")
    return (f"the baseline trained on the twin, whose training site has no cue or one independent of the label, and "
            f"tested on these sites: {interval_text(by_site.loc[CROSS_SITE])} over the other sites, in-site "
            f"{by_site.loc['in-site', 'delta']:+.3f}. What a model that never leant on the cue gains here; read "
            "each variant's Δ against it")


def against_ceiling(part: Any, ceiling: Any, site: str = CROSS_SITE, where: str = "over the other sites") -> str:
    """How far one variant went in the ceiling's direction, or "" where the ceiling shows no headroom.

    The ceiling (the baseline trained on the twin, `ppi sweep --twin`) is what a model that never leant on
    the cue gains over the other sites and loses in-site. Where its gain over the other sites is clear of 0,
    the variant's Δ there is given as a share of it; in-site, as a share of the ceiling's fall where that
    fall is clear of 0 (a cue worth AUC at the training site, as on a cohort whose lesion alone reads
    weakly), else beside the ceiling's change.

    Args:
        part: The variant's rows of `summarise_sweep`.
        ceiling: The ceiling's rows.
        site: The row read as the gain: the mean over the other sites, or a sweep's whole matrix.
        where: That row in words.
    """
    mine, top = part.set_index("site"), ceiling.set_index("site")
    if site not in mine.index or site not in top.index or not top.loc[site, "low"] > 0:
        return ""
    gain, headroom = mine.loc[site, "delta"], top.loc[site, "delta"]
    text = f"against the ceiling: {gain:+.3f} of its {headroom:+.3f} {where} ({100 * gain / headroom:.0f} %)"
    if "in-site" in mine.index and "in-site" in top.index:
        d_in, c_in = mine.loc["in-site", "delta"], top.loc["in-site", "delta"]
        if top.loc["in-site", "high"] < 0:
            text += f", in-site {d_in:+.3f} of its {c_in:+.3f} ({100 * d_in / c_in:.0f} %)"
            if mine.loc["in-site", "high"] < 0 and c_in < d_in:  # a fall, clear of 0, short of the ceiling's
                text += ", less than a model that never leant on the cue loses there"
        else:
            text += f", in-site {d_in:+.3f} where it has {c_in:+.3f}"
    return text
