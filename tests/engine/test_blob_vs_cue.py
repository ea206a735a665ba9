# SPDX-License-Identifier: MIT
"""Acceptance: on the generated task, PPI+WBP generalises where the spurious cue stops working.

Both bundled recipes (`synthetic-baseline-cpu`, `synthetic-ppi-wbp-cpu`) train the tiny CNN on
the site-A rows (the cue marks 90 % of positives and 10 % of negatives), selecting on a held-out
part of site A, and are scored on the site-B rows, where the cue marks half of each class.

Criterion: PPI+WBP has the higher site-B AUC. The share of positive WBP saliency inside the
blob (energy pointing game over the 50 strongest points) is reported beside it, not asserted.
Measured when this test was written (recipe seed 0, never used while choosing the recipe; seeds
1-3 were): AUC 0.722 → 0.787, top-50 energy share 0.460 → 0.475. Since the map comes from the
clean pass (`ppi.map_from: auto`, with the step's dropout masks): 0.722 → 0.788 and 0.460 → 0.465.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ppi_cli.config.recipe import load_recipe
from ppi_cli.data.datasets import build_dataset, dataset_manifest
from ppi_cli.data.splits import Split, holdout_split
from ppi_cli.engine.evaluate import predict, validation_metric
from ppi_cli.engine.trainer import fit
from ppi_cli.models import load_model
from ppi_cli.saliency import saliency_map


def _energy_share(model, dataset, top: int = 50) -> float:
    samples = [dataset[i] for i in range(len(dataset))]
    positive = torch.tensor([s["label"] > 0.5 for s in samples])
    x = torch.stack([s["image"] for s in samples])[positive]
    blob = torch.stack([s["mask"] for s in samples])[positive].flatten(1)  # (P, H*W)
    s = saliency_map(model, x, 0, method="wbp").clamp_min(0).flatten(1)  # evidence for the lesion
    strongest = s.topk(top, dim=1)
    inside = (strongest.values * blob.gather(1, strongest.indices)).sum(1)
    return float((inside / strongest.values.sum(1).clamp_min(1e-12)).mean())


def _train_and_score(recipe, out_dir) -> tuple[float, float]:
    """Train on site A (model selection on a held-out part of it); site-B AUC and blob energy share."""
    frame = dataset_manifest("synthetic", None, recipe.data)
    site_a, site_b = (np.flatnonzero(frame.site.to_numpy() == s) for s in ("A", "B"))
    train, val = holdout_split(site_a, frame.label.to_numpy(), frame.subject_id.to_numpy(),
                               recipe.data.val_fraction, recipe.seed)
    result = fit(recipe, cache_dir=None, split=Split(train, val, site_b), out_dir=out_dir, device="cpu")
    model, _ = load_model(result.last_checkpoint)
    test_set = build_dataset("synthetic", None, site_b, recipe.data, train=False)
    return validation_metric(predict(model, test_set), "auc"), _energy_share(model, test_set)


@pytest.mark.slow
def test_ppi_wbp_beats_the_baseline_where_the_cue_is_uninformative(tmp_path, one_thread):
    scores = {name: _train_and_score(load_recipe(name), tmp_path / name)
              for name in ("synthetic-baseline-cpu", "synthetic-ppi-wbp-cpu")}
    (base_auc, base_energy), (ppi_auc, ppi_energy) = scores.values()
    report = (f"site-B AUC baseline {base_auc:.3f} vs PPI+WBP {ppi_auc:.3f}; top-50 saliency energy in the blob "
              f"baseline {base_energy:.3f} vs PPI+WBP {ppi_energy:.3f}")
    assert ppi_auc > base_auc, report


@pytest.mark.slow
def test_l_ad_on_the_l_con_rows_keeps_the_map_on_the_blob(tmp_path, one_thread):
    """With L_con on (α = 1), L_ad on every image pulls the map off the blob; on the L_con rows it does not.

    The reason for `ppi.adversarial_on: auto` (docs/ppi.md): measured when written, seed 0, energy
    share 0.507 (L_ad on the positives) against 0.257 (on all images); AUC 0.655 against 0.643.
    """
    recipe = load_recipe("synthetic-ppi-wbp-cpu")
    scores = {}
    for rows in ("contrast", "all"):
        changed = dataclasses.replace(recipe, ppi=dataclasses.replace(recipe.ppi, alpha=1.0, adversarial_on=rows))
        scores[rows] = _train_and_score(changed, tmp_path / rows)
    report = "; ".join(f"L_ad on {rows}: site-B AUC {auc:.3f}, blob energy {energy:.3f}"
                       for rows, (auc, energy) in scores.items())
    assert scores["contrast"][1] > scores["all"][1] + 0.1, report
