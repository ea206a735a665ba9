# SPDX-License-Identifier: MIT
"""Checks that stop silent failures: before the first epoch, after the last, and on report cells.

Before training (`check_study`, called by `train`, `crossval` and `cross-site` through the study path)
the recipe is held against the cache's fingerprint (`data.fingerprint`) and the split:

- a random training window (`data.crop`) that holds the lesion centre in fewer than half of its draws
  (the LIDC case: 40-px windows from 180-px crops) is refused; one smaller than the typical lesion warns;
- an intensity window (`data.window`) that misses the cache's intensities (a CT recipe on other data)
  is refused;
- a test fold or site hold-out with fewer than `MIN_CASES` positives or negatives warns: its AUC says little;
- `ppi.fill: swap` on images that all hold a centred lesion, of either class (LIDC crops), warns: its
  counterfactuals there teach the label in reverse.

After training (`check_training`, from the rows of `metrics.csv`): the classification loss at chance
(ln K) for the whole run, an `auto` loss weight at its cap (`ppi.auto_max`), and a kept PPI epoch whose
validation metric is below a warm-up epoch's. Each finding is one line; the caller prints and logs it.
The collapse guards' rules (`ppi_rejection`, `baseline_rejection`, `fit_rejection`) read the same rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ppi_cli.config.recipe import Recipe
from ppi_cli.console import warn
from ppi_cli.data.fingerprint import read_fingerprint
from ppi_cli.errors import ConfigError
from ppi_cli.ppi.losses import LossWeights
from ppi_cli.reports.metrics import MIN_CASES

__all__ = ["MIN_CASES", "few_cases", "window_findings", "swap_finding", "check_study", "check_training",
           "ppi_rejection", "baseline_rejection", "fit_rejection", "FIT_EPOCHS"]

_MIN_HIT_SHARE = 0.5  # refuse a training window that holds the lesion centre in fewer draws than this
_CHANCE_TOLERANCE = 0.02  # a training loss this close to ln K for every epoch learned nothing
_WEIGHT_COLUMNS = {"con": "alpha", "reg": "beta", "ad": "gamma"}  # metrics.csv columns of the loss weights
FIT_EPOCHS = 10  # ppi.fallback_fit: the training loss averaged over a run's last ten epochs


def few_cases(name: str, labels: np.ndarray, *, minimum: int = MIN_CASES) -> str | None:
    """A one-line warning when binary `labels` hold fewer than `minimum` positives or negatives, else None."""
    labels = np.asarray(labels)
    if labels.size == 0:
        return None
    positives = int(np.sum(labels == 1))
    negatives = int(labels.size - positives)
    if min(positives, negatives) >= minimum:
        return None
    return (f"{name} holds {positives} positive(s) and {negatives} negative(s), fewer than {minimum} of a class: "
            "its AUC rests on too few cases to be read")


def _hit_share(side: int, crop: int, offset: float) -> float:
    """Share of uniform random crop×crop windows of a side×side image holding a point `offset` px off centre."""
    shift = (side - crop) / 2.0  # the window centre moves uniformly in [-shift, shift] on each axis
    if shift <= 0:
        return 1.0
    reach = max(crop / 2.0 - offset / math.sqrt(2.0), 0.0)  # how far the window centre may stray on each axis
    return min(reach / shift, 1.0) ** 2


def window_findings(crop: int, fingerprint: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(refusal, warning) for a training window of side `crop` on a 2-D cache with lesion masks."""
    size = fingerprint.get("image_size") or []
    lesion = fingerprint.get("lesion") or {}
    sizes = lesion.get("size_px") or {}
    if len(size) != 2 or not sizes:
        return None, None
    side = min(int(size[0]), int(size[1]))
    offset = float((lesion.get("centre_offset_px") or {}).get("p50", 0.0))
    share = _hit_share(side, crop, offset)
    refusal = warning = None
    if share < _MIN_HIT_SHARE:
        needed = next(c for c in range(crop, side + 1) if _hit_share(side, c, offset) >= 0.9)
        refusal = (f"data.crop {crop}: a random {crop}-px training window of the {side}-px cache images holds the "
                   f"lesion centre in only {share:.0%} of draws, so most training samples miss the lesion")
        refusal += (f"|--set data.crop={needed} (or more), or rebuild the cache with `ppi prepare lidc --crop "
                    f"{math.ceil(crop * 1.2)}`")  # the demo's 40-px windows of 48-px crops
    typical = float(sizes.get("p50", 0.0))
    if typical > crop:
        warning = (f"data.crop {crop}: the training window is smaller than the typical lesion "
                   f"({typical:.0f} px across, median of the cache): the model sees part of it")
    return refusal, warning


def _intensity_refusal(recipe: Recipe, fingerprint: Mapping[str, Any]) -> str | None:
    intensity = fingerprint.get("intensity") or {}
    if recipe.data.dataset != "lidc" or "p01" not in intensity:
        return None  # only LIDC reads raw values (HU) through data.window
    low, high = recipe.data.window
    if intensity["p99"] < low or intensity["p01"] > high:
        return (f"data.window [{low:g}, {high:g}]: the cache's intensities lie in [{intensity['p01']:g}, "
                f"{intensity['p99']:g}], outside the window, so every image maps to one value (a recipe meant for "
                f"other data?)|set data.window to cover the cache's values, or use the recipe of this dataset")
    return None


def swap_finding(recipe: Recipe, fingerprint: Mapping[str, Any]) -> str | None:
    """A warning for `ppi.fill: swap` on data where every image, of either class, holds its lesion at the centre.

    The swap's counterfactuals assume the other class lacks the evidence where the mask lies (GA: a
    negative has no atrophy there). Where both classes hold a lesion at the same place (LIDC: a crop
    around every nodule, benign or not), a mask that misses part of it gives x* the positive's lesion
    under "no" and x^k the negative's under "yes": the label in reverse (docs/ppi.md, LIDC).
    """
    lesion, counts = fingerprint.get("lesion") or {}, (fingerprint.get("labels") or {}).get("all") or {}
    side = min(fingerprint.get("image_size") or [0])
    if not (recipe.ppi.enabled and recipe.ppi.fill == "swap" and lesion and counts and side):
        return None
    every_class = int(lesion.get("n", 0)) >= int(sum(counts.values()))
    centred = float((lesion.get("centre_offset_px") or {}).get("p90", side)) <= 0.1 * side
    if not (every_class and centred):
        return None
    return ("ppi.fill: swap on images that all hold a lesion at their centre, whatever their class: where a mask "
            "misses part of it, x* keeps the positive's lesion under 'no' and x^k gets the negative's under 'yes', "
            "the label in reverse (synthetic LIDC: AUC 0.22 in-cohort; docs/ppi.md); fill: zero or blur does not "
            "do this")


def check_study(recipe: Recipe, data: Any, tests: Mapping[str, np.ndarray]) -> list[str]:
    """Hold the recipe against the cache's fingerprint and the test rows, before the first epoch.

    Args:
        recipe: The resolved recipe.
        data: The `StudyData` (its `cache_dir`, `kind`, `labels`).
        tests: Test rows by name ("fold 2", "site B") whose class counts are checked.

    Returns:
        The warnings printed (one line each).

    Raises:
        ConfigError: A training window that mostly misses the lesion, or an intensity window outside the data.
    """
    fingerprint = read_fingerprint(data.cache_dir, data.kind) or {}
    found: list[str] = []
    refusals = [_intensity_refusal(recipe, fingerprint)]
    if fingerprint:
        refusal, warning = window_findings(recipe.data.crop, fingerprint)
        refusals.append(refusal)
        found += [w for w in (warning, swap_finding(recipe, fingerprint)) if w]
    for refusal in refusals:
        if refusal:
            message, _, hint = refusal.partition("|")
            raise ConfigError(f"{data.cache_dir}: {message}", hint=hint)
    if recipe.model.num_classes == 1:
        found += [w for name, rows in tests.items() if (w := few_cases(name, data.labels[rows]))]
    for line in found:
        warn(line)
    return found


def _series(rows: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    return np.array([float(r.get(key, math.nan)) for r in rows], dtype=np.float64)


def check_training(recipe: Recipe, rows: Sequence[Mapping[str, Any]], best_epoch: int) -> list[str]:
    """Findings about a finished run from its epoch rows (`metrics.csv`); each one line, not printed here."""
    found = []
    classes = max(recipe.model.num_classes, 2)
    chance = math.log(classes)
    cls = _series(rows, "train_cls")
    if len(rows) >= 2 and np.all(np.isfinite(cls)) and np.all(np.abs(cls - chance) <= _CHANCE_TOLERANCE):
        found.append(f"the training loss stayed at chance (ln {classes} = {chance:.3f}) for all {len(rows)} epochs: "
                     "the model learned nothing (check data.crop against the lesions, optim.lr, the labels)")
    ppi = recipe.ppi
    fixed = {"con": ppi.alpha, "reg": ppi.beta, "ad": ppi.gamma}
    weights = LossWeights(ppi)
    for term, value in fixed.items():
        if value != "auto" or not ppi.enabled:
            continue
        column = _WEIGHT_COLUMNS[term]
        for row in rows:
            scale = weights.scale(term, int(row["epoch"]) - 1)  # the boost and the fade multiply the capped weight
            weight = float(row.get(column, math.nan)) / scale if scale > 0 else math.nan
            if int(row.get("ppi", 0)) and weight >= ppi.auto_max * (1 - 1e-9):
                found.append(f"ppi.{column} is 'auto' and reached its cap ppi.auto_max = {ppi.auto_max:g} at epoch "
                             f"{row['epoch']}: the term shrank towards zero and its weight ran away (set ppi.{column} "
                             "to a number)")
                break
    metric = f"val_{recipe.eval.metric}"
    against = _kept_against_warmup(recipe, rows, best_epoch) if ppi.start_epoch > 0 else None
    if against is not None and against[0] < float(against[1][metric]):
        kept, top = against
        found.append(f"the kept epoch {best_epoch} (PPI) has {metric} {kept:.3f}, below warm-up epoch "
                     f"{top['epoch']}'s {float(top[metric]):.3f}: PPI made validation worse")
    return found


def _kept_against_warmup(recipe: Recipe, rows: Sequence[Mapping[str, Any]],
                         best_epoch: int) -> tuple[float, Mapping[str, Any]] | None:
    """A PPI run's kept epoch's validation metric and the best warm-up epoch's row, what "PPI made validation worse"
    and `ppi.fallback_drop` compare; None without PPI, a kept epoch in the rows, a warm-up row or a finite metric."""
    metric = f"val_{recipe.eval.metric}"
    if not recipe.ppi.enabled or not 1 <= best_epoch <= len(rows):
        return None
    top = _best_warmup_row(rows, metric)
    kept = float(rows[best_epoch - 1].get(metric, math.nan))
    return (kept, top) if top is not None and math.isfinite(kept) else None


def _best_warmup_row(rows: Sequence[Mapping[str, Any]], metric: str) -> Mapping[str, Any] | None:
    """The warm-up (non-PPI) epoch row of the best validation `metric` (ties: the lower loss, then the earlier);
    None without one that has the metric."""
    warm = [r for r in rows if not int(r.get("ppi", 0)) and math.isfinite(float(r.get(metric, math.nan)))]

    def rank(row: Mapping[str, Any]) -> tuple[float, float]:
        loss = float(row.get("val_loss", math.nan))
        return float(row[metric]), -loss if math.isfinite(loss) else -math.inf

    return max(warm, key=rank) if warm else None


def ppi_rejection(recipe: Recipe, rows: Sequence[Mapping[str, Any]], best_epoch: int) -> str:
    """Under `ppi.fallback_drop`, why a finished run's PPI model is rejected: its kept epoch's validation metric
    is more than the drop below the best warm-up epoch's (a collapse); "" when it stands. The caller, which
    finds the run without PPI that replaces it, says which one."""
    if recipe.ppi.fallback_against != "warmup":
        return ""
    against = _kept_against_warmup(recipe, rows, best_epoch)
    if against is None:
        return ""
    kept, warm = against
    reference = float(warm[f"val_{recipe.eval.metric}"])
    return _rejection(recipe, best_epoch, kept, reference, f"below warm-up epoch {warm['epoch']}'s {reference:.3f}")


def baseline_rejection(recipe: Recipe, kept: tuple[int, float], baseline: tuple[int, float], *, fallback: str) -> str:
    """Under `ppi.fallback_against: baseline`, why a finished run's PPI model is rejected: its kept epoch's validation
    metric is more than `ppi.fallback_drop` below that of the recipe trained without PPI on the same split (each
    given as (kept epoch, metric)); "" when it stands, or when either metric is not finite (one class in the
    validation split): nothing to compare. `fallback` names the folder the run without PPI trained in."""
    (epoch, value), (base_epoch, base) = kept, baseline
    return _rejection(recipe, epoch, value, base, f"below the recipe without PPI ({fallback}/, epoch {base_epoch}: "
                      f"{base:.3f}); best.pt is that run's")


def fit_rejection(recipe: Recipe, ppi_rows: Sequence[Mapping[str, Any]], plain_rows: Sequence[Mapping[str, Any]], *,
                  fallback: str) -> str:
    """Under `ppi.fallback_fit`, why a finished run's PPI model is rejected: its classification loss on the training
    images (`train_cls`), averaged over its last FIT_EPOCHS epoch rows, is more than `ppi.fallback_fit` above the
    same average of the recipe trained without PPI on the same split (`plain_rows`, trained in `fallback`); "" when
    it is not, the guard is off, or either average is not finite."""
    limit = recipe.ppi.fallback_fit
    if limit is None:
        return ""
    ppi_fit, plain_fit = _late_fit(ppi_rows), _late_fit(plain_rows)
    if not (math.isfinite(ppi_fit) and math.isfinite(plain_fit)) or ppi_fit <= plain_fit + limit:
        return ""
    return (f"PPI rejected: its training loss (train_cls) over the last {min(FIT_EPOCHS, len(ppi_rows))} epochs is "
            f"{ppi_fit:.3f}, more than ppi.fallback_fit {limit:g} above the recipe without PPI's {plain_fit:.3f} "
            f"({fallback}/): PPI kept the classifier from fitting its training images; best.pt is that run's")


def _late_fit(rows: Sequence[Mapping[str, Any]]) -> float:
    """The mean `train_cls` of the last FIT_EPOCHS epoch rows (NaN without one that has it)."""
    values = [float(r.get("train_cls", math.nan)) for r in rows[-FIT_EPOCHS:]]
    return math.fsum(values) / len(values) if values else math.nan


def _rejection(recipe: Recipe, epoch: int, value: float, reference: float, below: str) -> str:
    """The collapse guard's one rule, whatever it measures against: the kept PPI epoch's validation metric `value`
    is more than `ppi.fallback_drop` below `reference` (both finite); the message, ending with `below` (what the
    reference was and which best.pt the run keeps), or "" when PPI stands or the guard is off."""
    drop = recipe.ppi.fallback_drop
    if drop is None or not (math.isfinite(value) and math.isfinite(reference)) or value >= reference - drop:
        return ""
    return (f"PPI rejected: the kept PPI epoch {epoch} has val {recipe.eval.metric} {value:.3f}, more than "
            f"ppi.fallback_drop {drop:g} {below}")
