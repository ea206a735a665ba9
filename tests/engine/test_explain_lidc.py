# SPDX-License-Identifier: MIT
"""explain and segment-eval on a real LIDC cache (`synth lidc` through `prepare lidc`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import checkpoint_2d

from ppi_cli.data.cache import load_array
from ppi_cli.data.explain_input import load_input
from ppi_cli.data.lidc.dataset import preprocess_patch
from ppi_cli.data.lidc.prepare import LidcPrepareConfig, prepare_lidc
from ppi_cli.data.synth.lidc import SynthLidcConfig, synth_lidc
from ppi_cli.engine.explain_inputs import InputSpec, prepare_image
from ppi_cli.models import load_model
from ppi_cli.saliency import saliency_map

SIDE = 32  # the model's evaluation crop, inside the cache's 48-pixel patches


@pytest.fixture(scope="module")
def lidc(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("lidc")
    raw = synth_lidc(SynthLidcConfig(out=root / "raw", patients=1, size=64, slices=8, seed=2))
    prepare_lidc(LidcPrepareConfig(root=raw.root, out=root / "cache", crop=48))
    return raw.root, root / "cache", checkpoint_2d(root / "lidc.pt", side=SIDE)


def test_explain_with_center_sees_exactly_the_cached_evaluation_view(lidc):
    """--center at a lesion's centroid on the raw slice gives the patch `prepare lidc` + evaluation give."""
    raw, cache, ckpt = lidc
    manifest = pd.read_csv(cache / "manifest.csv")
    images = load_array(cache, "images.npy")
    spec = InputSpec.from_meta(load_model(ckpt)[1], ckpt)
    for row in (0, len(manifest) - 1):
        entry = manifest.iloc[row]
        source = next(p for p in (raw / entry["file"], raw.parent / entry["file"]) if p.is_file())
        loaded = load_input(source)
        prepared = prepare_image(loaded, spec, center=(entry["centre_row"], entry["centre_col"]))
        expected = preprocess_patch(np.asarray(images[row], np.float32), spec.window, SIDE)
        # The manifest rounds the centroid to 1/1000 pixel; the cache was cut at the exact one.
        np.testing.assert_allclose(prepared.tensor.numpy(), expected.numpy(), atol=2e-3)


def test_segment_eval_on_lidc_scores_the_union_of_reader_masks(cli, tmp_path, lidc):
    _, cache, ckpt = lidc
    out = tmp_path / "seg"
    result = cli("segment-eval", "-m", ckpt, "--data", cache, "-o", out, "--methods", "wbp,gradcam", "--limit", "4")
    assert result.exit_code == 0, result.stderr
    table = pd.read_csv(out / "localisation.csv").set_index("metric")
    assert list(table.columns) == ["wbp", "gradcam"] and table.loc["samples", "wbp"] == 4
    first = pd.read_csv(out / "per_sample.csv").iloc[0]
    manifest = pd.read_csv(cache / "manifest.csv")
    row = int(np.flatnonzero(manifest["sample_id"] == first["sample"])[0])
    union = load_array(cache, "masks.npy")[row].any(axis=0)  # (48, 48) any reader
    mask = union[8:40, 8:40]  # the centre 32 x 32, as evaluation crops
    x = preprocess_patch(np.asarray(load_array(cache, "images.npy")[row], np.float32), (-1000.0, 400.0), SIDE)[None]
    model, _ = load_model(ckpt)
    s = np.clip(saliency_map(model, x, 0, method="wbp")[0, 0].numpy(), 0, None)
    assert mask.any() and first["epg_all"] == pytest.approx(s[mask].sum() / s.sum(), rel=1e-5)
    with torch.no_grad():
        assert first["score_f0"] == pytest.approx(float(torch.sigmoid(model(x)[0, 0])), rel=1e-5)
