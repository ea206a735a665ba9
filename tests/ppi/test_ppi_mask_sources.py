# SPDX-License-Identifier: MIT
"""Where masks come from: class-centred and smoothed maps, a frozen mask model, degraded lesion masks."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from helpers import checkpoint_2d

from ppi_cli.config.recipe import ModelConfig, PPIConfig, Recipe
from ppi_cli.engine.step import TrainStep
from ppi_cli.engine.sweep import seeded
from ppi_cli.engine.trainer import _mask_model
from ppi_cli.errors import ConfigError
from ppi_cli.models import build_model
from ppi_cli.ppi import LossWeights
from ppi_cli.ppi.intervention import (
    class_centred,
    intervention_from_saliency,
    pseudo_intervention,
    true_class_saliency,
)
from ppi_cli.ppi.masks import blurred, dilate, top_k_mask


def _naive_centred(s: torch.Tensor, y: torch.Tensor, per_image: int) -> torch.Tensor:
    classes = [float(v) for v in y.tolist() for _ in range(per_image)]
    out = s.clone()
    for i, c in enumerate(classes):
        mates = [j for j, d in enumerate(classes) if d == c]
        if len(mates) > 1:
            out[i] = s[i] - sum(s[j] for j in mates) / len(mates)
    return out


@pytest.mark.parametrize("per_image", [1, 3])
def test_class_centred_subtracts_the_mean_map_of_the_images_of_the_same_class(per_image):
    g = torch.Generator().manual_seed(per_image)
    y = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0])
    s = torch.randn(5 * per_image, 1, 6, 7, generator=g)
    assert torch.allclose(class_centred(s, y, per_image), _naive_centred(s, y, per_image), atol=1e-6)
    lone = torch.tensor([1.0, 0.0, 0.0])  # one positive: its map has no class-mate and stays as it is
    t = torch.randn(3, 1, 4, 4, generator=g)
    assert torch.equal(class_centred(t, lone)[0], t[0])
    assert torch.allclose(class_centred(t, lone)[1:].sum(dim=0), torch.zeros(1, 4, 4), atol=1e-6)


def test_centred_smoothed_masks_find_lesions_that_a_shared_ramp_outweighs():
    h, w = 16, 32
    ramp = torch.linspace(0.2, 1.0, w).expand(h, w)  # evidence every positive shows, largest at the right edge
    s = ramp.repeat(4, 1, 1, 1).clone()
    spots = [(3, 1), (9, 5), (5, 8), (11, 3)]  # a compact lesion at a place of each image's own
    for i, (r, c) in enumerate(spots):
        s[i, 0, r:r + 3, c:c + 3] += 0.5  # its peak (< 0.96) below the ramp's edge, 1
    x, y = torch.rand(4, 1, h, w), torch.ones(4)
    plain = intervention_from_saliency(x, y, s, PPIConfig(mask="top-k", top_k=9, create_graph=False), binary=True)
    cfg = PPIConfig(mask="top-k", top_k=9, map_centre="batch", map_smooth=1.0, create_graph=False)
    found = intervention_from_saliency(x, y, s, cfg, binary=True)
    for i, (r, c) in enumerate(spots):
        assert plain.mask[i, 0, r:r + 3, c:c + 3].sum() == 0  # the ramp's edge takes the whole budget
        assert found.mask[i, 0, r - 1:r + 4, c - 1:c + 4].sum() == 9  # every pixel on or next to the lesion
    expected = top_k_mask(blurred(_naive_centred(s, y, 1), 1.0), 9)
    assert torch.equal(found.mask, expected)


def test_magnitude_masks_take_a_lesion_the_model_reads_against_the_class():
    h, w = 16, 32
    s = torch.full((2, 1, h, w), 0.1)  # weak evidence for the class everywhere
    s[:, 0, 0:2, 20:24] = 0.4  # a patch of the true class's evidence (8 pixels)
    s[:, 0, 8:11, 4:7] = -1.0  # the lesion, read as evidence against the class (9 pixels)
    x, y = torch.rand(2, 1, h, w), torch.ones(2)
    signed = intervention_from_saliency(x, y, s, PPIConfig(mask="top-k", top_k=9, create_graph=False), binary=True)
    cfg = PPIConfig(mask="top-k", top_k=9, map_sign="magnitude", create_graph=False)
    either = intervention_from_saliency(x, y, s, cfg, binary=True)
    assert signed.mask[:, 0, 8:11, 4:7].sum() == 0  # the evidence map passes over the lesion
    assert signed.mask[:, 0, 0:2, 20:24].sum() == 2 * 8
    assert torch.equal(either.mask, top_k_mask(s.abs(), 9))  # a reference: the top of |s|
    assert either.mask[:, 0, 8:11, 4:7].sum() == 2 * 9  # every lesion pixel of both images


def _tiny(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(ModelConfig(name="tiny", input_size=8, dropout=0.0)).train()


def test_a_mask_model_gives_the_masks_and_the_trained_model_still_gives_the_map():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(4, 1, 8, 8, generator=g), torch.tensor([1.0, 0.0, 1.0, 0.0])
    student, teacher = _tiny(0), _tiny(1).eval().requires_grad_(False)
    cfg = PPIConfig(mask="top-k", coverage=0.1, create_graph=False)
    iv = pseudo_intervention(student, x, y, cfg, binary=True, mask_model=teacher)
    own = true_class_saliency(student, x, y, cfg, binary=True, positions=None, create_graph=False)
    theirs = true_class_saliency(teacher, x, y, cfg, binary=True, positions=None, create_graph=False)
    assert torch.equal(iv.saliency, own)  # L_reg's map: the model in training
    assert torch.equal(iv.mask, top_k_mask(theirs, 6))  # the masks: the mask model's map
    assert not torch.equal(top_k_mask(own, 6), iv.mask)  # (the two models do differ here)
    step = TrainStep(model=student, net=student, cfg=PPIConfig(mask="top-k", coverage=0.1), weights=LossWeights(cfg),
                     binary=True, device=torch.device("cpu"), mask_model=teacher)
    values = step(x, y, epoch=0, generator=torch.Generator().manual_seed(0))
    assert math.isfinite(values["loss"]) and all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters())


def test_the_mask_model_is_loaded_frozen_and_refused_for_other_images(tmp_path):
    path = checkpoint_2d(tmp_path / "teacher.pt", side=32)
    recipe = Recipe(name="t", model=ModelConfig(name="tiny", input_size=32),
                    ppi=PPIConfig(mask_model=str(path)))
    teacher = _mask_model(recipe, build_model(recipe.model), torch.device("cpu"))
    assert teacher is not None and not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    assert _mask_model(dataclasses.replace(recipe, ppi=PPIConfig()), build_model(recipe.model),
                       torch.device("cpu")) is None
    other = dataclasses.replace(recipe, model=ModelConfig(name="tiny", input_size=16))
    with pytest.raises(ConfigError, match="ppi.mask_model: teacher.pt explains other images"):
        _mask_model(other, build_model(other.model), torch.device("cpu"))


def _lesion_batch():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 1, 16, 16, generator=g), torch.tensor([1.0, 0.0])
    s = torch.rand(2, 1, 16, 16, generator=g)
    lesion = torch.zeros(2, 1, 16, 16)
    lesion[0, 0, 2:12, 3:13] = 1  # 100 pixels
    lesion[1, 0, 8:10, 8:10] = 1
    return x, y, s, lesion


def _two_of_each(size: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`_lesion_batch`'s two images and their mirror images, two of each class (GA, none, none, GA), and their
    lesion masks, cropped to the top-left `size` × `size` pixels."""
    x, _, _, lesion = _lesion_batch()
    x, lesion = torch.cat([x, x.flip(-1)]), torch.cat([lesion, lesion])
    crop = (slice(None), slice(None), slice(0, size), slice(0, size))
    return x[crop].contiguous(), torch.tensor([1.0, 0.0, 0.0, 1.0]), lesion[crop].contiguous()


def test_degraded_lesion_masks_drop_lesion_pixels_or_add_the_maps_largest():
    x, y, s, lesion = _lesion_batch()
    cfg = PPIConfig(mask="lesion", dilate=1, lesion_drop=0.3, create_graph=False)
    g1 = torch.Generator().manual_seed(1)
    iv = intervention_from_saliency(x, y, s, cfg, binary=True, lesion=lesion, generator=g1)
    grown = dilate(lesion, 1)
    assert bool((iv.mask <= grown).all())  # only pixels of the (grown) lesion mask, none added
    kept = float(iv.mask.sum() / grown.sum())
    assert 0.6 < kept < 0.8  # about 1 - 0.3 of them, at random
    extra = PPIConfig(mask="lesion", lesion_extra=10 / 256, create_graph=False)
    iv = intervention_from_saliency(x, y, s, extra, binary=True, lesion=lesion)
    assert torch.equal(iv.mask, torch.maximum(lesion, top_k_mask(s, 10)))


def test_degrading_lesion_masks_without_lesion_masks_is_refused_at_load():
    from ppi_cli.config.recipe import load_recipe

    mask = load_recipe("demo-ga-ppi-wbp").ppi.mask
    assert mask != "lesion"
    with pytest.raises(ConfigError, match=f"ppi.lesion_drop changes lesion masks, and ppi.mask is '{mask}'"):
        load_recipe("demo-ga-ppi-wbp", {"ppi.lesion_drop": 0.4})
    recipe = load_recipe("demo-ga-ppi-wbp", {"ppi.lesion_drop": 0.4, "ppi.mask": "lesion"})
    assert recipe.ppi.lesion_drop == 0.4


def test_a_sweep_variant_may_name_the_seed_of_its_study():
    overrides = {"ppi.mask_model": "runs/baseline/seed-{seed}/best.pt", "ppi.coverage": 0.03, "ppi.fill": "swap"}
    assert seeded(overrides, 4) == {"ppi.mask_model": "runs/baseline/seed-4/best.pt", "ppi.coverage": 0.03,
                                    "ppi.fill": "swap"}


def test_swapped_looks_carry_each_images_smooth_gain_with_it():
    from ppi_cli.ppi.looks import swapped_looks

    g = torch.Generator().manual_seed(0)
    h, w = 24, 32
    gain = torch.linspace(0.6, 1.4, w)  # a lateral gain ramp: x's look, not the donor's
    x = (0.4 + 0.1 * torch.rand(2, 1, h, w, generator=g)) * gain
    donor = 0.4 + 0.1 * torch.rand(2, 1, h, w, generator=g)
    into_x, into_d = swapped_looks(x, donor, "blur", 4.0)
    ratio = (blurred(x, 4.0).clamp_min(0.02) / blurred(donor, 4.0).clamp_min(0.02)).clamp(0.25, 4.0)
    assert torch.allclose(into_x, (donor * ratio).clamp(0, 1)) and torch.allclose(into_d, (x / ratio).clamp(0, 1))
    def rise(images, a, b):  # mean of columns a..a+3 over mean of columns b..b+3
        columns = images.mean(dim=(0, 1, 2))
        return float(columns[b:b + 4].mean() / columns[a:a + 4].mean())

    assert rise(x, 6, 22) > 1.5 and rise(into_x, 6, 22) > 1.5  # away from the edges: the donor's pixels rise too
    assert 0.95 < rise(into_d, 6, 22) < 1.05  # x's pixels in the donor's look: the ramp is gone
    assert rise(into_d, 0, 28) < 1.2 < 2.0 < rise(x, 0, 28)  # at the edges, where the blur reflects, mostly gone
    volumes = swapped_looks(x.view(1, 2, 1, h, w), donor.view(1, 2, 1, h, w), "blur", 4.0)
    assert torch.allclose(volumes[0].view_as(into_x), into_x)  # volumes: per B-scan


def test_swap_look_fills_x_star_in_the_positives_look_and_pastes_onto_the_donor_as_it_is():
    x, y, s, lesion = _lesion_batch()
    plain = PPIConfig(mask="lesion", fill="swap", create_graph=False)
    looked = dataclasses.replace(plain, swap_look="blur", look_sigma=3.0)
    a = intervention_from_saliency(x, y, s, plain, binary=True, lesion=lesion,
                                   generator=torch.Generator().manual_seed(2))
    b = intervention_from_saliency(x, y, s, looked, binary=True, lesion=lesion,
                                   generator=torch.Generator().manual_seed(2))
    assert a.keep_fill is None and a.kept is None  # off: the swap as before
    from ppi_cli.ppi.looks import swapped_looks

    into_x, into_d = swapped_looks(x, a.fill, "blur", 3.0)  # the same donors (same generator)
    assert torch.allclose(b.fill, into_x) and torch.equal(b.keep_fill, a.fill)
    assert torch.allclose(b.contrast_images()[0], ((1 - lesion) * x + lesion * into_x)[b.rows])
    assert torch.allclose(b.kept_images(b.keep_fill, b.rows), (lesion * into_d + (1 - lesion) * a.fill)[b.rows])


@pytest.mark.parametrize("look_to", ["own", "random"])
def test_a_ppi_step_with_the_looked_swap_pastes_onto_the_donor_as_it_is(monkeypatch, look_to):
    from ppi_cli.ppi.intervention import Intervention

    x, y, lesion = _two_of_each()
    model = _tiny(0)
    cfg = PPIConfig(mask="lesion", fill="swap", keep=1.0, swap_look="blur", look_sigma=3.0, look_to=look_to,
                    create_graph=False)
    seen = []
    original = Intervention.kept_images

    def spy(self, fill, rows=None):
        seen.append((self, fill))
        return original(self, fill, rows)

    monkeypatch.setattr(Intervention, "kept_images", spy)
    step = TrainStep(model=model, net=model, cfg=cfg, weights=LossWeights(cfg), binary=True,
                     device=torch.device("cpu"))
    values = step(x.view(4, 1, 16, 16)[:, :, :8, :8].contiguous(), y, epoch=0,
                  generator=torch.Generator().manual_seed(0), lesion=lesion[:, :, :8, :8].contiguous())
    assert math.isfinite(values["keep"]) and math.isfinite(values["loss"])
    iv, fill = seen[0]
    if look_to == "own":
        assert fill is iv.keep_fill and not torch.equal(iv.keep_fill, iv.fill)  # x^k's background: the donor as it is
    else:
        assert fill is iv.keep_fill is iv.fill and iv.base is not None  # the donor in the row's drawn look


def test_the_column_look_carries_column_stripes_that_a_blur_would_smooth_away():
    from ppi_cli.ppi.looks import image_look, swapped_looks

    g = torch.Generator().manual_seed(1)
    h, w = 16, 32
    stripes = 1 + 0.3 * torch.tensor([1.0, 1.0, -1.0, -1.0]).repeat(w // 4)  # four columns a cycle
    x = (0.4 + 0.1 * torch.rand(2, 1, h, w, generator=g)) * stripes
    donor = 0.4 + 0.1 * torch.rand(2, 1, h, w, generator=g)
    look = image_look(x, "columns", 8.0)
    assert torch.allclose(look, x.mean(dim=-2, keepdim=True).expand_as(x))  # each column's mean, down the rows
    into_x, into_d = swapped_looks(x, donor, "columns")
    ratio = (look / image_look(donor, "columns", 8.0)).clamp(0.25, 4.0)
    assert torch.allclose(into_x, (donor * ratio).clamp(0, 1)) and torch.allclose(into_d, (x / ratio).clamp(0, 1))

    def contrast(images):  # striped columns' mean over the others'
        columns = images.mean(dim=(0, 1, 2))
        return float(columns[stripes > 1].mean() / columns[stripes < 1].mean())

    assert contrast(x) > 1.7 and contrast(into_x) > 1.7  # the donor's pixels take x's stripes
    assert abs(contrast(into_d) - contrast(donor)) < 0.02  # x's pixels take the donor's flat profile
    assert contrast(swapped_looks(x, donor, "blur", 8.0)[1]) > 1.5  # a blur look leaves the stripes in place


def test_a_look_kept_at_its_level_moves_the_shape_and_leaves_each_images_brightness():
    from ppi_cli.ppi.looks import image_look, relooked, swapped_looks

    g = torch.Generator().manual_seed(2)
    h, w = 16, 32
    ramp = torch.linspace(0.6, 1.4, w)  # a lateral gain ramp, mean 1
    x = (0.3 + 0.1 * torch.rand(2, 1, h, w, generator=g)) * ramp  # x: the ramp
    donor = 0.5 * (0.3 + 0.1 * torch.rand(2, 1, h, w, generator=g))  # the donor: flat and half as bright
    columns = x.mean(dim=-2, keepdim=True)
    by_hand = (columns / columns.mean(dim=-1, keepdim=True)).expand_as(x)  # each column's mean over the image's
    assert torch.allclose(image_look(x, "columns", 8.0, level="keep"), by_hand, atol=1e-6)
    into_x, into_d = swapped_looks(x, donor, "columns", level="keep")
    ratio = (by_hand / image_look(donor, "columns", 8.0, level="keep")).clamp(0.25, 4.0)
    assert torch.allclose(into_x, (donor * ratio).clamp(0, 1), atol=1e-6)
    assert torch.allclose(relooked(donor, image_look(x, "columns", 8.0, level="keep"), "columns", level="keep"),
                          into_x, atol=1e-6)
    for moved, own in ((into_x, donor), (into_d, x)):  # each keeps its brightness to within 2 %
        assert abs(float(moved.mean() / own.mean()) - 1) < 0.02
    assert float(swapped_looks(x, donor, "columns")[0].mean() / donor.mean()) > 1.8  # swap: x's brightness too

    def slope(images):  # right third's mean over the left third's
        c = images.mean(dim=(0, 1, 2))
        return float(c[-w // 3:].mean() / c[: w // 3].mean())

    assert slope(x) > 1.6 and abs(slope(into_x) / slope(x) - 1) < 0.05  # the ramp moves with the look either way
    assert abs(slope(into_d) - 1) < 0.05
    # images whose looks differ only in level are left as they are
    assert torch.allclose(swapped_looks(x, 0.5 * x, "columns", level="keep")[0], 0.5 * x, atol=1e-6)


def test_a_look_kept_at_the_top_scales_each_moved_image_back_to_its_own_99_5th_percentile():
    from ppi_cli.ppi.looks import TOP_QUANTILE, image_look, relooked, swapped_looks

    g = torch.Generator().manual_seed(3)
    h, w = 16, 40
    ramp = torch.linspace(0.55, 1.45, w)  # the benchmark's ramp: gain 1 ± 0.45, mean 1
    x = (0.2 + 0.6 * torch.rand(3, 1, h, w, generator=g)) * ramp  # x: the ramp, peaks near 1.1 before clipping
    x = x.clamp(0, 1)
    donor = 0.2 + 0.6 * torch.rand(3, 1, h, w, generator=g)  # the donor: flat
    assert torch.equal(image_look(x, "columns", 8.0, level="top"), image_look(x, "columns", 8.0, level="keep"))
    kept_x, kept_d = swapped_looks(x, donor, "columns", level="keep")
    into_x, into_d = swapped_looks(x, donor, "columns", level="top")

    def by_hand(moved_unclipped, own):  # numpy's percentile of each image, then the clip
        out = []
        for m, o in zip(moved_unclipped.numpy(), own.numpy(), strict=True):
            out.append(np.clip(m * np.quantile(o, TOP_QUANTILE) / np.quantile(m, TOP_QUANTILE), 0, 1))
        return torch.from_numpy(np.stack(out)).float()

    looks = (image_look(t, "columns", 8.0, level="keep") for t in (x, donor))
    ratio = (next(looks) / next(looks)).clamp(0.25, 4)
    assert torch.allclose(into_x, by_hand(donor * ratio, donor), atol=1e-5)
    assert torch.allclose(into_d, by_hand(x / ratio, x), atol=1e-5)
    assert torch.allclose(relooked(donor, image_look(x, "columns", 8.0, level="top"), "columns", level="top"), into_x,
                          atol=1e-6)
    top = lambda t: torch.quantile(t.flatten(1), TOP_QUANTILE, dim=1)  # noqa: E731
    assert torch.allclose(top(into_x), top(donor), atol=1e-5)  # the flat donor keeps its top intensity
    assert bool((top(kept_x) > top(donor) + 0.1).all())  # where `keep` pushes the bright side past it
    # the ramp's shape still moves: the right third over the left third as in x
    slope = lambda t: float(t.mean(dim=(0, 1, 2))[-w // 3:].mean() / t.mean(dim=(0, 1, 2))[: w // 3].mean())  # noqa: E731
    assert slope(x) > 1.6 and abs(slope(into_x) / slope(kept_x) - 1) < 0.05


def test_a_column_look_taken_outside_the_mask_leaves_the_lesions_columns_behind():
    from ppi_cli.ppi.looks import image_look, swapped_looks

    g = torch.Generator().manual_seed(3)
    h, w = 16, 32
    stripes = 1 + 0.3 * torch.tensor([1.0, 1.0, -1.0, -1.0]).repeat(w // 4)
    x = (0.3 + 0.1 * torch.rand(2, 1, h, w, generator=g)) * stripes
    outside = torch.ones(2, 1, h, w)
    outside[:, :, 6:12, 8:16] = 0  # the mask: a lesion 6 rows deep over columns 8-15
    x = torch.where(outside == 0, torch.full_like(x, 0.9), x)  # the lesion brightens its columns
    donor = 0.3 + 0.1 * torch.rand(2, 1, h, w, generator=g)
    look = image_look(x, "columns", 8.0, outside)
    naive = torch.empty_like(x)
    for n in range(2):
        for j in range(w):
            keep = outside[n, 0, :, j] > 0
            naive[n, 0, :, j] = x[n, 0, keep, j].mean()
    assert torch.allclose(look, naive.clamp_min(0.02), atol=1e-6)
    plain_into_x = swapped_looks(x, donor, "columns")[0]
    into_x, into_d = swapped_looks(x, donor, "columns", outside=outside)

    def lesion_columns_over_the_rest(images):  # the stripes' mean ratio removed: columns 8-15 against 16-23
        columns = images.mean(dim=(0, 1, 2))
        return float(columns[8:16].mean() / columns[16:24].mean())

    assert lesion_columns_over_the_rest(plain_into_x) > 1.3  # the plain look moves the lesion's columns
    assert abs(lesion_columns_over_the_rest(into_x) - 1) < 0.05  # taken outside the mask, it does not
    stripe = into_x.mean(dim=(0, 1, 2))
    assert float(stripe[stripes > 1].mean() / stripe[stripes < 1].mean()) > 1.7  # and the stripes still go across
    assert torch.equal(swapped_looks(x, donor, "columns", outside=torch.ones_like(outside))[1],
                       swapped_looks(x, donor, "columns")[1])  # nothing masked: the plain look


def test_a_blur_look_taken_outside_the_mask_is_not_brightened_by_the_lesion():
    from ppi_cli.ppi.looks import image_look

    x = torch.full((1, 1, 32, 32), 0.3)
    outside = torch.ones_like(x)
    outside[:, :, 12:20, 12:20] = 0
    x[outside == 0] = 0.9
    plain, masked = image_look(x, "blur", 4.0), image_look(x, "blur", 4.0, outside)
    assert float(plain[0, 0, 16, 22]) > 0.4  # next to the lesion the plain blur is lifted by it
    assert torch.allclose(masked[outside > 0], torch.full_like(masked[outside > 0], 0.3), atol=1e-4)
    assert torch.allclose(masked[outside == 0], torch.full_like(masked[outside == 0], 0.3), atol=1e-4)  # filled in


def test_look_from_outside_takes_the_looks_outside_each_images_mask_in_an_intervention():
    from ppi_cli.ppi.looks import swapped_looks

    x, y, s, lesion = _lesion_batch()
    cfg = PPIConfig(mask="lesion", fill="swap", swap_look="columns", look_from="outside", create_graph=False)
    plain = dataclasses.replace(cfg, look_from="image")
    a = intervention_from_saliency(x, y, s, plain, binary=True, lesion=lesion,
                                   generator=torch.Generator().manual_seed(2))
    b = intervention_from_saliency(x, y, s, cfg, binary=True, lesion=lesion,
                                   generator=torch.Generator().manual_seed(2))
    into_x, into_d = swapped_looks(x, a.keep_fill, "columns", outside=1 - lesion)
    assert torch.allclose(b.fill, into_x) and torch.allclose(b.kept, into_d)
    assert not torch.allclose(a.fill, b.fill)


def test_swap_region_image_swaps_whole_images_with_looks_taken_outside_the_mask():
    from ppi_cli.ppi.looks import swapped_looks

    x, y, s, lesion = _lesion_batch()
    cfg = PPIConfig(mask="lesion", fill="swap", swap_look="columns", look_from="outside", swap_region="image",
                    keep=1.0, create_graph=False)
    iv = intervention_from_saliency(x, y, s, cfg, binary=True, lesion=lesion,
                                    generator=torch.Generator().manual_seed(2))
    into_x, into_d = swapped_looks(x, iv.keep_fill, "columns", outside=1 - lesion)  # looks still outside the lesion
    x_star, _ = iv.contrast_images()
    assert torch.allclose(x_star, into_x[iv.rows])  # x*: the whole donor in x's look, nothing of x's own pixels
    assert torch.allclose(iv.kept_images(iv.keep_fill), into_d)  # x^k: the whole of x in the donor's look
    assert torch.equal(iv.mask, lesion)  # still the mask (the diagnostics' coverage and lesion share)
    masked = intervention_from_saliency(x, y, s, dataclasses.replace(cfg, swap_region="mask"), binary=True,
                                        lesion=lesion, generator=torch.Generator().manual_seed(2))
    assert not torch.allclose(masked.contrast_images()[0], x_star)  # the default swaps the lesion's pixels only


def test_a_ppi_step_with_whole_images_swapped_reports_the_masks_own_coverage_and_lesion_share():
    x, y, lesion = _two_of_each(8)
    model = _tiny(0)
    cfg = PPIConfig(mask="lesion", fill="swap", keep=0.5, alpha=0.5, gamma=0.0, swap_look="columns",
                    look_from="outside", swap_region="image", create_graph=False)
    step = TrainStep(model=model, net=model, cfg=cfg, weights=LossWeights(cfg), binary=True,
                     device=torch.device("cpu"))
    values = step(x, y, epoch=0, generator=torch.Generator().manual_seed(0), lesion=lesion)
    assert all(math.isfinite(values[k]) for k in ("cls", "con", "keep", "loss"))
    assert values["coverage"] == pytest.approx(float(lesion.mean()))  # the mask, not the whole swapped image
    assert values["lesion_removed"] == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [1, 5])  # seeds where the look lowers a content's score (on others it raises all)
def test_the_hinge_holds_x_star_and_x_k_to_their_contents_clean_log_odds_in_a_ppi_step(seed):
    from ppi_cli.ppi.losses import contrast_loss, log_odds

    x, y, lesion = _two_of_each(8)
    model = _tiny(seed).eval()  # running statistics throughout: the hand computation's forwards are the step's
    cfg = PPIConfig(mask="lesion", fill="swap", keep=0.5, alpha=0.5, gamma=0.0, swap_look="columns",
                    look_from="outside", swap_region="image", create_graph=False, intervened_norm="running")
    found = {}
    for loss in ("ce", "hinge"):
        hinged = dataclasses.replace(cfg, counterfactual_loss=loss)
        step = TrainStep(model=model, net=model, cfg=hinged, weights=LossWeights(hinged), binary=True,
                         device=torch.device("cpu"))
        found[loss] = step(x, y, epoch=0, generator=torch.Generator().manual_seed(1), lesion=lesion)
    iv = pseudo_intervention(model, x, y, cfg, binary=True, generator=torch.Generator().manual_seed(1), lesion=lesion)
    with torch.no_grad():
        clean, star, kept = model(x), model(iv.contrast_images()[0]), model(iv.kept_images(iv.keep_fill, iv.rows))
    content = iv.fill_from[iv.rows]  # x* is the donor (the other class) in x's look
    assert bool((y[content] != y[iv.rows]).all())
    con = torch.relu(log_odds(clean[content], y[content]) - log_odds(star, y[content])).mean()
    keep = torch.relu(log_odds(clean[iv.rows], y[iv.rows]) - log_odds(kept, y[iv.rows])).mean()
    assert found["hinge"]["con"] == pytest.approx(float(con), abs=1e-5)
    assert found["hinge"]["keep"] == pytest.approx(float(keep), abs=1e-5)
    assert found["ce"]["con"] == pytest.approx(float(contrast_loss(star, y[iv.rows])), abs=1e-5)
    assert float(con + keep) > 0  # the look moved a score here: the hinge is not trivially zero
    assert found["hinge"]["con"] < found["ce"]["con"]


def test_the_gate_counts_the_counterfactuals_of_the_images_the_model_reads_and_zero_for_the_others():
    from ppi_cli.ppi.losses import classification_loss, contrast_loss, true_label_probability

    x, y, lesion = _two_of_each(8)
    model = _tiny(1).eval()
    cfg = PPIConfig(mask="lesion", fill="swap", keep=0.5, alpha=0.5, gamma=0.0, swap_look="columns",
                    look_from="outside", swap_region="image", create_graph=False, intervened_norm="running")
    iv = pseudo_intervention(model, x, y, cfg, binary=True, generator=torch.Generator().manual_seed(1), lesion=lesion)
    with torch.no_grad():
        clean, star, kept = model(x), model(iv.contrast_images()[0]), model(iv.kept_images(iv.keep_fill, iv.rows))
    p = true_label_probability(clean[iv.rows], y[iv.rows])  # the positives' own p(GA), one per x* and x^k
    assert p.numel() == 2 and float(p[0]) != float(p[1])
    found = {}
    for gate in (0.0, float(p.mean()), 0.999):  # none gated, the surer one kept, every one gated
        gated = dataclasses.replace(cfg, counterfactual_gate=gate)
        step = TrainStep(model=model, net=model, cfg=gated, weights=LossWeights(gated), binary=True,
                         device=torch.device("cpu"))
        found[gate] = step(x, y, epoch=0, generator=torch.Generator().manual_seed(1), lesion=lesion)
    sure = p >= p.mean()
    assert found[0.0]["con"] == pytest.approx(float(contrast_loss(star, y[iv.rows])), abs=1e-5)
    assert found[float(p.mean())]["con"] == pytest.approx(float(contrast_loss(star[sure], y[iv.rows][sure])) / 2,
                                                          abs=1e-5)
    assert found[float(p.mean())]["keep"] == pytest.approx(
        float(classification_loss(kept[sure], y[iv.rows][sure])) / 2, abs=1e-5)
    assert found[0.999]["con"] == 0.0 and found[0.999]["keep"] == 0.0
    assert found[0.999]["cls"] == pytest.approx(found[0.0]["cls"])  # the clean term is untouched


def test_the_hinge_without_whole_images_swapped_is_refused_at_load():
    from ppi_cli.config.recipe import load_recipe

    assert load_recipe("ga-ppi-wbp-cpu", {"ppi.counterfactual_loss": "hinge"}).ppi.counterfactual_loss == "hinge"
    with pytest.raises(ConfigError, match="ppi.counterfactual_loss: hinge holds each counterfactual"):
        load_recipe("ga-ppi-wbp-cpu", {"ppi.counterfactual_loss": "hinge", "ppi.swap_region": "mask"})


@pytest.mark.parametrize("fields", [{"ppi.fill": "zero"}, {"ppi.swap_look": "none"}])
def test_swap_region_image_without_a_swapped_look_is_refused_at_load(fields):
    from ppi_cli.config.recipe import load_recipe

    one_level = {"ppi.look_level": "swap", "ppi.look_choices": "swap-keep"}  # the recipe's select needs a look too
    with pytest.raises(ConfigError, match="ppi.swap_region: image swaps whole images"):
        load_recipe("ga-ppi-wbp-cpu", {"ppi.swap_region": "image", **one_level, **fields})
    assert load_recipe("ga-ppi-wbp-cpu", {"ppi.swap_region": "image"}).ppi.swap_region == "image"
    with pytest.raises(ConfigError, match="ppi.swap_region: image with ppi.gamma 1"):
        load_recipe("ga-ppi-wbp-cpu", {"ppi.swap_region": "image", "ppi.gamma": 1})


def _striped_batch(n: int, seed: int):
    """n images, each its own column gain (a lateral ramp of its own slope) times a row pattern near 1."""
    g = torch.Generator().manual_seed(seed)
    h, w = 8, 16
    slopes = torch.linspace(-0.2, 0.2, n)
    gains = 0.5 + slopes[:, None] * torch.linspace(-1, 1, w)  # (n, w), in [0.3, 0.7]
    rows = 0.95 + 0.1 * torch.rand(n, 1, h, 1, generator=g)
    x = (gains[:, None, None, :] * rows).contiguous()  # (n, 1, h, w)
    y = torch.tensor([1.0, 0.0] * (n // 2))
    return x, y, gains


def _whose_gain(images: torch.Tensor, gains: torch.Tensor) -> tuple[list[int], float]:
    """For each image, the batch image whose column gain its column profile is proportional to, and the worst fit."""
    profile = images.mean(dim=(1, 2))  # (n, w)
    unit = profile / profile.norm(dim=1, keepdim=True)
    ref = gains / gains.norm(dim=1, keepdim=True)
    fit = unit @ ref.T  # cosine: 1 for proportional profiles
    return fit.argmax(dim=1).tolist(), float(1 - fit.max(dim=1).values.min())


def test_look_to_random_puts_every_intervened_image_of_a_row_in_one_drawn_images_look():
    from ppi_cli.ppi.looks import swapped_looks

    x, y, gains = _striped_batch(8, 0)
    s = torch.rand(8, 1, 8, 16, generator=torch.Generator().manual_seed(1))
    own = PPIConfig(mask="top-k", coverage=0.25, fill="swap", swap_look="columns", keep=1.0, create_graph=False)
    drawn = dataclasses.replace(own, look_to="random")
    a = intervention_from_saliency(x, y, s, own, binary=True, generator=torch.Generator().manual_seed(3))
    b = intervention_from_saliency(x, y, s, drawn, binary=True, generator=torch.Generator().manual_seed(3))
    assert a.base is None and not torch.equal(a.fill, b.fill)
    # The same donors (drawn first from the same generator), then one look per row.
    donors = a.keep_fill
    base_of, misfit = _whose_gain(b.base, gains)
    assert misfit < 1e-4 and _whose_gain(b.fill, gains)[0] == base_of  # x and its donor in the same drawn look
    looks = x[torch.tensor(base_of)]
    assert torch.allclose(b.base, swapped_looks(looks, x, "columns")[0], atol=1e-6)
    assert torch.allclose(b.fill, swapped_looks(looks, donors, "columns")[0], atol=1e-6)
    assert b.kept is b.base and b.keep_fill is b.fill  # x^k: x's region on the donor, both in the drawn look
    m = b.mask
    assert torch.allclose(b.contrast_images()[0], ((1 - m) * b.base + m * b.fill)[b.rows])
    x_ad, _ = b.adversarial_images()
    assert torch.allclose(x_ad, ((1 - m[b.donors]) * b.base[b.ad_rows] + m[b.donors] * b.fill[b.ad_rows]))
    assert torch.allclose(b.kept_images(b.keep_fill), m * b.base + (1 - m) * b.fill)
    # With `own` x* is in x's look and x^k in the donor's, whose class is the other one.
    assert _whose_gain(a.fill, gains)[0] == list(range(8))
    donor_of = _whose_gain(a.keep_fill, gains)[0]
    assert all(y[i] != y[j] for i, j in enumerate(donor_of))


def test_look_to_random_draws_looks_whatever_the_class():
    x, y, gains = _striped_batch(8, 0)
    s = torch.rand(8, 1, 8, 16, generator=torch.Generator().manual_seed(1))
    cfg = PPIConfig(mask="top-k", coverage=0.25, fill="swap", swap_look="columns", look_to="random",
                    create_graph=False)
    same = []
    for seed in range(100):
        iv = intervention_from_saliency(x, y, s, cfg, binary=True, generator=torch.Generator().manual_seed(seed))
        same += [bool(y[i] == y[j]) for i, j in enumerate(_whose_gain(iv.base, gains)[0])]
    share = sum(same) / len(same)  # 800 draws; the same class half the time (binomial sd 0.018)
    assert 0.44 < share < 0.56


def test_consistency_loss_is_the_kl_divergence_from_the_held_prediction():
    from ppi_cli.ppi.losses import consistency_loss

    g = torch.Generator().manual_seed(0)
    z, t = torch.randn(6, 1, generator=g, requires_grad=True), torch.randn(6, 1, generator=g, requires_grad=True)
    p, q = torch.sigmoid(t.detach()), torch.sigmoid(z.detach())
    by_hand = (p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()).mean()
    loss = consistency_loss(z, t)
    assert float(loss.detach()) == pytest.approx(float(by_hand), abs=1e-6)
    loss.backward()
    assert t.grad is None and torch.allclose(z.grad, (q - p).view(6, 1) / 6, atol=1e-6)  # the target is held
    assert float(consistency_loss(t.detach(), t.detach())) == pytest.approx(0.0, abs=1e-7)
    z3, t3 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    P, Q = t3.softmax(1), z3.softmax(1)
    assert float(consistency_loss(z3, t3)) == pytest.approx(float((P * (P / Q).log()).sum(1).mean()), abs=1e-6)


@pytest.mark.parametrize(("fill", "look_to"), [("zero", "own"), ("swap", "own"), ("swap", "random")])
def test_invariance_puts_each_image_outside_its_mask_in_the_look_of_an_image_of_the_other_class(fill, look_to):
    x, y, gains = _striped_batch(8, 0)
    s = torch.rand(8, 1, 8, 16, generator=torch.Generator().manual_seed(1))
    cfg = PPIConfig(mask="top-k", coverage=0.25, fill=fill, swap_look="columns", keep=1.0, invariance=1.0,
                    look_to=look_to, create_graph=False)
    iv = intervention_from_saliency(x, y, s, cfg, binary=True, generator=torch.Generator().manual_seed(3))
    look_of, misfit = _whose_gain(iv.relooked, gains)
    assert misfit < 1e-4 and all(y[i] != y[j] for i, j in enumerate(look_of))  # the other class's look, row by row
    if fill == "swap" and look_to == "own":
        assert iv.relooked is iv.kept  # the swap's donor lends it: x in its donor's look
    if look_to == "random":
        assert iv.base is not None and iv.relooked is not iv.kept  # the drawn look may be of either class
    m = iv.mask
    assert torch.allclose(iv.invariant_images(), m * x + (1 - m) * iv.relooked)  # the salient region keeps x's look
    assert iv.invariant_images("all") is iv.relooked
    plain = intervention_from_saliency(x, y, s, dataclasses.replace(cfg, invariance=0.0), binary=True,
                                       generator=torch.Generator().manual_seed(3))
    assert plain.relooked is None
    with pytest.raises(ValueError, match="without ppi.invariance"):
        plain.invariant_images()


def test_a_ppi_step_with_invariance_reports_l_inv_against_the_models_own_predictions(monkeypatch):
    from ppi_cli.ppi.intervention import Intervention
    from ppi_cli.ppi.losses import consistency_loss

    x, y, _ = _striped_batch(4, 1)
    x = x[:, :, :8, :8].contiguous()
    model = _tiny(0)
    cfg = PPIConfig(mask="top-k", coverage=0.25, swap_look="blur", look_sigma=2.0, invariance=2.0,
                    create_graph=False)
    seen = []
    original = Intervention.invariant_images

    def spy(self, region="outside"):
        images = original(self, region)
        seen.append(images)
        return images

    monkeypatch.setattr(Intervention, "invariant_images", spy)
    step = TrainStep(model=model, net=model, cfg=cfg, weights=LossWeights(cfg), binary=True,
                     device=torch.device("cpu"))
    values = step(x, y, epoch=0, generator=torch.Generator().manual_seed(0))
    model.eval()  # x* and x^inv are classified with the running statistics the clean pass left
    with torch.no_grad():
        by_hand = consistency_loss(model(seen[0]), model(x))
    assert values["inv"] == pytest.approx(float(by_hand), rel=1e-5) and values["inv"] > 0
    without = {k: v for k, v in values.items() if k != "inv"}
    rest = without["cls"] + without["con"] + 0.1 * without["reg"] + without["ad"]
    assert values["loss"] == pytest.approx(rest + 2.0 * values["inv"], rel=1e-6)
