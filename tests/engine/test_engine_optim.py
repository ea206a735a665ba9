# SPDX-License-Identifier: MIT
"""Optimiser groups, schedules, slice sampling, predictions and the synthetic task's design."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ppi_cli.config.recipe import DataConfig, ModelConfig, MultiviewConfig, OptimConfig, ScheduleConfig, load_recipe
from ppi_cli.data.bscans import sample_bscans
from ppi_cli.data.datasets import build_dataset, dataset_manifest
from ppi_cli.data.synth.dataset import CUE_SHIFT, generate
from ppi_cli.engine.evaluate import Predictions, predict, validation_metric
from ppi_cli.engine.optim import attention_bias, build_optimizer, build_scheduler, grad_norm
from ppi_cli.models import build_model


def test_backbone_and_head_groups_decay_on_their_own_steps():
    model = build_model(ModelConfig(name="multiview", backbone="tiny", input_size=16))
    opt = build_optimizer(model, OptimConfig(name="adam", lr=1e-3, backbone_lr=1e-4))
    groups = {g["name"]: g for g in opt.param_groups}
    backbone = {id(p) for p in model.slice_classifier.body.parameters()}
    assert {id(p) for p in groups["backbone"]["params"]} == backbone
    assert id(model.attention.weight) in {id(p) for p in groups["heads"]["params"]}
    sched = build_scheduler(opt, ScheduleConfig(step_size=3, factor=0.5, backbone_step_size=2))
    lrs = []
    for _ in range(4):
        lrs.append((groups["backbone"]["lr"], groups["heads"]["lr"]))
        opt.step()
        sched.step()
    assert lrs == [(1e-4, 1e-3), (1e-4, 1e-3), (5e-5, 1e-3), (5e-5, 5e-4)]
    sgd = build_optimizer(model, OptimConfig(name="sgd", lr=0.01))
    assert len(sgd.param_groups) == 1 and sgd.defaults["momentum"] == 0.9


def test_grad_norm_is_the_norm_of_every_gradient_and_reads_through_the_loss_scale():
    model = build_model(ModelConfig(name="multiview", backbone="tiny", input_size=16))
    opt = build_optimizer(model, OptimConfig(name="adam", lr=1e-3, backbone_lr=1e-4))  # two groups
    model.eval()  # no dropout: the two backward passes below see the same function
    x, positions = torch.rand(2, 3, 1, 16, 16), torch.tensor([[0, 4, 9], [2, 5, 7]])
    model(x, positions).square().sum().backward()
    by_hand = math.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in model.parameters() if p.grad is not None))
    assert grad_norm(opt) == pytest.approx(by_hand, rel=1e-5)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    kept = [g.clone() for g in grads]
    grad_norm(opt)
    assert all(torch.equal(a, b) for a, b in zip(kept, grads, strict=True))  # measured only
    # a float16 loss scale: the gradients come 2^10 times larger, the norm is read in the loss's units
    opt.zero_grad()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    scaler.scale(model(x, positions).square().sum()).backward()
    assert grad_norm(opt, scaler) == pytest.approx(by_hand, rel=1e-4)
    opt.zero_grad(set_to_none=True)
    assert grad_norm(opt) == 0.0  # no gradient yet: nothing to apply


def test_attention_bias_ramps_down_then_stays():
    cfg = MultiviewConfig(bias_start=4.0, bias_end=1.0, bias_epochs=3)
    assert [attention_bias(e, cfg) for e in range(5)] == [4.0, 3.0, 2.0, 1.0, 1.0]
    assert attention_bias(0, MultiviewConfig(bias_start=4.0, bias_end=1.0, bias_epochs=0)) == 1.0


def test_bscans_are_sampled_once_in_order_with_their_positions(tmp_path):
    picked = sample_bscans(6, 3, torch.Generator().manual_seed(0))
    assert picked.shape == (3,) and torch.all(picked[1:] > picked[:-1])  # B-scan order kept
    assert torch.equal(sample_bscans(4, 6), torch.arange(4))  # fewer B-scans than K: all of them
    path = tmp_path / "volumes.yaml"
    path.write_text("extends: synthetic-ppi-wbp-cpu\n"
                    "data: {synthetic_slices: 6, crop: 16, flips: false, noise_std: 0}\n"
                    "model: {name: multiview, backbone: tiny, input_size: 16, multiview: {slices_per_volume: 3}}\n")
    recipe = load_recipe(str(path))
    train = build_dataset("synthetic", None, [0, 1], recipe, train=True, seed=0)
    full = build_dataset("synthetic", None, [0, 1], recipe, train=False)
    for i in range(2):
        sample, whole = train[i], full[i]
        assert sample["image"].shape[0] == 3 and torch.all(sample["positions"][1:] > sample["positions"][:-1])
        assert torch.equal(sample["image"], whole["image"][sample["positions"]])  # each B-scan with its position
    assert full[0]["image"].shape[0] == 6  # evaluation: every B-scan


def test_synthetic_task_plants_cue_by_site():
    cfg = DataConfig(crop=16, synthetic_size=400)
    frame = dataset_manifest("synthetic", None, cfg)
    rates = frame.groupby(["site", "label"]).cue.mean()
    assert rates[("A", 1)] > 0.8 and rates[("A", 0)] < 0.2 and abs(rates[("B", 1)] - rates[("B", 0)]) < 0.25
    assert frame.subject_id.is_unique and set(frame.label) == {0, 1}
    data = generate(400, 16)
    cue, label = frame.cue.to_numpy() == 1, frame.label.to_numpy() == 1
    brightness = data.images.mean(axis=(1, 2))
    shift = brightness[cue & ~label].mean() - brightness[~cue & ~label].mean()
    assert shift == pytest.approx(CUE_SHIFT, abs=0.01)  # the cue: the whole image brighter
    ds = build_dataset("synthetic", None, np.arange(400), cfg, train=False)
    positive, negative = ds[int(np.flatnonzero(label)[0])], ds[int(np.flatnonzero(~label)[0])]
    assert positive["mask"].sum() > 0 and negative["mask"].sum() == 0
    inside = positive["image"][positive["mask"] > 0].mean() - positive["image"][positive["mask"] == 0].mean()
    assert inside > 0.02  # the blob is brighter than its surroundings
    unasked = build_dataset("synthetic", None, np.arange(400), cfg, train=False, regions=False)
    sample = unasked[int(np.flatnonzero(label)[0])]
    assert "mask" not in sample and torch.equal(sample["image"], positive["image"])


def test_predict_and_metrics():
    model = build_model(ModelConfig(name="tiny", input_size=16))
    ds = build_dataset("synthetic", None, [3, 1, 2, 0], DataConfig(crop=16, synthetic_size=16), train=False)
    model.train()
    pred = predict(model, ds, batch_size=3)
    assert model.training  # mode restored
    assert pred.indices.tolist() == [3, 1, 2, 0] and pred.scores.shape == (4,)
    labels = np.array([0, 0, 1, 1])
    naive_auc = np.mean([float(p > n) + 0.5 * float(p == n) for p in (0.8, 0.3) for n in (0.2, 0.4)])
    scores = Predictions(np.array([0.2, 0.4, 0.8, 0.3]), labels, np.arange(4))
    assert validation_metric(scores, "auc") == pytest.approx(naive_auc)
    assert validation_metric(scores, "accuracy") == pytest.approx(0.75)
    assert math.isnan(validation_metric(Predictions(np.ones(2), np.ones(2), np.arange(2)), "auc"))
    multi = Predictions(np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.1, 0.4]]), np.array([0, 1, 2]),
                        np.arange(3))
    assert validation_metric(multi, "accuracy") == pytest.approx(2 / 3)
