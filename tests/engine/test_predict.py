# SPDX-License-Identifier: MIT
"""`ppi predict` and `ppi evaluate` on generated GA data: the held-out site's AUC equals the cross-site cell's."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ppi_cli.checkpoint import load_checkpoint
from ppi_cli.cli.main import run

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny convolutions run fastest on one thread

TINY = """\
extends: demo-ga-site-baseline
schedule: {epochs: 2, step_size: 1, backbone_step_size: 1}
model: {multiview: {bias_epochs: 1}}
eval: {bootstrap: 20}
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """`synth ga` (sites A and B, raw DICOM and .mat), `prepare ga`, and `cross-site --train A --test B`."""
    root = tmp_path_factory.mktemp("predict")
    raw, cache, xs = root / "raw", root / "cache", root / "xs"
    assert run(["synth", "ga", "--out", str(raw), "--sites", "A,B", "--per-site", "12", "--n-bscans", "8",
                "--size", "32x32", "--seed", "5"]) == 0
    assert run(["prepare", "ga", "--manifest", str(raw / "manifest.csv"), "--out", str(cache),
                "--bscan-size", "32x32", "--n-bscans", "8"]) == 0
    (root / "tiny.yaml").write_text(TINY)
    assert run(["cross-site", "--recipe", str(root / "tiny.yaml"), "--data", str(cache), "--train", "A",
                "--test", "B", "--out", str(xs), "--device", "cpu", "--bootstrap", "0"]) == 0
    manifest = pd.read_csv(raw / "manifest.csv", dtype=str)
    manifest[manifest["site"] == "B"].to_csv(raw / "site-B.csv", index=False)  # the external site's own manifest
    return root, raw, cache, xs


def test_predict_and_evaluate_on_the_held_out_site_reproduce_the_cross_site_cell(study, tmp_path, cli):
    root, raw, cache, xs = study
    cells = pd.read_csv(xs / "cells.csv")
    cell = cells[(cells["train_site"] == "A") & (cells["test_site"] == "B")].iloc[0]
    scored = cli("predict", raw / "site-B.csv", "--model", xs / "baseline" / "train-A", "--out", tmp_path / "p",
                 "--maps", tmp_path / "maps", "--device", "cpu")
    assert scored.exit_code == 0, scored.stderr
    preds = pd.read_csv(tmp_path / "p" / "predictions.csv")
    assert list(preds.columns) == ["path", "site", "score", "class", "threshold", "models", "map"]
    assert len(preds) == 12 and (preds["site"] == "B").all()
    meta = load_checkpoint(xs / "baseline" / "train-A" / "best.pt")["meta"]
    assert meta["threshold"]["source"] in ("validation Youden J", "default 0.5 (one class in the validation split)")
    assert np.allclose(preds["threshold"], meta["threshold"]["value"])
    negative, positive = meta["classes"]
    assert (preds["class"] == np.where(preds["score"] >= preds["threshold"], positive, negative)).all()
    assert preds["models"].iloc[0].startswith("train-A/best.pt@")
    assert np.load(tmp_path / "maps" / preds["map"].iloc[0]).shape == (8, 32, 32)  # one map per B-scan
    # The raw scans, read through each checkpoint's preprocessing, score as the cache's rows did.
    cell_preds = pd.read_csv(xs / "baseline" / "train-A" / "test-B" / "predictions.csv")
    cache_rows = pd.read_csv(cache / "manifest.csv", dtype=str)
    by_path = dict(zip(cache_rows["path"].iloc[cell_preds["index"]], cell_preds["score"], strict=True))
    assert np.allclose(preds["score"], preds["path"].map(by_path), atol=1e-6)

    result = cli("evaluate", tmp_path / "p" / "predictions.csv", "--labels", raw / "manifest.csv", "--json",
                 "--bootstrap", "200")
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["auc"] == pytest.approx(cell["auc"], abs=1e-9)
    assert metrics["n"] == 12 and metrics["n_positive"] == 6
    assert metrics["auc_delong_low"] <= metrics["auc"] <= metrics["auc_delong_high"]
    report = tmp_path / "p" / "evaluation"
    for name in ("report.md", "evaluation.csv", "evaluation.md", "calibration.csv", "calibration.md", "roc.png",
                 "reliability.png", "evaluation.json"):
        assert (report / name).is_file(), name
    assert len(pd.read_csv(report / "calibration.csv")) == 10


def test_predict_on_the_cache_matches_and_names_its_rows(study, tmp_path, cli):
    root, raw, cache, xs = study
    result = cli("predict", cache, "--model", xs / "baseline" / "train-A" / "best.pt", "--out",
                 tmp_path / "cache.csv", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    preds = pd.read_csv(tmp_path / "cache.csv")
    assert len(preds) == 24 and set(preds["site"]) == {"A", "B"}
    cell = pd.read_csv(xs / "baseline" / "train-A" / "test-B" / "predictions.csv")
    assert np.allclose(preds.loc[cell["index"], "score"], cell["score"], atol=1e-6)
    subjects = pd.read_csv(raw / "manifest.csv", dtype=str)["subject_id"]
    text = (tmp_path / "cache.csv").read_text()
    assert not any(s in text.split(",") for s in subjects)  # subject ids are never written


def test_ensemble_of_fold_models_and_one_line_errors(study, tmp_path, cli):
    root, raw, cache, xs = study
    folds = tmp_path / "cv"
    for k in (0, 1):  # a crossval study's layout: fold-k/best.pt
        (folds / f"fold-{k}").mkdir(parents=True)
        (folds / f"fold-{k}" / "best.pt").write_bytes((xs / "baseline" / "train-A" / "best.pt").read_bytes())
    result = cli("predict", raw / "site-B.csv", "--model", folds, "--out", tmp_path / "e.csv", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    preds = pd.read_csv(tmp_path / "e.csv")
    assert preds["models"].iloc[0].split(";")[0].startswith("fold-0/best.pt@") and "fold-1" in preds["models"].iloc[0]
    missing = cli("predict", raw / "site-B.csv", "--model", tmp_path / "nothing", "--device", "cpu")
    assert missing.exit_code == 1 and len(missing.stderr.strip().splitlines()) == 1
    unlabelled = cli("evaluate", tmp_path / "e.csv", "--labels", cache / "cache.json")
    assert unlabelled.exit_code == 1 and "Traceback" not in unlabelled.stderr


def test_predict_a_folder_of_images_leaves_unreadable_ones_in_errors_csv(tmp_path, cli):
    from helpers import checkpoint_2d
    from PIL import Image

    ckpt = checkpoint_2d(tmp_path / "m.pt", dataset="folder", spacing_mm=None)
    (tmp_path / "in" / "sub").mkdir(parents=True)
    pixels = np.random.default_rng(0).integers(0, 255, (40, 40), dtype=np.uint8)
    for name in ("a.png", "sub/b.png"):
        Image.fromarray(pixels).save(tmp_path / "in" / name)
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")
    result = cli("predict", tmp_path / "in", "--model", ckpt, "--out", tmp_path / "out", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    preds = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert sorted(preds["path"]) == ["a.png", "sub/b.png"] and (preds["threshold"] == 0.5).all()
    errors = pd.read_csv(tmp_path / "out" / "errors.csv")
    assert errors["path"].tolist() == ["broken.png"]


def test_errors_csv_names_inputs_without_their_folders(tmp_path, cli):
    from helpers import checkpoint_2d

    ckpt = checkpoint_2d(tmp_path / "m.pt", dataset="folder", spacing_mm=None)
    export = tmp_path / "DOE_JOHN"
    export.mkdir()
    (export / "scan.png").write_bytes(b"not a png")
    (export / "list.csv").write_text("path,label\nscan.png,1\nmissing.png,0\n")
    result = cli("predict", export / "list.csv", "--model", ckpt, "--out", tmp_path / "p.csv", "--device", "cpu")
    assert result.exit_code == 1 and "none of the 2 input(s)" in result.stderr
    assert "DOE_JOHN" not in (tmp_path / "errors.csv").read_text()
    assert pd.read_csv(tmp_path / "errors.csv")["path"].tolist() == ["scan.png", "missing.png"]


def test_evaluate_takes_a_lidc_cache_manifest_as_labels(tmp_path, cli):
    from helpers import lidc_nodule_cache
    from sklearn.metrics import roc_auc_score

    cache = lidc_nodule_cache(tmp_path / "cache", side=48, patients=4)  # its manifest: sample_id, no path
    manifest = pd.read_csv(cache / "manifest.csv")
    assert "path" not in manifest.columns
    scores = np.linspace(0.1, 0.9, len(manifest))[::-1]
    pd.DataFrame({"path": manifest["sample_id"], "score": scores, "class": "x", "threshold": 0.5,
                  "models": "m"}).to_csv(tmp_path / "p.csv", index=False)  # predictions.csv's columns
    result = cli("evaluate", tmp_path / "p.csv", "--labels", cache / "manifest.csv", "--json", "--bootstrap", "0",
                 "--out", tmp_path / "ev")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["auc"] == pytest.approx(roc_auc_score(manifest["label"], scores))
