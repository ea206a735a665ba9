# SPDX-License-Identifier: MIT
"""What a planted cue itself does to a model's answer (`ppi sweep --twin`, a training site given).

A twin of a cache holds the very images without the cue (or with it drawn apart from the label), so the
rows whose images differ between the two caches are the rows that carry the cue, and on them
logit(p(image)) − logit(p(the same image in the twin)) is the cue's own effect on the model. Per site: 0,
the model ignores the cue; > 0, it reads the cue as the positive class (the shortcut); < 0, as the negative
one (where the cue follows the label that costs AUC; where it is independent of the label, it is the
shortcut learnt in reverse).

Example:
    >>> rows = cue_rows(recipe, data, twin)          # once per pair of caches
    >>> cue_effects(Path("train-D/best.pt"), recipe, data, twin, rows, device="cpu")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["EFFECTS_FILE", "cue_rows", "cue_effects", "effects_frame"]

EFFECTS_FILE = "cue_effect.csv"
_CLIP = 1e-6  # probabilities are clipped to [1e-6, 1 − 1e-6] before the logit


def cue_rows(recipe: Any, data: Any, twin: Any) -> np.ndarray:
    """The manifest rows whose images differ between `data` and its `twin` under `recipe`'s preprocessing
    (the rows that carry the cue), sorted."""
    import torch

    from ppi_cli.data.datasets import build_dataset
    from ppi_cli.engine.trainer import dataset_config

    rows = np.arange(len(data.labels))
    config = dataset_config(recipe)
    with_cue, without = (build_dataset(d.kind, d.cache_dir, rows, config, train=False, seed=recipe.seed)
                         for d in (data, twin))

    def differs(i: int) -> bool:
        a, b = with_cue[i]["image"], without[i]["image"]
        return not (a.shape == b.shape and torch.equal(a, b))

    return rows[np.array([differs(int(i)) for i in rows], dtype=bool)]


def cue_effects(checkpoint: Path, recipe: Any, data: Any, twin: Any, rows: Sequence[int], *,
                device: str) -> list[dict[str, Any]]:
    """The cue's effect on a binary model's answer, per site and label: over `rows` (`cue_rows`), the mean of
    logit(p(data's image)) − logit(p(twin's image)).

    Returns:
        One dict per (site, label) with rows: `test_site`, `label`, `n` (rows) and `effect`; none for a
        multi-class model (no one logit to compare) or without rows.
    """
    from ppi_cli.engine.study import predict_rows

    kept = np.asarray(rows, dtype=np.int64)
    if not kept.size:
        return []
    _, labels, scores = predict_rows(checkpoint, recipe, data, kept, device=device)
    _, _, twin_scores = predict_rows(checkpoint, recipe, twin, kept, device=device)
    if np.ndim(scores) != 1:
        return []

    def logit(p: np.ndarray) -> np.ndarray:
        p = np.clip(p, _CLIP, 1 - _CLIP)
        return np.log(p / (1 - p))

    shift = logit(scores) - logit(twin_scores)
    sites = np.asarray(data.sites)[kept]
    cells = []
    for site in sorted(set(sites.tolist())):
        for label in sorted(set(labels[sites == site].astype(int).tolist())):
            chosen = (sites == site) & (labels.astype(int) == label)
            cells.append({"test_site": str(site), "label": int(label), "n": int(chosen.sum()),
                          "effect": float(shift[chosen].mean())})
    return cells


def effects_frame(results: Mapping[tuple[str, int], list[dict[str, Any]]], names: Sequence[str],
                  seeds: Sequence[int]) -> Any:
    """The effect cells of a sweep's studies (those with an `effect` key) as one table."""
    from ppi_cli.reports.sweep_summary import cells_frame

    return cells_frame(results, names, seeds, "effect", ["train_site", "test_site", "label", "n", "effect"])
