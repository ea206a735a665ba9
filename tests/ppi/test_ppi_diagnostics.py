# SPDX-License-Identifier: MIT
"""The PPI step's diagnostics against hand computations on a tiny batch, and frozen batch norm."""

from __future__ import annotations

import math

import pytest
import torch

from ppi_cli.config.recipe import ModelConfig, PPIConfig
from ppi_cli.engine.step import TrainStep
from ppi_cli.models import build_model
from ppi_cli.ppi import LossWeights, pseudo_intervention
from ppi_cli.ppi.losses import true_label_probability
from ppi_cli.ppi.train_modes import freeze_batch_norm, intervened_normalisation


def test_true_label_probability_by_hand():
    logits = torch.tensor([[2.0], [-1.0], [0.0]])
    labels = torch.tensor([1.0, 1.0, 0.0])
    expected = [1 / (1 + math.exp(-2)), 1 / (1 + math.exp(1)), 0.5]
    assert true_label_probability(logits, labels).tolist() == pytest.approx(expected)
    multi = torch.tensor([[1.0, 2.0, 3.0]])
    assert float(true_label_probability(multi, torch.tensor([2]))) == pytest.approx(
        math.exp(3) / (math.exp(1) + math.exp(2) + math.exp(3)))


def _step_and_its_intervention(seed: int, x: torch.Tensor, y: torch.Tensor, cfg: PPIConfig, **batch_extra):
    """One PPI step on a tiny float64 model, and the intervention it made, recomputed by hand.

    The model is given back its state from before the step (whose clean forward moved the running
    statistics), so the recomputed saliency, masks and donors are the step's own.
    """
    torch.manual_seed(seed)
    model = build_model(ModelConfig(name="tiny", input_size=16, dropout=0.0)).double().train()
    step = TrainStep(model=model, net=model, cfg=cfg, weights=LossWeights(cfg), binary=True,
                     device=torch.device("cpu"))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    values = step(x, y, epoch=0, generator=torch.Generator().manual_seed(1), **batch_extra)
    model.load_state_dict(state)
    iv = pseudo_intervention(model, x, y, cfg, binary=True, generator=torch.Generator().manual_seed(1))
    return step, model, values, iv


@pytest.mark.parametrize("create_graph", [True, False])
def test_step_reports_coverage_and_true_label_probabilities_of_x_star_and_x_prime(create_graph):
    x = torch.rand(4, 1, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    y = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    cfg = PPIConfig(mask="top-k", coverage=0.25, create_graph=create_graph, map_from="separate")
    _, model, values, iv = _step_and_its_intervention(1, x, y, cfg)
    # By hand: the model on x* and x' of the same masks and donors, with running statistics.
    with torch.no_grad():
        model(x)  # the clean forward the step made before the intervened ones
        with intervened_normalisation(model, "running"):
            p_star = true_label_probability(model(iv.contrast_images()[0]), y[iv.rows])
            p_prime = true_label_probability(model(iv.adversarial_images()[0]), y[iv.ad_rows])
    assert values["coverage"] == pytest.approx(0.25)  # 64 of 256 pixels of every image
    assert iv.rows.tolist() == [0, 2] and sorted(iv.ad_rows.tolist()) == [0, 2]
    assert values["p_con"] == pytest.approx(float(p_star.mean()), rel=1e-6)
    assert values["p_ad"] == pytest.approx(float(p_prime.mean()), rel=1e-6)


def test_a_batch_without_positives_reports_no_p_con():
    model = build_model(ModelConfig(name="tiny", input_size=16, dropout=0.0)).train()
    cfg = PPIConfig()
    step = TrainStep(model=model, net=model, cfg=cfg, weights=LossWeights(cfg), binary=True,
                     device=torch.device("cpu"))
    values = step(torch.rand(3, 1, 16, 16), torch.zeros(3), epoch=0, generator=torch.Generator().manual_seed(0))
    assert math.isnan(values["p_con"]) and 0 <= values["p_ad"] <= 1


def test_frozen_batch_norm_keeps_running_statistics_and_the_test_time_function():
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="tiny", input_size=16, dropout=0.0)).double().train()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    freeze_batch_norm(model)
    x = torch.rand(4, 1, 16, 16, dtype=torch.float64)
    train_mode = model(x)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    assert torch.allclose(train_mode, model.eval()(x))  # the function it has at test time



def test_mask_on_cue_is_the_share_of_the_mask_on_the_planted_cue():
    x = torch.rand(2, 1, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    y = torch.tensor([1.0, 1.0], dtype=torch.float64)
    cue = torch.zeros(2, 1, 16, 16)
    cue[0, :, :4, :4] = 1.0  # image 0 carries a 4x4 mark; image 1 none
    _, _, values, iv = _step_and_its_intervention(2, x, y, PPIConfig(mask="top-k", coverage=0.25, map_from="separate"),
                                                  cue=cue)
    expected = float((iv.mask[0] * cue[0]).sum() / iv.mask[0].sum())  # image 1 has no cue: left out
    assert values["mask_on_cue"] == pytest.approx(expected)


def test_lesion_removed_is_the_masked_share_of_lesion_pixels_over_the_batch():
    x = torch.rand(3, 1, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    y = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    lesion = torch.zeros(3, 1, 16, 16)
    lesion[0, :, 4:10, 4:10] = 1.0
    lesion[2, :, 8:12, 2:14] = 1.0
    step, _, values, iv = _step_and_its_intervention(
        3, x, y, PPIConfig(mask="top-k", coverage=0.1, map_from="separate"), lesion=lesion)
    removed = sum(float((iv.mask[i] * lesion[i]).sum()) for i in range(3))
    assert values["lesion_removed"] == pytest.approx(removed / float(lesion.sum()))  # 36 + 48 lesion pixels
    none = step(x, y, epoch=0, generator=torch.Generator().manual_seed(1), lesion=torch.zeros_like(lesion))
    assert math.isnan(none["lesion_removed"])  # no lesion pixel in the batch: nothing to measure
