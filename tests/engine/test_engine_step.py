# SPDX-License-Identifier: MIT
"""The optimised PPI step computes the gradient of the naive total loss, for images and volumes."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from ppi_cli.config.recipe import ModelConfig, MultiviewConfig, PPIConfig
from ppi_cli.engine.step import TrainStep
from ppi_cli.models import build_model
from ppi_cli.ppi import (
    LossWeights,
    adversarial_loss,
    classification_loss,
    contrast_loss,
    pseudo_intervention,
    saliency_regulariser,
)
from ppi_cli.ppi.losses import outside_evidence
from ppi_cli.ppi.masks import blurred
from ppi_cli.ppi.train_modes import intervened_normalisation, recorded_batch_statistics


def _naive_gradients(model, x, y, positions, cfg, seed):
    """L = L_cls + α·L_con + β·L_reg + γ·L_ad in one expression, one backward (no staging, no stand-in)."""
    model.zero_grad(set_to_none=True)
    run = (lambda v, p: model(v)) if positions is None else (lambda v, p: model(v, p))
    with recorded_batch_statistics(model, live=cfg.intervened_norm == "clean-grad") as clean:
        l_cls = classification_loss(run(x, positions), y)
    iv = pseudo_intervention(model, x, y, cfg, binary=True, positions=positions,
                             generator=torch.Generator().manual_seed(seed))
    (xs, ps), (xa, pa) = iv.contrast_images(), iv.adversarial_images()
    with intervened_normalisation(model, cfg.intervened_norm, clean):
        l_con = contrast_loss(run(xs, ps), y[iv.rows])
        l_ad = adversarial_loss(run(xa, pa), y[iv.ad_rows])
        l_keep = 0.0
        if cfg.keep > 0:  # x^k by hand: the mask as a constant, the rest of the image blurred
            flat = x.flatten(0, 1) if positions is not None else x
            t = iv.mask.detach().view(*x.shape[:-3], 1, *x.shape[-2:])
            x_keep = t * x + (1 - t) * blurred(flat, cfg.fill_sigma).view_as(x)
            l_keep = classification_loss(run(x_keep, positions), y)
    total = (l_cls + cfg.alpha * l_con + cfg.beta * saliency_regulariser(iv.saliency, cfg.reg_form) + cfg.gamma * l_ad
             + cfg.keep * l_keep)
    if cfg.delta > 0:
        held = iv.mask if cfg.out_coverage == 0 else _top_evidence(iv.saliency, cfg.out_coverage, cfg.map_smooth)
        total = total + cfg.delta * outside_evidence(iv.saliency, held, cfg.out_form)
    total.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _top_evidence(s, coverage, smooth):
    """L_out's own mask written out: per map, 1 on the `coverage` share of pixels whose blurred positive part
    ranks highest (a full sort), else 0."""
    part = s.detach().clamp(min=0)
    part = blurred(part, smooth) if smooth > 0 else part
    k = max(1, round(coverage * part[0].numel()))
    out = torch.zeros_like(part)
    for i, one in enumerate(part):
        chosen = torch.zeros(one.numel(), dtype=part.dtype)
        chosen[torch.argsort(one.flatten(), descending=True)[:k]] = 1.0
        out[i] = chosen.view_as(one)
    return out


def _tiny_batch(volume: bool, n: int):
    """A float64 tiny network in train mode and a batch of `n` random inputs for it: volumes of four 16 px B-scans
    for the multi-view model, or 16 px images; positions for the volumes, else None."""
    if volume:
        cfg_model = ModelConfig(name="multiview", backbone="tiny", input_size=16, dropout=0.0,
                                multiview=MultiviewConfig(num_positions=4))
        x, positions = torch.rand(n, 4, 1, 16, 16, dtype=torch.float64), torch.arange(4).repeat(n, 1)
    else:
        cfg_model = ModelConfig(name="tiny", input_size=16, dropout=0.0)
        x, positions = torch.rand(n + 2, 1, 16, 16, dtype=torch.float64), None
    return build_model(cfg_model).double().train(), x, positions


@pytest.mark.parametrize(("volume", "mask", "create_graph", "keep", "norm"),
                         [(False, "soft", True, 0.0, "running"), (True, "box", True, 0.0, "running"),
                          (False, "soft", False, 0.0, "running"), (True, "soft", False, 0.0, "running"),
                          (False, "soft", True, 0.7, "running"), (True, "top-k", True, 0.7, "running"),
                          (False, "soft", True, 0.7, "clean"), (True, "top-k", False, 0.7, "clean"),
                          (False, "soft", True, 0.7, "clean-grad"), (True, "top-k", True, 0.7, "clean-grad")])
def test_staged_ppi_step_equals_one_backward_of_the_total(volume, mask, create_graph, keep, norm):
    torch.manual_seed(0)
    model, x, positions = _tiny_batch(volume, 3)
    reference = copy.deepcopy(model)
    y = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0][: x.shape[0]], dtype=torch.float64)
    cfg = PPIConfig(saliency="wbp", mask=mask, alpha=0.7, beta=0.3, gamma=1.3, create_graph=create_graph,
                    start_epoch=0, keep=keep, coverage=0.2 if keep else 0.0, intervened_norm=norm)
    step = TrainStep(model=model, net=model, cfg=cfg, weights=LossWeights(cfg), binary=True,
                     device=torch.device("cpu"))
    model.zero_grad(set_to_none=True)
    values = step(x, y, positions, epoch=0, generator=torch.Generator().manual_seed(4))
    expected = _naive_gradients(reference, x, y, positions, cfg, seed=4)
    got = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert set(got) == set(expected)
    for name, grad in expected.items():
        assert torch.allclose(got[name], grad, rtol=1e-8, atol=1e-12), name
    assert set(values) == {"cls", "con", "reg", "ad", "loss", "coverage", "p_con", "p_ad"} | (
        {"keep", "p_keep"} if keep else set())
    # Running statistics saw the clean batch once, never the intervened images.
    for a, b in zip(model.buffers(), reference.buffers(), strict=True):
        assert torch.equal(a, b)



def test_faded_step_trains_the_total_with_every_ppi_weight_scaled():
    """ppi.fade_in: in the second of four fade-in epochs the step's gradient is the naive total's with α, β,
    γ and keep at half their values."""
    torch.manual_seed(2)
    model = build_model(ModelConfig(name="tiny", input_size=16, dropout=0.0)).double().train()
    reference = copy.deepcopy(model)
    x, y = torch.rand(5, 1, 16, 16, dtype=torch.float64), torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    cfg = PPIConfig(saliency="wbp", mask="top-k", coverage=0.2, alpha=0.7, beta=0.3, gamma=1.3, keep=0.7,
                    start_epoch=2, fade_in=4, intervened_norm="clean")
    step = TrainStep(model=model, net=model, cfg=cfg, weights=LossWeights(cfg), binary=True,
                     device=torch.device("cpu"))
    model.zero_grad(set_to_none=True)
    values = step(x, y, None, epoch=3, generator=torch.Generator().manual_seed(4))
    halved = dataclasses.replace(cfg, alpha=0.35, beta=0.15, gamma=0.65, keep=0.35, fade_in=0)
    expected = _naive_gradients(reference, x, y, None, halved, seed=4)
    for name, grad in expected.items():
        assert torch.allclose(model.get_parameter(name).grad, grad, rtol=1e-8, atol=1e-12), name
    assert values["loss"] == pytest.approx(values["cls"] + 0.35 * values["con"] + 0.15 * values["reg"]
                                           + 0.65 * values["ad"] + 0.35 * values["keep"])


def _step_trains_the_form(cfg, other, torch_seed):
    """One step on a tiny model: its gradient is the naive total's under `cfg`, and the naive total's under
    `other` (the same recipe with another form) differs, so the form reaches the gradient. Returns the
    step's reported values."""
    torch.manual_seed(torch_seed)
    model = build_model(ModelConfig(name="tiny", input_size=16, dropout=0.0)).double().train()
    reference = copy.deepcopy(model)
    x, y = torch.rand(5, 1, 16, 16, dtype=torch.float64), torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    step = TrainStep(model=model, net=model, cfg=cfg, weights=LossWeights(cfg), binary=True,
                     device=torch.device("cpu"))
    model.zero_grad(set_to_none=True)
    values = step(x, y, None, epoch=0, generator=torch.Generator().manual_seed(4))
    expected = _naive_gradients(reference, x, y, None, cfg, seed=4)
    for name, grad in expected.items():
        assert torch.allclose(model.get_parameter(name).grad, grad, rtol=1e-8, atol=1e-12), name
    different = _naive_gradients(copy.deepcopy(reference), x, y, None, other, seed=4)
    assert any(not torch.allclose(different[n], g) for n, g in expected.items())
    return values


@pytest.mark.parametrize("form", ["evidence", "magnitude", "positive"])
def test_a_step_trains_l_out_in_the_form_the_recipe_names(form):
    """ppi.delta with ppi.out_form: the step's gradient is the naive total's with δ·L_out of that form, and
    the `out` it reports is that form's value (a share for `magnitude` and `positive`)."""
    cfg = PPIConfig(saliency="wbp", mask="top-k", coverage=0.2, alpha=0.7, beta=0.3, gamma=1.3, delta=2.0,
                    out_form=form, start_epoch=0, intervened_norm="clean")
    values = _step_trains_the_form(
        cfg, dataclasses.replace(cfg, out_form="evidence" if form != "evidence" else "positive"), torch_seed=3)
    if form != "evidence":
        assert 0.0 < values["out"] < 1.0


@pytest.mark.parametrize("smooth", [0.0, 1.5])
def test_l_out_holds_each_map_to_its_own_top_evidence_with_out_coverage(smooth):
    """ppi.out_coverage: L_out reads each map against the top share of its blurred positive part, not against
    the intervention's mask: the step's gradient is the naive total's with that mask written out (a full sort),
    and differs from the one L_out has on the intervention's mask."""
    cfg = PPIConfig(saliency="wbp", mask="top-k", coverage=0.3, alpha=0.7, beta=0.3, gamma=1.3, delta=2.0,
                    out_form="positive", out_coverage=0.05, map_smooth=smooth, start_epoch=0,
                    intervened_norm="clean")
    values = _step_trains_the_form(cfg, dataclasses.replace(cfg, out_coverage=0.0), torch_seed=3)
    assert 0.0 < values["out"] < 1.0


@pytest.mark.parametrize("form", ["spread", "positive-spread"])
def test_a_step_trains_l_reg_in_the_form_the_recipe_names(form):
    """ppi.reg_form: the step's gradient is the naive total's with β·(that form), not the mean |s|, and the
    `reg` it reports is the spread, between 1/√N and 1."""
    cfg = PPIConfig(saliency="wbp", mask="top-k", coverage=0.2, alpha=0.7, beta=0.9, gamma=1.3,
                    reg_form=form, start_epoch=0, intervened_norm="clean")
    values = _step_trains_the_form(cfg, dataclasses.replace(cfg, reg_form="l1"), torch_seed=5)
    assert 1 / 16 < values["reg"] < 1.0


def test_clean_normalisation_classifies_with_the_clean_batchs_statistics_and_leaves_the_buffers():
    torch.manual_seed(1)
    model = build_model(ModelConfig(name="tiny", input_size=16, dropout=0.0)).double().train()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    x, other = torch.rand(6, 1, 16, 16, dtype=torch.float64), torch.rand(3, 1, 16, 16, dtype=torch.float64)
    seen = []  # the first batch norm's input: the output of the convolution before it
    hook = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).register_forward_hook(
        lambda _m, _i, out: seen.append(out.detach()))
    with recorded_batch_statistics(model) as clean:
        train_mode = model(x)  # batch norm on the batch's own statistics, running buffers updated once
    hook.remove()
    assert set(clean) == set(norms)
    first, conv = norms[0], seen[0]
    assert torch.allclose(clean[first][0], conv.mean(dim=(0, 2, 3)))
    assert torch.allclose(clean[first][1], conv.var(dim=(0, 2, 3), unbiased=False))
    buffers = [b.clone() for b in model.buffers()]
    with intervened_normalisation(model, "clean", clean):
        again, shifted = model(x), model(other)
    assert torch.allclose(again, train_mode)  # the same function L_cls trained, for any image
    for a, b in zip(model.buffers(), buffers, strict=True):
        assert torch.equal(a, b)  # running statistics as they were, and the buffers are the layer's own again
    with intervened_normalisation(model, "running"):
        on_running = model(other)
    assert not torch.allclose(shifted, on_running)  # not the running statistics
    assert all(m.training for m in norms)
    reference = copy.deepcopy(model).eval()
    for m, r in zip(norms, (m for m in reference.modules() if isinstance(m, torch.nn.BatchNorm2d)), strict=True):
        r.running_mean.copy_(clean[m][0])
        r.running_var.copy_(clean[m][1])
    assert torch.allclose(shifted, reference(other))  # eval mode on the clean batch's statistics


@pytest.mark.parametrize("volume", [True, False])
def test_clean_grad_steps_along_the_gradient_of_the_loss_the_step_reports(volume):
    """`ppi.intervened_norm: clean-grad`: the step's gradient is the derivative of its reported loss, the
    clean batch's statistics recomputed at every weight (central differences along a random direction);
    `clean`, which holds them constant, is not: the check can fail."""
    torch.manual_seed(3)
    model, x, positions = _tiny_batch(volume, 4)
    y = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0][: x.shape[0]], dtype=torch.float64)
    # whole images swapped in each other's column look (taken from the whole image, so the masks, which move
    # with the weights, do not enter x* and x^k); L_reg and L_ad off so the reported loss is what is trained
    base = PPIConfig(saliency="wbp", mask="top-k", coverage=0.2, fill="swap", swap_look="columns",
                     swap_region="image", look_level="keep", alpha=0.7, keep=0.6, beta=0.0, gamma=0.0,
                     create_graph=False, start_epoch=0)
    direction = [torch.randn_like(p) for p in model.parameters()]
    length = sum(float((d * d).sum()) for d in direction) ** 0.5
    direction = [d / length for d in direction]  # a unit step, so a small one stays clear of ReLU kinks

    def run(net, cfg):
        step = TrainStep(model=net, net=net, cfg=cfg, weights=LossWeights(cfg), binary=True,
                         device=torch.device("cpu"))
        net.zero_grad(set_to_none=True)
        return step(x, y, positions, epoch=0, generator=torch.Generator().manual_seed(4))["loss"]

    def moved(by):
        net = copy.deepcopy(model)
        with torch.no_grad():
            for p, d in zip(net.parameters(), direction, strict=True):
                p.add_(by * d)
        return net

    eps, slopes, losses = 1e-6, {}, {}
    for norm in ("clean-grad", "clean"):
        cfg = dataclasses.replace(base, intervened_norm=norm)
        net = copy.deepcopy(model)
        run(net, cfg)
        along = sum(float((p.grad * d).sum()) for p, d in zip(net.parameters(), direction, strict=True))
        losses[norm] = (run(moved(eps), cfg), run(moved(-eps), cfg))
        numeric = (losses[norm][0] - losses[norm][1]) / (2 * eps)
        slopes[norm] = (along, numeric)
    along, numeric = slopes["clean-grad"]
    assert along == pytest.approx(numeric, rel=1e-4)
    along, numeric = slopes["clean"]
    assert abs(along - numeric) > 0.01 * abs(numeric)  # constant statistics: not the loss's derivative
    # one loss, two gradients: the modes report the same loss at each weight, up to float64 rounding (their
    # slopes' quotient by 2·eps magnifies that rounding a million times, so the losses are compared, not the slopes)
    assert losses["clean"] == pytest.approx(losses["clean-grad"], rel=1e-12)


def test_a_step_refuses_select_which_chooses_between_whole_runs():
    # `select` is fit's choice between two runs; a step handed it would fall through to batch statistics
    cfg = PPIConfig(intervened_norm="select")
    with pytest.raises(ValueError, match="select reached a training step"):
        TrainStep(model=torch.nn.Linear(2, 1), net=torch.nn.Linear(2, 1), cfg=cfg, weights=LossWeights(cfg),
                  binary=True, device=torch.device("cpu"))
    for mode in ("running", "clean"):  # the modes it trains are accepted
        TrainStep(model=torch.nn.Linear(2, 1), net=torch.nn.Linear(2, 1),
                  cfg=PPIConfig(intervened_norm=mode), weights=LossWeights(cfg), binary=True,
                  device=torch.device("cpu"))

