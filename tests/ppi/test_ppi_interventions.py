# SPDX-License-Identifier: MIT
"""The interventions beyond the paper's zero fill: grown masks, lesion masks and the swap fill, by hand."""

from __future__ import annotations

import math

import pytest
import torch

from ppi_cli.config.recipe import ModelConfig, PPIConfig
from ppi_cli.engine.step import TrainStep
from ppi_cli.errors import ConfigError
from ppi_cli.models import build_model
from ppi_cli.ppi import LossWeights
from ppi_cli.ppi.intervention import intervention_from_saliency, other_class_donors
from ppi_cli.ppi.masks import blurred, dilate


def _naive_dilate(mask: torch.Tensor, r: int) -> torch.Tensor:
    out = torch.zeros_like(mask)
    h, w = mask.shape[-2:]
    for i in range(h):
        for j in range(w):
            out[..., i, j] = mask[..., max(0, i - r):i + r + 1, max(0, j - r):j + r + 1].amax(dim=(-2, -1))
    return out


@pytest.mark.parametrize("radius", [0, 1, 2])
def test_dilate_is_the_max_over_a_square_neighbourhood(radius):
    g = torch.Generator().manual_seed(radius)
    soft = torch.rand(3, 1, 9, 11, generator=g)
    binary = (torch.rand(3, 1, 9, 11, generator=g) > 0.9).float()
    for mask in (soft, binary):
        assert torch.equal(dilate(mask, radius), _naive_dilate(mask, radius))
    assert set(dilate(binary, radius).unique().tolist()) <= {0.0, 1.0}


def test_other_class_donors_take_the_other_class_and_fall_back_to_another_row():
    y = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0])
    for seed in range(5):
        donors = other_class_donors(y, torch.Generator().manual_seed(seed))
        assert all(y[d] != y[i] for i, d in enumerate(donors.tolist()))
    same = other_class_donors(torch.ones(3), torch.Generator().manual_seed(0))
    assert all(d != i for i, d in enumerate(same.tolist()))  # one class only: another row
    assert other_class_donors(torch.ones(1)).tolist() == [0]
    a = other_class_donors(y, torch.Generator().manual_seed(3))
    assert torch.equal(a, other_class_donors(y, torch.Generator().manual_seed(3)))  # seeded


def _batch():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 8, 8, generator=g)
    y = torch.tensor([1.0, 0.0, 1.0, 0.0])
    s = torch.rand(4, 1, 8, 8, generator=g)
    lesion = torch.zeros(4, 1, 8, 8)
    lesion[0, 0, 2:4, 2:5] = 1
    lesion[2, 0, 5:7, 1:3] = 1
    return x, y, s, lesion


def test_lesion_masks_replace_the_saliency_masks_and_grow_with_dilate():
    x, y, s, lesion = _batch()
    iv = intervention_from_saliency(x, y, s, PPIConfig(mask="lesion", create_graph=False), binary=True, lesion=lesion)
    assert torch.equal(iv.mask, lesion)
    assert torch.equal(iv.contrast_images()[0], (x * (1 - lesion))[iv.rows])  # x*: the lesion gone, nothing else
    grown = intervention_from_saliency(x, y, s, PPIConfig(mask="lesion", dilate=1, create_graph=False), binary=True,
                                       lesion=lesion)
    assert torch.equal(grown.mask, _naive_dilate(lesion, 1))
    with pytest.raises(ConfigError, match="lesion masks"):
        intervention_from_saliency(x, y, s, PPIConfig(mask="lesion"), binary=True)


def test_swap_fill_takes_the_removed_pixels_from_an_image_of_the_other_class():
    x, y, s, lesion = _batch()
    cfg = PPIConfig(mask="lesion", fill="swap", create_graph=False)
    g = torch.Generator().manual_seed(2)
    iv = intervention_from_saliency(x, y, s, cfg, binary=True, lesion=lesion, generator=g)
    donors = torch.tensor([next(j for j in range(4) if torch.equal(iv.fill[i], x[j])) for i in range(4)])
    assert all(y[d] != y[i] for i, d in enumerate(donors.tolist()))  # each fill is an image of the other class
    expected = (1 - lesion) * x + lesion * x[donors]
    assert torch.allclose(iv.contrast_images()[0], expected[iv.rows])
    kept = iv.kept_images(iv.fill, iv.rows)  # x^k: a positive's lesion pasted onto a negative
    assert torch.allclose(kept, (lesion * x + (1 - lesion) * x[donors])[iv.rows])
    assert all(y[donors[r]] == 0 for r in iv.rows.tolist())


def test_l_keep_with_swap_classifies_the_pasted_positives_only():
    x, y, _, lesion = _batch()
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="tiny", input_size=8, dropout=0.0)).train()
    cfg = PPIConfig(mask="lesion", fill="swap", keep=1.0, create_graph=False)
    step = TrainStep(model=model, net=model, cfg=cfg, weights=LossWeights(cfg), binary=True,
                     device=torch.device("cpu"))
    values = step(x, y, epoch=0, generator=torch.Generator().manual_seed(0), lesion=lesion)
    assert math.isfinite(values["keep"]) and values["p_keep"] >= 0
    assert values["lesion_removed"] == pytest.approx(1.0)
    none = step(x, torch.zeros(4), epoch=0, generator=torch.Generator().manual_seed(0), lesion=lesion)
    assert math.isnan(none["keep"]) and math.isfinite(none["loss"])  # no positive: no x^k, and no NaN loss


def test_highpass_masks_prefer_a_compact_peak_over_a_ramp_that_is_larger_everywhere_else():
    h, w = 16, 32
    ramp = torch.linspace(0.2, 1.0, w).expand(h, w).clone()  # diffuse evidence, largest at the right edge
    s = ramp.clone()
    s[6:9, 4:7] += 0.6  # a compact lesion on the left, where the ramp is low: peak 0.85 < the ramp's 1.0
    s = s[None, None]
    x, y = torch.rand(1, 1, h, w), torch.ones(1)
    cfg = PPIConfig(mask="top-k", top_k=9, create_graph=False)
    plain = intervention_from_saliency(x, y, s, cfg, binary=True).mask[0, 0]
    local = intervention_from_saliency(x, y, s, PPIConfig(mask="top-k", top_k=9, map_highpass=3.0,
                                                          create_graph=False), binary=True).mask[0, 0]
    assert plain[6:9, 4:7].sum() == 0 and plain[:, -3:].sum() == 9  # the ramp's edge takes the budget
    assert local[6:9, 4:7].sum() == 9  # the local excess finds the lesion
    expected = intervention_from_saliency(x, y, s - blurred(s, 3.0), cfg, binary=True).mask
    assert torch.equal(local, expected[0, 0])


def test_normalised_space_wbp_is_the_input_minus_the_mean_times_the_gradient():
    from ppi_cli.ppi.intervention import normalised_space_map
    from ppi_cli.saliency import saliency_map

    torch.manual_seed(0)
    model = build_model(ModelConfig(name="tiny", input_size=16, dropout=0.0)).double().eval()
    x = torch.rand(3, 1, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x)[:, 0].sum(), x)  # ∂z/∂x per sample (samples do not interact in eval)
    mean = model.preprocess.mean.to(torch.float64)
    plain = saliency_map(model, x.detach(), 0, method="wbp")
    normalised = normalised_space_map(model, x.detach(), 0, method="wbp", create_graph=False)
    assert torch.allclose(plain, x.detach() * grad, atol=1e-10)
    assert torch.allclose(normalised, (x.detach() - mean) * grad, atol=1e-10)
    black = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    assert saliency_map(model, black, 0, method="wbp").abs().max() == 0  # in input space a black image has no map
    assert normalised_space_map(model, black, 0, method="wbp", create_graph=False).abs().max() > 0  # here it has
    other = normalised_space_map(model, torch.rand(2, 1, 20, 20, dtype=torch.float64), 0, method="wbp",
                                 create_graph=False)
    assert other.shape == (2, 1, 20, 20)  # taken at the network's 16 px, resized back to the image


def test_a_ppi_step_with_the_normalised_map_trains():
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="tiny", input_size=8, dropout=0.0)).train()
    cfg = PPIConfig(saliency_space="normalised", mask="top-k", coverage=0.1)
    step = TrainStep(model=model, net=model, cfg=cfg, weights=LossWeights(cfg), binary=True,
                     device=torch.device("cpu"))
    x, y, _, _ = _batch()
    values = step(x, y, epoch=0, generator=torch.Generator().manual_seed(0))
    assert math.isfinite(values["loss"]) and values["coverage"] == pytest.approx(0.1, abs=0.02)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
