# SPDX-License-Identifier: MIT
"""Loss terms against naive formulas, the intervention's bookkeeping, and the create_graph switch."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from ppi_cli.config.recipe import ModelConfig, PPIConfig
from ppi_cli.models import build_model
from ppi_cli.ppi import (
    LossWeights,
    adversarial_loss,
    classification_loss,
    contrast_loss,
    derangement,
    mask_donors,
    pseudo_intervention,
    saliency_regulariser,
)
from ppi_cli.ppi.train_modes import dropout_off, intervened_normalisation
from ppi_cli.saliency import saliency_map


def _sig(v):
    return 1 / (1 + math.exp(-v))


def test_binary_terms_match_naive_formulas():
    z = torch.tensor([[2.0], [-1.0], [0.3]], dtype=torch.float64)
    y = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    p = [_sig(v) for v in z.flatten().tolist()]
    cls = -np.mean([math.log(p[0]), math.log(1 - p[1]), math.log(p[2])])
    con = -np.mean([math.log(1 - p[0]), math.log(p[1]), math.log(1 - p[2])])  # the flipped label
    assert classification_loss(z, y).item() == pytest.approx(cls)
    assert adversarial_loss(z, y).item() == pytest.approx(cls)
    assert contrast_loss(z, y).item() == pytest.approx(con)


def test_multiclass_contrast_is_one_vs_others():
    z = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], dtype=torch.float64)
    y = torch.tensor([1, 2])
    probs = torch.softmax(z, 1).numpy()
    naive = -np.mean([math.log(1 - probs[0, 1]), math.log(1 - probs[1, 2])])
    assert contrast_loss(z, y).item() == pytest.approx(naive)
    ce = -np.mean([math.log(probs[0, 1]), math.log(probs[1, 2])])
    assert classification_loss(z, y).item() == pytest.approx(ce)
    # Stays finite when the true class is certain (1 − p_y underflows in a naive formula).
    sure = torch.tensor([[200.0, 0.0, 0.0]])
    assert contrast_loss(sure, torch.tensor([0])).item() == pytest.approx(200.0 - math.log(2), rel=1e-6)
    assert contrast_loss(z[:0], y[:0]).item() == 0.0


def test_regulariser_is_mean_abs():
    s = torch.tensor([[[[1.0, -2.0], [0.0, 3.0]]]])
    assert saliency_regulariser(s).item() == pytest.approx(1.5)


@pytest.mark.parametrize("form", ["spread", "positive-spread"])
def test_spread_regulariser_against_a_per_map_loop(form):
    """`spread`: ‖s‖₁ / (√N ‖s‖₂) per map (`positive-spread`: of its positive part), meaned over the maps
    whose part is not all zero; 1 for equal values everywhere, 1/√N for one pixel, the same at any scale;
    its gradient is the loop's."""
    g = torch.Generator().manual_seed(0)
    s = torch.randn(5, 1, 5, 6, generator=g, dtype=torch.float64)
    s[1] = 0.0  # a map of zeros: left out of the mean
    s[2] = 0.0
    s[2, 0, 3, 4] = 2.5  # one pixel
    s[3] = 0.7 if form == "positive-spread" else torch.where(s[3] > 0, 0.7, -0.7)  # equal values everywhere
    s[4] = -s[4].abs()  # no positive part: left out of positive-spread only
    s.requires_grad_(True)
    value = saliency_regulariser(s, form)
    part = (lambda t: t.clamp(min=0)) if form == "positive-spread" else (lambda t: t)
    loop, kept = [], []
    for i, m in enumerate(s):
        a = part(m.detach()).flatten().numpy()
        if not a.any():
            continue
        kept.append(i)
        loop.append(abs(a).sum() / (math.sqrt(a.size) * math.sqrt((a**2).sum())))
    assert kept == ([0, 2, 3] if form == "positive-spread" else [0, 2, 3, 4])
    assert float(value) == pytest.approx(sum(loop) / len(loop))
    assert loop[1] == pytest.approx(1 / math.sqrt(30)) and loop[2] == pytest.approx(1.0)
    assert float(saliency_regulariser(40 * s, form)) == pytest.approx(float(value))
    value.backward()
    reference = s.detach().clone().requires_grad_(True)
    maps = [part(reference[i]).flatten() for i in kept]
    (sum(k.abs().sum() / (math.sqrt(30) * k.pow(2).sum().sqrt()) for k in maps) / len(maps)).backward()
    assert torch.allclose(s.grad, reference.grad)
    assert torch.equal(s.grad[1], torch.zeros_like(s.grad[1]))
    assert float(saliency_regulariser(torch.zeros(2, 1, 3, 3), form)) == 0.0


def test_derangement_has_no_fixed_point():
    g = torch.Generator().manual_seed(0)
    for n in (2, 3, 8):
        for _ in range(20):
            perm = derangement(n, g)
            assert sorted(perm.tolist()) == list(range(n))
            assert not torch.any(perm == torch.arange(n))
    assert derangement(1).tolist() == [0]
    seeded = [derangement(6, torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(*seeded)


def test_auto_weights_follow_running_magnitudes_and_boost():
    cfg = PPIConfig(alpha="auto", beta=0.5, gamma=2.0, auto_momentum=0.5, reg_boost=100.0, reg_boost_epoch=20)
    weights = LossWeights(cfg)
    assert weights.weight("con", 0) == 1.0  # nothing seen yet
    weights.update({"cls": 1.0, "con": 4.0})
    weights.update({"cls": 3.0, "con": 8.0})
    ema_cls, ema_con = 0.5 * 1.0 + 0.5 * 3.0, 0.5 * 4.0 + 0.5 * 8.0
    assert weights.weight("con", 0) == pytest.approx(ema_cls / ema_con)
    assert weights.weight("ad", 0) == 2.0
    assert weights.weight("reg", 19) == 0.5 and weights.weight("reg", 20) == 50.0
    restored = LossWeights(cfg)
    restored.load_state_dict(weights.state_dict())
    assert restored.weight("con", 3) == weights.weight("con", 3)


def test_fade_in_grows_every_ppi_weight_linearly_from_the_start_epoch():
    cfg = PPIConfig(alpha=0.8, beta=0.2, gamma=0.0, keep=0.5, invariance=0.3, delta=0.1, start_epoch=3, fade_in=4,
                    reg_boost=10.0, reg_boost_epoch=5)
    weights = LossWeights(cfg)
    for epoch, share in [(3, 0.25), (4, 0.5), (5, 0.75), (6, 1.0), (20, 1.0)]:
        assert weights.fade(epoch) == share
        assert weights.weight("con", epoch) == pytest.approx(0.8 * share)
        assert weights.weight("keep", epoch) == pytest.approx(0.5 * share)
        assert weights.weight("invariance", epoch) == pytest.approx(0.3 * share)
        assert weights.weight("delta", epoch) == pytest.approx(0.1 * share)
        assert weights.weight("reg", epoch) == pytest.approx(0.2 * share * (10.0 if epoch >= 5 else 1.0))
        assert weights.weight("ad", epoch) == 0.0
    for off in (0, 1):  # no fade: the full weight from the first PPI epoch
        plain = LossWeights(PPIConfig(alpha=0.8, keep=0.5, start_epoch=3, fade_in=off))
        assert plain.weight("con", 3) == 0.8 and plain.weight("keep", 3) == 0.5


def test_auto_weight_is_capped_when_a_term_collapses():
    weights = LossWeights(PPIConfig(beta="auto", auto_momentum=0.0, auto_max=50.0))
    weights.update({"cls": 0.7, "reg": 0.07})
    assert weights.weight("reg", 0) == pytest.approx(10.0)  # below the cap: the plain ratio
    weights.update({"cls": 0.7, "reg": 1e-5})  # saliency suppressed: the ratio would be 70000
    assert weights.weight("reg", 0) == 50.0


def _tiny(num_classes=1, dropout=0.0):
    torch.manual_seed(0)
    return build_model(ModelConfig(name="tiny", in_channels=1, num_classes=num_classes, input_size=16,
                                   dropout=dropout)).train()


def test_intervention_bookkeeping_binary():
    model = _tiny()
    x = torch.rand(4, 1, 16, 16)
    y = torch.tensor([1.0, 0.0, 1.0, 0.0])
    cfg = PPIConfig(saliency="gradient", mask="soft", create_graph=False)
    iv = pseudo_intervention(model, x, y, cfg, binary=True, generator=torch.Generator().manual_seed(1))
    raw = saliency_map(model, x, 0, method="gradient")
    assert torch.allclose(iv.saliency, raw * torch.tensor([1.0, -1.0, 1.0, -1.0]).view(4, 1, 1, 1))
    assert iv.rows.tolist() == [0, 2] and iv.inputs.shape == (2 + 2, 1, 16, 16)
    for k, row in enumerate(iv.rows.tolist()):
        assert torch.allclose(iv.inputs[k], (1 - iv.mask[row]) * x[row])
    # adversarial_on auto with α > 0: L_ad on the L_con rows, masks from any other image
    assert iv.ad_rows.tolist() == [0, 2]
    for k, (i, j) in enumerate(zip(iv.ad_rows.tolist(), iv.donors.tolist(), strict=True)):
        assert i != j and torch.allclose(iv.inputs[2 + k], (1 - iv.mask[j]) * x[i])
    both = pseudo_intervention(model, x, y, dataclasses.replace(cfg, adversarial_masks="contrast"), binary=True)
    assert both.ad_rows.tolist() == [0, 2] and both.donors.tolist() == [2, 0]  # the positives swap masks
    for changed in ({"adversarial_on": "all"}, {"adversarial_on": "auto", "alpha": 0.0}):
        every_ad = pseudo_intervention(model, x, y, dataclasses.replace(cfg, **changed), binary=True)
        assert every_ad.ad_rows.tolist() == [0, 1, 2, 3] and sorted(every_ad.donors.tolist()) == [0, 1, 2, 3]
        assert torch.all(every_ad.ad_rows != every_ad.donors), changed  # a derangement
        assert every_ad.inputs.shape == (2 + 4, 1, 16, 16)
    every = pseudo_intervention(model, x, y, dataclasses.replace(cfg, contrast_on="all"), binary=True)
    assert every.rows.tolist() == [0, 1, 2, 3] and every.ad_rows.tolist() == [0, 1, 2, 3]
    negatives = pseudo_intervention(model, x, torch.zeros(4), cfg, binary=True)  # no x*: L_ad on every image
    assert negatives.rows.numel() == 0 and negatives.ad_rows.tolist() == [0, 1, 2, 3]
    alone = pseudo_intervention(model, x, torch.tensor([0.0, 1.0, 0.0, 0.0]),
                                dataclasses.replace(cfg, adversarial_masks="contrast"), binary=True)
    assert alone.ad_rows.tolist() == [1] and alone.donors.item() != 1  # its own mask only: any other image's
    lesions = pseudo_intervention(model, x, y, dataclasses.replace(cfg, adversarial_masks="contrast",
                                                                   adversarial_on="all"), binary=True)
    assert set(lesions.donors.tolist()) <= {0, 2} and torch.all(lesions.ad_rows != lesions.donors)


def test_mask_donors_draw_from_the_pool_never_self():
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        n = int(torch.randint(2, 8, (1,), generator=g))
        pool = torch.nonzero(torch.rand(n, generator=g) < 0.5).flatten()
        receivers = torch.nonzero(torch.rand(n, generator=g) < 0.6).flatten()
        for given in (None, receivers, pool):
            rows, donors = mask_donors(n, pool, g, receivers=given)
            wanted = range(n) if given is None else given.tolist()
            assert torch.all(rows != donors) and set(donors.tolist()) <= set(pool.tolist())
            assert rows.tolist() == [i for i in wanted if set(pool.tolist()) - {i}]
        if pool.numel() >= 2:  # receivers = pool: a derangement of the pool, each mask lent once
            rows, donors = mask_donors(n, pool, g, receivers=pool)
            assert sorted(donors.tolist()) == pool.tolist()


def test_intervention_multiclass_uses_true_class_and_all_rows():
    model = _tiny(num_classes=3)
    x, y = torch.rand(3, 1, 16, 16), torch.tensor([2, 0, 1])
    iv = pseudo_intervention(model, x, y, PPIConfig(saliency="wbp", create_graph=False), binary=False)
    assert torch.allclose(iv.saliency, saliency_map(model, x, y, method="wbp"), atol=1e-6)
    assert iv.rows.tolist() == [0, 1, 2]


@pytest.mark.parametrize("create_graph", [True, False])
def test_regulariser_reaches_parameters_only_with_create_graph(create_graph):
    model = _tiny()
    x, y = torch.rand(4, 1, 16, 16), torch.tensor([1.0, 0.0, 1.0, 1.0])
    iv = pseudo_intervention(model, x, y, PPIConfig(saliency="wbp", create_graph=create_graph), binary=True)
    reg = saliency_regulariser(iv.saliency)
    params = [p for p in model.parameters() if p.requires_grad]
    if create_graph:
        grads = torch.autograd.grad(reg, params, allow_unused=True)
        conv = dict(zip([n for n, _ in model.named_parameters()], grads, strict=True))["body.block1.0.weight"]
        assert conv is not None and conv.abs().sum() > 0
    else:
        assert not reg.requires_grad
        with pytest.raises(RuntimeError):
            torch.autograd.grad(reg, params)


def test_context_managers_restore_modes_and_statistics():
    model = _tiny(dropout=0.5)
    before = model.body.block1[1].running_mean.clone()
    with dropout_off(model):
        assert not model.head[0].training and model.body.block1[1].training
    assert model.head[0].training
    bright = torch.rand(4, 1, 16, 16) * 5
    for mode in ("running", "batch"):
        with dropout_off(model), intervened_normalisation(model, mode):
            out = model(bright)
            assert model.body.block1[1].training == (mode == "batch")
        assert torch.equal(model.body.block1[1].running_mean, before) and model.body.block1[1].momentum == 0.1
        assert model.body.block1[1].training
        model.eval()
        with torch.no_grad():
            expected = model(bright)  # the running statistics, as at test time
        model.train()
        assert torch.allclose(out, expected) == (mode == "running")
    model(torch.rand(4, 1, 16, 16) * 5)
    assert not torch.equal(model.body.block1[1].running_mean, before)


def test_piecewise_linear_backward_keeps_the_second_derivative_exact():
    from ppi_cli.autograd.double_backward import piecewise_linear_backward

    torch.manual_seed(0)
    net = torch.nn.Sequential(  # every layer the mode touches: conv, ReLU (in place too), max-, avg-, adaptive avg-pool
        torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(3, 2, 1),
        torch.nn.Conv2d(4, 4, 3, stride=2, padding=2, dilation=2, groups=2, padding_mode="reflect"),
        torch.nn.Conv2d(4, 4, 3, padding=1, bias=False), torch.nn.BatchNorm2d(4), torch.nn.ReLU(inplace=True),
        torch.nn.AvgPool2d(2), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(4, 3)).double().train()
    x = torch.rand(3, 2, 12, 12, dtype=torch.float64)
    params = list(net.parameters())
    results = []
    for cheap in (False, True):
        with piecewise_linear_backward() if cheap else torch.enable_grad():
            s = saliency_map(net, x, torch.tensor([0, 2, 1]), method="wbp", create_graph=True)
        grads = torch.autograd.grad((s**2).mean(), params, allow_unused=True)
        results.append((s, [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]))
        nodes = _graph_node_names(s)
        # autograd's in-place ReLU keeps its output in the map's graph (its double backward sends zeros
        # into the forward graph through it); the mode's does not, in place or not
        assert ("ReluBackward0" in nodes) != cheap, sorted(nodes)
        if cheap:
            assert "_ConvInputGradBackward" in nodes and "_ReluBackward" in nodes, sorted(nodes)
    (s0, g0), (s1, g1) = results
    assert torch.allclose(s0, s1)
    for a, b in zip(g0, g1, strict=True):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-14)
    assert all(g.abs().sum() > 0 for g in g1[:2])  # the first conv still learns from the map


def _graph_node_names(t: torch.Tensor) -> set[str]:
    """Class names of every autograd node `t` depends on."""
    seen, stack = set(), [t.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return {type(node).__name__ for node in seen}


def test_outside_evidence_by_hand():
    from ppi_cli.ppi.losses import outside_evidence

    s = torch.tensor([[[[1.0, -2.0], [3.0, 0.5]]], [[[0.0, 1.0], [1.0, 1.0]]]], requires_grad=True)  # (2, 1, 2, 2)
    t = torch.tensor([[[[0.0, 0.0], [1.0, 0.0]]], [[[0.5, 0.5], [0.5, 0.5]]]])
    value = outside_evidence(s, t)
    # image 0: outside the mask 1 − 2 + 0.5 = −0.5; image 1: half of 3 = 1.5; mean of squares 1.25
    assert float(value) == pytest.approx(1.25)
    value.backward()
    assert torch.allclose(s.grad[0, 0], torch.tensor([[-0.5, -0.5], [0.0, -0.5]]))  # d/ds of (Σ(1−T)s)²/2
    assert torch.allclose(s.grad[1, 0], torch.full((2, 2), 0.75))


def test_outside_shares_by_hand():
    """`magnitude` and `positive` are shares of the map outside its mask: no cancelling, no scale."""
    from ppi_cli.ppi.losses import outside_evidence

    s = torch.tensor([[[[1.0, -2.0], [3.0, 0.5]]], [[[0.0, 1.0], [1.0, 2.0]]]], requires_grad=True)
    t = torch.tensor([[[[0.0, 0.0], [1.0, 0.0]]], [[[1.0, 1.0], [0.0, 0.0]]]])
    # magnitude: image 0 outside |1| + |−2| + |0.5| = 3.5 of 6.5; image 1 outside 1 + 2 = 3 of 4
    assert float(outside_evidence(s, t, "magnitude")) == pytest.approx((3.5 / 6.5 + 3 / 4) / 2)
    # positive part: image 0 outside 1 + 0.5 = 1.5 of 4.5 (the −2 counts for neither); image 1 as above
    value = outside_evidence(s, t, "positive")
    assert float(value) == pytest.approx((1.5 / 4.5 + 3 / 4) / 2)
    assert float(outside_evidence(10 * s, t, "positive")) == pytest.approx(float(value))  # scale-free
    value.backward()
    # d/ds of out/total for image 0 (halved by the mean): outside (1/4.5 − 1.5/4.5²)/2, inside −1.5/4.5²/2, negative 0
    outside, inside = (1 / 4.5 - 1.5 / 4.5**2) / 2, -1.5 / 4.5**2 / 2
    assert torch.allclose(s.grad[0, 0], torch.tensor([[outside, 0.0], [inside, outside]]))
    # a map with no positive part is left out of the mean; none at all gives 0 with a gradient path
    none = -torch.ones(1, 1, 2, 2, requires_grad=True)
    assert float(outside_evidence(none, t[:1], "positive")) == 0.0
    mixed = torch.cat([none, s[:1]]).detach()
    assert float(outside_evidence(mixed, torch.cat([t[:1], t[:1]]), "positive")) == pytest.approx(1.5 / 4.5)


def test_the_cheaper_double_backward_under_autocast_saves_one_dtype_and_matches_autograds_own():
    """Under autocast the convolution's Function gets autocast's casts first: every tensor it saves for the
    backward is bfloat16 (CUDA refuses a convolution backward over bfloat16 gradients and float32 weights), and
    the PPI-style loss (output plus the map's mean magnitude, create_graph) and its weight gradients equal
    autograd's own under the same autocast."""
    import torch.nn as nn

    from ppi_cli.autograd.double_backward import piecewise_linear_backward

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1))
    x = torch.rand(2, 1, 8, 8, requires_grad=True)
    saved: list[torch.dtype] = []

    def run(cheaper: bool) -> tuple[float, list[torch.Tensor]]:
        net.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            if cheaper:
                with piecewise_linear_backward(), torch.autograd.graph.saved_tensors_hooks(
                        lambda t: saved.append(t.dtype) or t, lambda t: t):
                    out = net(x).float().sum()
            else:
                out = net(x).float().sum()
            (s,) = torch.autograd.grad(out, x, create_graph=True)
            loss = out + s.abs().mean()
        loss.backward()
        return float(loss.detach()), [p.grad.clone() for p in net.parameters()]

    own, cheaper = run(False), run(True)
    floats = [d for d in saved if d.is_floating_point]
    assert floats and set(floats) == {torch.bfloat16}  # before the cast: the convolutions' float32 x and weight
    assert own[0] == cheaper[0]
    assert all(torch.equal(a, b) for a, b in zip(own[1], cheaper[1], strict=True))


@pytest.mark.filterwarnings("ignore:torch.is_autocast_cpu_enabled:DeprecationWarning",
                            "ignore:torch.get_autocast_cpu_dtype:DeprecationWarning")
def test_the_autocast_query_falls_back_to_the_per_device_calls_of_older_torch(monkeypatch):
    """torch 2.2-2.3 (the project's range) have no `get_autocast_dtype(device)`: the cast the cheaper convolution
    makes then comes from the per-device calls, so the CUDA fix holds there too; off autocast, or on a device
    those calls do not cover, nothing is cast."""
    from ppi_cli.autograd.double_backward import _autocast_dtype

    with torch.autocast("cpu", dtype=torch.bfloat16):
        current = _autocast_dtype("cpu")
        monkeypatch.delattr(torch, "get_autocast_dtype")  # inside: autocast itself calls it on entry and exit
        legacy, other = _autocast_dtype("cpu"), _autocast_dtype("mps")
        monkeypatch.undo()
    assert legacy == current == torch.bfloat16
    assert other is None
    monkeypatch.delattr(torch, "get_autocast_dtype")
    assert _autocast_dtype("cpu") is None


def test_an_out_form_with_l_out_off_is_refused_at_load():
    from ppi_cli.config.recipe import load_recipe
    from ppi_cli.errors import ConfigError

    assert load_recipe("ga-ppi-wbp-cpu").ppi.delta == 0
    with pytest.raises(ConfigError, match="ppi.out_form 'positive' chooses L_out's form, and ppi.delta is 0"):
        load_recipe("ga-ppi-wbp-cpu", {"ppi.out_form": "positive"})
    recipe = load_recipe("ga-ppi-wbp-cpu", {"ppi.out_form": "positive", "ppi.delta": 1})
    assert (recipe.ppi.out_form, recipe.ppi.delta) == ("positive", 1)


def test_an_out_coverage_with_l_out_off_is_refused_at_load():
    from ppi_cli.config.recipe import load_recipe
    from ppi_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="ppi.out_coverage '0.03' chooses L_out's mask, and ppi.delta is 0"):
        load_recipe("ga-ppi-wbp-cpu", {"ppi.out_coverage": 0.03})
    recipe = load_recipe("ga-ppi-wbp-cpu", {"ppi.out_coverage": 0.03, "ppi.delta": 2})
    assert (recipe.ppi.out_coverage, recipe.ppi.delta) == (0.03, 2)


def test_evidence_masks_take_the_top_share_of_the_positive_part_after_smoothing():
    """L_out's own mask: negative evidence, however large, is never chosen; the budget is the share of pixels;
    smoothing picks the pixels around a cluster of evidence over a lone peak of the raw map."""
    from ppi_cli.ppi.masks import evidence_mask

    s = torch.zeros(2, 1, 9, 9)
    s[0, 0, 0, 0] = -9.0
    s[0, 0, 4, 4] = 1.0
    s[1, 0, 0, 8] = 3.0  # a lone peak
    s[1, 0, 5:8, 1:4] = 1.0  # a cluster of lesser evidence
    raw = evidence_mask(s, 1 / 81)
    assert raw.shape == s.shape and raw.sum(dim=(1, 2, 3)).tolist() == [1.0, 1.0]
    assert raw[0, 0, 4, 4] == 1 and raw[0, 0, 0, 0] == 0
    assert raw[1, 0, 0, 8] == 1
    smooth = evidence_mask(s, 9 / 81, smooth=1.0)
    assert smooth.sum(dim=(1, 2, 3)).tolist() == [9.0, 9.0]
    assert smooth[1, 0, 6, 2] == 1 and smooth[1, 0, 0, 8] == 0
    assert torch.equal(evidence_mask(s, 9 / 81, smooth=1.0), smooth)


def test_a_reg_form_with_l_reg_off_is_refused_at_load():
    from ppi_cli.config.recipe import load_recipe
    from ppi_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="ppi.reg_form 'spread' chooses L_reg's form, and ppi.beta is 0"):
        load_recipe("ga-ppi-wbp-cpu", {"ppi.reg_form": "spread", "ppi.beta": 0})
    recipe = load_recipe("ga-ppi-wbp-cpu", {"ppi.reg_form": "spread", "ppi.beta": 1})
    assert (recipe.ppi.reg_form, recipe.ppi.beta) == ("spread", 1)
    assert load_recipe("ga-ppi-wbp-cpu").ppi.reg_form == "l1"


def test_the_counterfactual_hinge_is_the_drop_in_log_odds_below_the_clean_score_and_nothing_above():
    from ppi_cli.ppi.losses import counterfactual_hinge, log_odds

    z = torch.tensor([[2.0], [-1.0], [0.5], [3.0]], requires_grad=True)
    y = torch.tensor([1.0, 0.0, 1.0, 0.0])
    ref = torch.tensor([[3.0], [-0.5], [0.0], [-2.0]])
    # log p(y)/(1 − p(y)): z for a positive, −z for a negative
    assert log_odds(z, y).tolist() == pytest.approx([2.0, 1.0, 0.5, -3.0])
    p = torch.sigmoid(z[:, 0].detach())
    p_y = torch.where(y > 0, p, 1 - p)
    assert log_odds(z, y).detach() == pytest.approx(torch.log(p_y / (1 - p_y)))
    # by hand: row 0 drops 3 → 2 (1), row 1 rises 0.5 → 1 (0), row 2 rises 0 → 0.5 (0), row 3 drops 2 → −3 (5)
    loss = counterfactual_hinge(z, y, ref)
    assert float(loss.detach()) == pytest.approx((1 + 0 + 0 + 5) / 4)
    loss.backward()
    assert z.grad[:, 0].tolist() == pytest.approx([-0.25, 0.0, 0.0, 0.25])  # rows above their score get no push
    many = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 4.0]])
    labels = torch.tensor([1, 0])
    expect = [2 - math.log(math.exp(1) + 1), 0 - math.log(1 + math.exp(4))]
    assert log_odds(many, labels).tolist() == pytest.approx(expect)
    surer = many.clone()
    surer[0, 1] += 1.0  # row 0's clean image one logit surer of its class; row 1's the same as its counterfactual
    assert float(counterfactual_hinge(many, labels, surer)) == pytest.approx((3 - math.log(math.e + 1) - expect[0]) / 2)
    assert float(counterfactual_hinge(z[:0], y[:0], ref[:0]).detach()) == 0.0
