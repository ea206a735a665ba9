# SPDX-License-Identifier: MIT
"""A `ppi sweep`'s summary.md: the paired tables of `reports.sweep_summary` (per training row, the whole matrix,
the energy inside the lesion), each variant's reading (`reports.sweep_reading`), the runs the collapse guard
rejected, the cue's effects and the variants' overrides. `engine.sweep` runs the studies and writes the file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ppi_cli.reports.sweep_reading import against_ceiling, ceiling_reading, interval_text, sweep_reading
from ppi_cli.reports.sweep_summary import ALL, BASELINE, CEILING, MATRIX, summarise_effects

__all__ = ["sweep_markdown", "matrix_ceiling_lines"]


def sweep_markdown(heading: str, pairs: str, summary: Any, runs: Any, *, matrix: bool, overrides: Mapping[str, Any],
                   common: Mapping[str, Any], effects: Any = None, energy: Any = None,
                   energy_method: str | None = None) -> str:
    """summary.md's text: `heading` (what was swept, on what), the AUC tables (`matrix`: one per training row, then
    the whole matrix), with `energy` (`summarise_energy`'s) its table, the rejected runs, with `effects` the cue's
    effect per site, and every variant's `overrides` (`common`: those of every variant and the baseline)."""
    lines = [f"# Sweep: {heading}", "",
             f"Mean AUC over {pairs}; below each variant's mean, its paired difference from the baseline "
             f"(same {pairs}, same splits) with the 95 % t-interval over {pairs}; below the baseline's, the room it "
             "leaves (1 − its mean AUC), the most any model could gain there.", ""]
    if not matrix:
        lines += _summary_lines(summary)
    else:  # one table per training row, then the whole matrix
        for row in dict.fromkeys(summary.loc[summary["train_site"] != ALL, "train_site"]):
            lines += [f"## Trained on site {row}", "", *_summary_lines(summary[summary["train_site"] == row]), ""]
        lines += ["## The whole matrix", "", "Per seed, the mean over the training rows of each row's mean over its "
                  "other sites (what `ppi cross-site --train all --baseline` gives), and each site's column: the mean "
                  "of its AUCs over the rows trained elsewhere; over the seeds with every row:", "",
                  *_table_lines(summary[summary["train_site"] == ALL], "site",
                                lambda site: site if site == MATRIX else f"at {site}"),
                  *matrix_ceiling_lines(summary[summary["site"] == MATRIX])]
    if energy is not None:
        lines += _energy_lines(energy, str(energy_method), pairs)
    lines += _rejected_lines(runs)
    if effects is not None and len(effects):
        lines += _effect_lines(summarise_effects(effects))
    lines += ["", "Variants (recipe overrides):", ""]
    if common:
        lines += ["Every variant and the baseline: " + ", ".join(f"`{k}={v}`" for k, v in common.items()), ""]
    lines += [f"- `{name}`: " + (", ".join(f"`{k}={v}`" for k, v in o.items()) or "the recipe as it is")
              for name, o in overrides.items()]
    return "\n".join(lines) + "\n"


def _summary_lines(summary: Any) -> list[str]:
    """One summary's table (a row of means per variant, then its paired Δ) and each variant's reading
    (`sweep_reading`, or `ceiling_reading` and its share of the ceiling with a ceiling row)."""
    lines = _table_lines(summary, "site")
    if "delta" in summary and summary["delta"].notna().any():
        lines += ["", "Readings (a site rose or fell when its interval is clear of 0; docs/ppi.md):", ""]
        ceiling = summary[summary["variant"] == CEILING]
        for variant, part in summary.groupby("variant", sort=False):
            if variant == BASELINE or not part["delta"].notna().all():
                continue
            said = ceiling_reading(part) if variant == CEILING else sweep_reading(part)
            versus = against_ceiling(part, ceiling) if variant != CEILING and len(ceiling) else ""
            lines.append(f"- `{variant}`: {said}" + (f"; {versus}" if versus else ""))
    return lines


def matrix_ceiling_lines(matrix: Any) -> list[str]:
    """With a ceiling (`--train all --twin`): its whole-matrix gain, and each variant's as a share of it."""
    ceiling = matrix[matrix["variant"] == CEILING]
    if ceiling.empty or not ceiling["delta"].notna().all():
        return []
    lines = ["", f"- `{CEILING}`: the baseline trained on the twin at every site, "
             f"{interval_text(ceiling.iloc[0])} over the whole matrix: what a model that never leant on the cue "
             "gains here; read each variant's Δ against it"]
    for variant, part in matrix.groupby("variant", sort=False):
        if variant in (BASELINE, CEILING) or not part["delta"].notna().all():
            continue
        versus = against_ceiling(part, ceiling, MATRIX, "over the whole matrix")
        lines.append(f"- `{variant}`: {interval_text(part.iloc[0])}" + (f"; {versus}" if versus else
                                                                         "; the ceiling shows no headroom"))
    return lines


def _energy_lines(summary: Any, method: str, pairs: str) -> list[str]:
    """`--energy`: per training row (and the whole matrix), each variant's mean energy inside the masks and below it
    its paired Δ from the baseline."""
    return ["", f"## Energy inside the lesion ({method})", "",
            f"The share of each kept model's {method} map (its positive part) inside the expert masks, over the "
            f"data's masked samples (`ppi segment-eval`'s energy pointing game, all points), mean over {pairs}; "
            "below each variant, its paired difference from the baseline with the 95 % t-interval. A rejected run "
            "holds the recipe trained without PPI, so its model is the one measured.", "",
            *_table_lines(summary, "train_site", lambda row: row if row == MATRIX else f"trained on {row}")]


def _table_lines(summary: Any, column: str, header: Callable[[str], str] = str) -> list[str]:
    """A markdown table with one column per value of `column` (named by `header`): a row of means per variant and,
    below each but the baseline's, its paired Δ with the interval; with a `room` column (AUCs), below the
    baseline's the room it leaves (1 − its mean), the most any Δ could be."""
    keys = list(dict.fromkeys(summary[column]))
    lines = ["| variant | " + " | ".join(header(k) for k in keys) + " |", "|---|" + "---|" * len(keys)]
    for variant, part in summary.groupby("variant", sort=False):
        by_key = part.set_index(column)
        lines.append(f"| {variant} | " + " | ".join(f"{by_key.loc[k, 'mean']:.3f}" for k in keys) + " |")
        if variant == BASELINE and "room" in by_key.columns:
            lines.append("| room (1 − baseline) | " + " | ".join(f"{by_key.loc[k, 'room']:+.3f}" for k in keys) + " |")
        if variant != BASELINE:
            lines.append("| Δ vs baseline | " + " | ".join(interval_text(by_key.loc[k]) for k in keys) + " |")
    return lines


def _rejected_lines(runs: Any) -> list[str]:
    """Which runs `ppi.fallback_drop` rejected, per variant: their rows hold the recipe trained without PPI."""
    if "rejected" not in runs.columns:
        return []
    keys = ["seed", *(["fold"] if "fold" in runs.columns else [])]
    rows = runs["train_site"].nunique() > 1  # --train all: say which training row
    lines = []
    for variant, part in runs[runs["rejected"].astype(bool)].groupby("variant", sort=False):
        which = sorted({(str(r.train_site) if rows else "", *(int(getattr(r, k)) for k in keys))
                        for r in part.itertuples(index=False)})
        listed = (", ".join(f"{w[0]} seed " + " fold ".join(map(str, w[1:])) for w in which) if rows
                  else "seed " + ", ".join(" fold ".join(map(str, w[1:])) for w in which))
        lines.append(f"- `{variant}`: {len(which)} run(s), {listed}")
    if not lines:
        return []
    return ["", "PPI rejected (`ppi.fallback_drop`: the kept PPI epoch validated too far below the warm-up, or below "
            "the recipe without PPI under `ppi.fallback_against: baseline`; `ppi.fallback_fit`: PPI fitted its "
            "training images too far worse than that recipe); these runs' rows hold the recipe trained without PPI, "
            "and the means above include them:", "", *lines]


def _effect_lines(table: Any) -> list[str]:
    sites = sorted(dict.fromkeys(table["site"]))
    lines = ["", "The cue's effect on the kept model's logit, per site: the mean over the images that carry it of "
             "logit(p) on the image minus logit(p) on the same image in the twin (0: the cue is ignored; > 0: read "
             "as the positive class; < 0: as the negative one), mean over seeds with the 95 % t-interval:", "",
             "| variant | " + " | ".join(sites) + " |", "|---|" + "---|" * len(sites)]
    for variant, part in table.groupby("variant", sort=False):
        by_site = part.set_index("site")
        lines.append(f"| {variant} | " + " | ".join(
            f"{by_site.loc[s, 'effect']:+.2f} [{by_site.loc[s, 'low']:+.2f}, {by_site.loc[s, 'high']:+.2f}]"
            if s in by_site.index else "" for s in sites) + " |")
    return lines
