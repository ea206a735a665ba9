# SPDX-License-Identifier: MIT
"""`ppi segment-eval` on a prepared synthetic GA cache: tables, wiring of masks to samples, compare, resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import checkpoint_2d, checkpoint_volume
from PIL import Image

from ppi_cli.data.cache import load_array
from ppi_cli.data.ga.normalise import preprocess_volume
from ppi_cli.data.ga.prepare import GaPrepareConfig, prepare_ga
from ppi_cli.data.synth.ga import SITE_STYLES, SynthGaConfig, synth_ga, synth_volume
from ppi_cli.models import load_model
from ppi_cli.reports.localisation import best_threshold, sample_scores
from ppi_cli.saliency import saliency_map

N_BSCANS, SIZE = 8, (32, 48)


@pytest.fixture(scope="module")
def ga_cache(tmp_path_factory) -> Path:
    """A real GA cache: `synth ga` output (with lesion masks) through `prepare ga`."""
    root = tmp_path_factory.mktemp("ga")
    raw = synth_ga(SynthGaConfig(out=root / "raw", sites=("A", "D"), per_site=2, n_bscans=N_BSCANS, size=SIZE,
                                 seed=3))
    prepare_ga(GaPrepareConfig(manifest=raw.manifest, out=root / "cache", bscan_size=SIZE, n_bscans=N_BSCANS))
    return root / "cache"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("models")
    return (checkpoint_volume(root / "plain.pt", n_bscans=N_BSCANS, bscan_size=SIZE, seed=0),
            checkpoint_volume(root / "ppi.pt", n_bscans=N_BSCANS, bscan_size=SIZE, seed=1))


def test_segment_eval_tables_one_column_per_method(cli, tmp_path, ga_cache, models):
    out = tmp_path / "seg"
    result = cli("segment-eval", "--model", models[0], "--data", ga_cache, "--out", out,
                 "--methods", "wbp,gradient", "--limit", "5")
    assert result.exit_code == 0, result.stderr
    table = pd.read_csv(out / "localisation.csv")
    assert list(table.columns) == ["metric", "wbp", "gradient"]
    rows = dict(zip(table["metric"], table["wbp"], strict=True))
    for key in ("energy pointing game, top 100", "energy pointing game, top 5000", "energy pointing game, all points",
                "pointing game hit rate", "Dice, best threshold", "IoU, best threshold", "Dice, top 5 %",
                "IoU, top 5 %", "score drop, 10 % removed"):
        assert key in rows
    assert rows["samples"] == 5
    per_sample = pd.read_csv(out / "per_sample.csv")
    assert len(per_sample) == 10 and set(per_sample["method"]) == {"wbp", "gradient"}
    wbp = per_sample[per_sample["method"] == "wbp"]
    assert rows["pointing game hit rate"] == pytest.approx(wbp["hit"].mean())
    assert rows["energy pointing game, all points"] == pytest.approx(wbp["epg_all"].mean())
    assert rows["score drop, 10 % removed"] == pytest.approx((wbp["score_f0"] - wbp["score_f0.1"]).mean())
    md = (out / "localisation.md").read_text()
    assert "| metric | wbp | gradient |" in md and "| samples | 5 | 5 |" in md
    assert (out / "deletion.png").stat().st_size > 0 and len(pd.read_csv(out / "deletion.csv")) == 2 * 8
    assert "wbp" in result.stdout and str(out / "localisation.md") in result.stderr
    for name in ("localisation.md", "config.json"):  # shared files name inputs by base name, never a full path
        text = (out / name).read_text()
        assert str(ga_cache.parent) not in text and str(models[0].parent) not in text, name
    assert f"`{ga_cache.name}`" in md and f"`{models[0].name}`" in md


def test_scores_use_the_mask_of_the_same_bscan(tmp_path, ga_cache, models):
    """Recompute the first sample by hand from the cache: right volume, right B-scan, right mask."""
    from ppi_cli.engine.segment_eval import SegmentEvalConfig, segment_eval

    result = segment_eval(SegmentEvalConfig(models[0], data=ga_cache, out=tmp_path / "s", methods=("wbp",),
                                            limit=2))
    first = pd.read_csv(result.out / "per_sample.csv").iloc[0]
    sample_id, bscan = first["sample"].rsplit(":", 1)
    manifest = pd.read_csv(ga_cache / "manifest.csv")
    row = int(np.flatnonzero(manifest["sample_id"] == sample_id)[0])
    mask = load_array(ga_cache, "masks.npy")[row, int(bscan)] > 0
    assert mask.any()
    image, _ = preprocess_volume(np.array(load_array(ga_cache, "volumes.npy")[row]))
    x = image[[int(bscan)]]  # (1, 1, H, W)
    model, _ = load_model(models[0])
    s = saliency_map(model.slice_classifier, x, 0, method="wbp")[0, 0].numpy()
    pos = np.clip(s, 0, None)
    assert first["epg_all"] == pytest.approx(pos[mask].sum() / pos.sum(), rel=1e-5)
    with torch.no_grad():
        probability = float(torch.sigmoid(model.slice_classifier(x)[0, 0]))
    assert first["score_f0"] == pytest.approx(probability, rel=1e-5)


def test_compare_puts_two_models_side_by_side_and_resumes(cli, tmp_path, ga_cache, models):
    out = tmp_path / "cmp"
    args = ["segment-eval", "-m", models[0], "--compare", models[1], "--data", ga_cache, "-o", out,
            "--methods", "wbp", "--limit", "3"]
    first = cli(*args)
    assert first.exit_code == 0, first.stderr
    table = pd.read_csv(out / "localisation.csv")
    assert list(table.columns) == ["metric", "wbp (plain)", "wbp (ppi)"]
    with Image.open(out / "gallery.png") as im:  # 3 cases × (image, contour, plain, ppi), at print resolution
        assert im.info["dpi"][0] == pytest.approx(300, abs=1) and im.width > im.height
    assert (out / "gallery.pdf").read_bytes().startswith(b"%PDF")
    (out / "parts" / "ppi-wbp.csv").unlink()
    again = cli(*args)
    assert again.exit_code == 0 and "resume: plain-wbp.csv is done" in again.stderr
    pd.testing.assert_frame_equal(pd.read_csv(out / "localisation.csv"), table)
    other = cli(*args[:-1], "4")  # other settings into the same folder: refused, nothing mixed
    assert other.exit_code == 1 and "other settings" in other.stderr
    # --model's column comes first whatever the labels' alphabetical order ("ppi" after "plain")
    swapped = cli("segment-eval", "-m", models[1], "--compare", models[0], "--data", ga_cache, "-o", tmp_path / "swap",
                  "--methods", "wbp", "--limit", "3")
    assert swapped.exit_code == 0, swapped.stderr
    flipped = pd.read_csv(tmp_path / "swap" / "localisation.csv")
    assert list(flipped.columns) == ["metric", "wbp (ppi)", "wbp (plain)"]
    assert flipped["wbp (ppi)"].tolist() == table["wbp (ppi)"].tolist()


def test_refusals_are_one_line(cli, tmp_path, ga_cache, models):
    folder_model = checkpoint_2d(tmp_path / "folder.pt", dataset="folder")
    cases = [
        (["-m", folder_model, "--data", ga_cache], "has none"),
        (["-m", models[0], "--data", ga_cache, "--methods", "wbp,magic"], "magic"),
        (["-m", models[0], "--data", tmp_path / "nothing"], "no cache"),
        (["-m", checkpoint_volume(tmp_path / "big.pt", n_bscans=12, bscan_size=SIZE), "--data", ga_cache],
         "trained on"),
    ]
    for args, words in cases:
        result = cli("segment-eval", *args, "-o", tmp_path / "o")
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1 and words in lines[0], (args, result.stderr)


def test_lesion_map_beats_spurious_cue_map_on_synthetic_oct(rng):
    """The generator's own B-scan: a map on the GA lesion outscores a map on the planted scanner mark."""
    volume, mask, _ = synth_volume(rng, SITE_STYLES["D"], 16, (64, 96), ga=True, cue=True)
    k = int(np.argmax(mask.sum(axis=(1, 2))))
    lesion, bscan = mask[k].astype(bool), volume[k].astype(np.float64)
    cue = np.zeros_like(lesion)
    side = max(3, min(lesion.shape) // 16)
    cue[2:2 + side, 2:2 + side] = True  # where synth_volume paints the mark
    assert (volume[k][cue] == 255).all() and not (lesion & cue).any()
    from scipy.ndimage import gaussian_filter

    noise = 0.02 * rng.random(lesion.shape)
    on_lesion = gaussian_filter(lesion.astype(float), 2.0) + noise
    on_cue = gaussian_filter(cue.astype(float), 2.0) + 0.3 * gaussian_filter(bscan / 255.0, 1.0) + noise
    good, _, _ = sample_scores(on_lesion, lesion)
    bad, _, _ = sample_scores(on_cue, lesion)
    for key in good:
        assert good[key] > bad[key], (key, good[key], bad[key])
    assert best_threshold([on_lesion], [lesion]).dice > best_threshold([on_cue], [lesion]).dice


def _register_test_maps() -> None:
    """Two fixed 'saliency methods' for the pipeline test: one on the blob, one on a corner away from it."""
    from ppi_cli.saliency import method_names, register_saliency

    if "test-on-lesion" in method_names():
        return
    corner = 4  # the generated blobs are centred well inside the image, never in this corner

    @register_saliency("test-on-lesion", summary="test only: the brightest smoothed region (the blob)")
    def _on_lesion(model, x, target, *, create_graph):
        smooth = torch.nn.functional.avg_pool2d(x.sum(1, keepdim=True), 5, stride=1, padding=2)  # (B, 1, H, W)
        level = smooth.mean((2, 3), keepdim=True) + 2 * smooth.std((2, 3), keepdim=True)
        s = torch.relu(smooth - level)
        s[..., : corner + 1, : corner + 1] = 0.0
        return s

    @register_saliency("test-on-cue", summary="test only: a corner, where no lesion is")
    def _on_cue(model, x, target, *, create_graph):
        s = 0.01 * x.sum(1, keepdim=True)  # (B, 1, H, W) faint everywhere
        s[..., :corner, :corner] = 1.0
        return s


def test_segment_eval_ranks_a_lesion_map_above_a_cue_map_on_synthetic_data(tmp_path):
    """Through the whole pipeline, on the generated task of the model's recipe (blob = lesion mask)."""
    from ppi_cli.engine.segment_eval import SegmentEvalConfig, segment_eval

    _register_test_maps()
    ckpt = checkpoint_2d(tmp_path / "syn.pt", dataset="synthetic", window=(0.0, 1.0), spacing_mm=None)
    result = segment_eval(SegmentEvalConfig(ckpt, out=tmp_path / "s", methods=("test-on-lesion", "test-on-cue"),
                                            limit=12))
    table = result.summary
    assert result.n_samples == 12 and table.loc["samples", "test-on-lesion"] == 12
    for metric in ("energy pointing game, top 100", "energy pointing game, all points", "pointing game hit rate",
                   "Dice, best threshold", "IoU, best threshold", "Dice, top 5 %"):
        assert table.loc[metric, "test-on-lesion"] > table.loc[metric, "test-on-cue"], metric
    assert table.loc["pointing game hit rate", "test-on-lesion"] == 1.0
    assert table.loc["pointing game hit rate", "test-on-cue"] == 0.0
