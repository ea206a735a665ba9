# SPDX-License-Identifier: MIT
"""`eval.select_on: looks`: validation images scored again in a look of the other class, and epochs ranked on both."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ppi_cli.checkpoint import load_checkpoint
from ppi_cli.config.recipe import load_recipe
from ppi_cli.data.datasets import build_dataset
from ppi_cli.engine.evaluate import DONOR_POOL, predict, predict_in_other_looks
from ppi_cli.engine.study import load_study_data, study_split
from ppi_cli.engine.trainer import fit
from ppi_cli.errors import ConfigError
from ppi_cli.models import build_model, load_model
from ppi_cli.reports.metrics import youden_point

SMALL = """\
extends: synthetic-ppi-wbp-cpu
model: {input_size: 16}
data: {crop: 16, synthetic_size: 40, batch_size: 16}
schedule: {epochs: 2}
eval: {select_on: looks, select: loss}
ppi: {swap_look: columns}
"""


def _column_look(image: torch.Tensor) -> torch.Tensor:
    """The mean of each column over the rows, written out: what `image_look(..., "columns")` should be."""
    h = image.shape[-2]
    total = torch.zeros_like(image[..., :1, :])
    for row in range(h):
        total = total + image[..., row:row + 1, :]
    return (total / h).clamp_min(0.02)


def _recipe(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    return load_recipe(path)


def _split(recipe):
    return study_split(load_study_data(recipe, None), fold=None, folds=recipe.eval.folds, seed=recipe.seed,
                       val_fraction=recipe.data.val_fraction)


def _log_loss(labels: np.ndarray, scores: np.ndarray) -> float:
    p = np.clip(scores, 1e-7, 1 - 1e-7)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def test_each_sample_is_scored_in_the_column_look_of_a_donor_of_the_other_class(tmp_path, one_thread):
    recipe = _recipe(tmp_path)
    split = _split(recipe)
    dataset = build_dataset("synthetic", None, split.val, recipe.data, train=False)
    torch.manual_seed(0)
    model = build_model(recipe.model)
    got = predict_in_other_looks(model, dataset, kind="columns", sigma=8.0, batch_size=3)  # batches cross donors
    samples = [dataset[i] for i in range(len(dataset))]
    labels = [int(s["label"]) for s in samples]
    assert 0 < sum(labels) < len(labels)
    donors = {c: [s["image"].float() for s in samples if int(s["label"]) == c][:DONOR_POOL] for c in (0, 1)}
    want = []
    model.eval()
    with torch.no_grad():
        for i, sample in enumerate(samples):
            others = donors[1 - labels[i]]
            donor, x = others[i % len(others)], sample["image"].float()
            ratio = (_column_look(donor) / _column_look(x)).clamp(0.25, 4.0)
            relooked = (x * ratio).clamp(0.0, 1.0)
            want.append(torch.sigmoid(model(relooked[None])[0, 0]).item())
    assert np.allclose(got.scores, want, atol=1e-6)
    assert got.labels.tolist() == labels and np.array_equal(got.indices, split.val)
    clean = predict(model, dataset)
    assert not np.allclose(got.scores, clean.scores, atol=1e-4)  # the looks changed what the model saw


def test_fit_ranks_epochs_on_clean_and_relooked_images_and_thresholds_on_the_clean(tmp_path, one_thread):
    recipe = _recipe(tmp_path)
    split = _split(recipe)
    result = fit(recipe, cache_dir=None, split=split, out_dir=tmp_path / "run", device="cpu")
    metrics = pd.read_csv(result.metrics_csv)
    model, meta = load_model(tmp_path / "run" / "last.pt")
    dataset = build_dataset("synthetic", None, split.val, recipe.data, train=False)
    clean = predict(model, dataset)
    looks = predict_in_other_looks(model, dataset, kind="columns", sigma=recipe.ppi.look_sigma)
    labels = np.concatenate([clean.labels, looks.labels])
    scores = np.concatenate([clean.scores, looks.scores])
    # the last epoch's validation loss is over both halves; its threshold is Youden's J of the clean half alone
    assert metrics["val_loss"].iloc[-1] == pytest.approx(_log_loss(labels, scores), abs=1e-6)
    assert metrics["val_loss"].iloc[-1] != pytest.approx(_log_loss(clean.labels, clean.scores), abs=1e-4)
    assert meta["threshold"]["value"] == pytest.approx(youden_point(clean.labels, clean.scores)[0])
    assert load_checkpoint(result.best_checkpoint)["meta"]["epoch"] == result.best_epoch


@pytest.mark.parametrize("ppi_enabled", [True, False])
def test_select_on_looks_without_a_look_is_refused_at_load_for_baselines_too(ppi_enabled):
    with pytest.raises(ConfigError, match="eval.select_on: looks puts validation images in each other's look") as err:
        load_recipe("ga-ppi-wbp-cpu", {"eval.select_on": "looks", "ppi.swap_look": "none",
                                       "ppi.enabled": ppi_enabled, "ppi.fill": "zero"})
    assert "\n" not in str(err.value.message)
    assert load_recipe("ga-ppi-wbp-cpu", {"eval.select_on": "looks"}).eval.select_on == "looks"
