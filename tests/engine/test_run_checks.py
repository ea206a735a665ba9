# SPDX-License-Identifier: MIT
"""Checks that stop silent failures: each gives its one-line warning or refusal (issue 17, item 2)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from helpers import lidc_nodule_cache

from ppi_cli.config import NULL, load_recipe
from ppi_cli.data.fingerprint import FINGERPRINT_FILE, compute_fingerprint, read_fingerprint
from ppi_cli.engine.run_checks import check_study, check_training, few_cases, fit_rejection
from ppi_cli.engine.study import resolve_study
from ppi_cli.errors import ConfigError
from ppi_cli.reports.crossval_report import write_crossval_report
from ppi_cli.reports.metrics import cell_flag


def _one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def test_prepare_writes_a_fingerprint_the_checks_read(tmp_path):
    cache = lidc_nodule_cache(tmp_path / "cache", side=60, lesion=10)
    written = json.loads((cache / FINGERPRINT_FILE).read_text(encoding="utf-8"))
    assert written["image_size"] == [60, 60] and written["spacing_mm"] == 0.5
    assert written["lesion"]["size_px"]["p50"] == 10 and written["lesion"]["centre_offset_px"]["p50"] <= 0.75
    assert written["labels"]["all"] == {"0": 24, "1": 24} and written["sites"] == {"na": {"0": 24, "1": 24}}
    assert -900 < written["intensity"]["p01"] < written["intensity"]["p99"] < 0
    (cache / FINGERPRINT_FILE).unlink()  # a cache from before fingerprints: computed on demand, the same
    assert read_fingerprint(cache, "lidc", {"spacing": 0.5}) == written == compute_fingerprint(cache, "lidc",
                                                                                                {"spacing": 0.5})


def test_a_40px_window_on_a_180px_lidc_cache_is_refused_in_one_line(tmp_path, cli):
    cache = lidc_nodule_cache(tmp_path / "cache", side=180, patients=4, lesion=14)
    result = cli("train", "--recipe", "demo-lidc-ppi-wbp", "--data", cache, "--epochs", "1")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    line = _one_line(result.stderr)
    assert line.startswith("ppi: config error:") and "data.crop 40" in line and "180-px" in line
    assert "(fix: --set data.crop=88 (or more), or rebuild the cache with `ppi prepare lidc --crop 48`)" in line
    assert not (tmp_path / "ws" / "runs").exists() or not list((tmp_path / "ws" / "runs").glob("*/last.pt"))
    # The paper's 128-px window of the same cache passes.
    recipe, data = resolve_study("lidc-ppi-wbp-cpu", data=cache)
    assert check_study(recipe, data, {}) == []


def test_a_window_smaller_than_the_typical_lesion_warns(tmp_path, capsys):
    cache = lidc_nodule_cache(tmp_path / "cache", side=48, patients=4, lesion=44)
    recipe, data = resolve_study("demo-lidc-ppi-wbp", data=cache)
    capsys.readouterr()
    found = check_study(recipe, data, {})
    assert len(found) == 1 and "smaller than the typical lesion (44 px" in found[0]
    assert "warning:" in _one_line(capsys.readouterr().err)


def test_a_ct_window_on_data_outside_it_is_refused(tmp_path):
    cache = lidc_nodule_cache(tmp_path / "cache", side=48, patients=4)
    recipe, data = resolve_study("demo-lidc-ppi-wbp", data=cache, overrides={"data.window": [1000, 2000]})
    with pytest.raises(ConfigError, match=r"data.window \[1000, 2000\].*meant for other data"):
        check_study(recipe, data, {})


def test_a_fold_with_2_positives_warns_in_one_line(tmp_path, capsys):
    cache = lidc_nodule_cache(tmp_path / "cache", side=48, patients=6)
    recipe, data = resolve_study("demo-lidc-ppi-wbp", data=cache)
    rows = np.concatenate([np.flatnonzero(data.labels == 1)[:2], np.flatnonzero(data.labels == 0)[:10]])
    capsys.readouterr()
    found = check_study(recipe, data, {"fold 3": rows, "fold 4": np.arange(len(data.labels))})
    assert found == ["fold 3 holds 2 positive(s) and 10 negative(s), fewer than 5 of a class: its AUC rests on too "
                     "few cases to be read"]
    assert "fold 3 holds 2 positive(s)" in _one_line(capsys.readouterr().err)
    assert few_cases("x", np.array([0, 1] * 5)) is None


def _rows(cls, **columns):
    n = len(cls)
    base = {"ppi": [0] * n, "alpha": [1.0] * n, "beta": [0.1] * n, "gamma": [1.0] * n, "val_auc": [np.nan] * n}
    base.update(columns)
    return [{"epoch": i + 1, "train_cls": cls[i], **{k: v[i] for k, v in base.items()}} for i in range(n)]


def test_a_training_loss_at_chance_for_the_whole_run_warns():
    recipe = load_recipe("synthetic-baseline-cpu")
    found = check_training(recipe, _rows([0.695, 0.693, 0.6931, 0.692]), 4)
    assert len(found) == 1 and found[0].startswith("the training loss stayed at chance (ln 2 = 0.693) for all 4")
    assert check_training(recipe, _rows([0.695, 0.693, 0.6, 0.5]), 4) == []  # it learned something


def test_an_auto_weight_at_its_cap_warns():
    recipe = load_recipe("synthetic-ppi-wbp-cpu", {"ppi.beta": "auto", "ppi.start_epoch": 1, "ppi.auto_max": 100})
    rows = _rows([0.6, 0.5, 0.4], ppi=[0, 1, 1], beta=[1.0, 100.0, 100.0])
    found = check_training(recipe, rows, 3)
    assert found == ["ppi.beta is 'auto' and reached its cap ppi.auto_max = 100 at epoch 2: the term shrank towards "
                     "zero and its weight ran away (set ppi.beta to a number)"]
    assert check_training(recipe, _rows([0.6, 0.5, 0.4], ppi=[0, 1, 1], beta=[1.0, 40.0, 99.0]), 3) == []
    # faded in (ppi.fade_in), the column holds the capped weight times the fade: a quarter of it in the first PPI epoch
    faded = recipe.replace(**{"ppi.fade_in": 4})
    assert check_training(faded, _rows([0.6, 0.5, 0.4], ppi=[0, 1, 1], beta=[1.0, 25.0, 40.0]), 3) == found
    assert check_training(faded, _rows([0.6, 0.5, 0.4], ppi=[0, 1, 1], beta=[1.0, 24.0, 49.0]), 3) == []


def test_a_kept_ppi_epoch_below_a_warm_up_epoch_warns():
    recipe = load_recipe("synthetic-ppi-wbp-cpu", {"ppi.start_epoch": 2})
    rows = _rows([0.6, 0.5, 0.4, 0.3], ppi=[0, 0, 1, 1], val_auc=[0.3, 0.417, 0.058, 0.05])
    found = check_training(recipe, rows, 3)
    assert found == ["the kept epoch 3 (PPI) has val_auc 0.058, below warm-up epoch 2's 0.417: PPI made validation "
                     "worse"]
    rows[2]["val_auc"] = 0.6
    assert check_training(recipe, rows, 3) == []


def test_the_training_fit_guard_compares_the_last_ten_epochs_mean_training_loss():
    """`ppi.fallback_fit`: PPI is rejected when its train_cls averaged over its last ten epochs is more than the limit
    above the same average of the run without PPI. Twelve epochs each: the first two (1.0 for PPI, which would
    change the decision) lie outside the window. PPI's last ten average (0.45·5 + 0.55·5)/10 = 0.50, the baseline's
    (0.15·10)/10 = 0.15: 0.35 above, rejected at 0.2 and 0.3, kept at 0.35 (not more than) and 0.4."""
    recipe = load_recipe("ga-ppi-wbp-cpu", {"ppi.fallback_fit": 0.2})
    ppi = _rows([1.0, 1.0] + [0.45] * 5 + [0.55] * 5)
    plain = _rows([0.7, 0.3] + [0.15] * 10)
    found = fit_rejection(recipe, ppi, plain, fallback="baseline-fallback")
    assert found == ("PPI rejected: its training loss (train_cls) over the last 10 epochs is 0.500, more than "
                     "ppi.fallback_fit 0.2 above the recipe without PPI's 0.150 (baseline-fallback/): PPI kept the "
                     "classifier from fitting its training images; best.pt is that run's")
    for limit, rejected in ((0.3, True), (0.35, False), (0.4, False)):
        assert bool(fit_rejection(recipe.replace(**{"ppi.fallback_fit": limit}), ppi, plain, fallback="b")) is rejected
    assert fit_rejection(recipe.replace(**{"ppi.fallback_fit": NULL}), ppi, plain, fallback="b") == ""  # the guard off
    # runs shorter than ten epochs average what they have: PPI (0.9 + 0.5)/2 = 0.7 against 0.1, over 2 epochs
    short = fit_rejection(recipe, _rows([0.9, 0.5]), _rows([0.1, 0.1]), fallback="b")
    assert "over the last 2 epochs is 0.700" in short
    nan = _rows([0.5] * 12)
    nan[-1]["train_cls"] = float("nan")
    assert fit_rejection(recipe, nan, plain, fallback="b") == ""  # nothing finite to compare


def test_the_training_fit_guard_needs_the_run_without_ppi():
    with pytest.raises(ConfigError, match=r"ppi.fallback_fit 0.2 compares PPI's training loss with the recipe trained "
                                          r"without PPI, and ppi.fallback_against is 'warmup'"):
        load_recipe("ga-ppi-wbp-cpu", {"ppi.fallback_fit": 0.2, "ppi.fallback_against": "warmup"})
    # the earlier docs sections' guard against the warm-up, regenerated on ga-ppi-wbp-cpu as docs/ppi.md says
    assert load_recipe("ga-ppi-wbp-cpu", {"ppi.fallback_against": "warmup", "ppi.fallback_drop": 0.2,
                                          "ppi.fallback_fit": NULL}).ppi.fallback_fit is None
    # with the guard off (fallback_drop null, as the sweeps that apply it after the fact run) the rule is off too
    assert load_recipe("ga-ppi-wbp-cpu", {"ppi.fallback_against": "warmup", "ppi.fallback_drop": NULL}).ppi.fallback_fit


def test_a_report_cell_at_or_below_half_is_flagged(tmp_path):
    assert cell_flag(0.5, 40, 20) == "AUC ≤ 0.5" and cell_flag(0.9, 40, 20) == ""
    assert cell_flag(0.9, 12, 2) == "2 positives < 5"
    assert cell_flag(0.4, 40, 20, rejected=True) == "AUC ≤ 0.5; PPI rejected: trained without PPI"
    rng = np.random.default_rng(0)
    y = np.tile([0, 1], 20)
    good = y + rng.normal(0, 0.3, y.size)
    frame = pd.DataFrame({"part": ["fold-0"] * 40 + ["fold-1"] * 40, "index": np.arange(80),
                          "label": np.concatenate([y, y]), "score": np.concatenate([good, -good])})
    summary = write_crossval_report(frame, tmp_path, title="t", n_boot=0)
    assert summary.folds["flag"].tolist() == ["", "AUC ≤ 0.5"]
    assert "**Flagged folds** (not to be read at face value): fold-1: AUC ≤ 0.5." in (
        tmp_path / "summary.md").read_text(encoding="utf-8")


def test_worker_lines_carry_the_study_they_belong_to(capsys):
    from ppi_cli.console import log, log_prefix, warn

    with log_prefix("lidc crossval ppi-wbp"):
        log("fold 0: training")
        warn("fold 1 holds 2 positive(s)")
    log("after")
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["[lidc crossval ppi-wbp] fold 0: training", "[lidc crossval ppi-wbp] warning: fold 1 holds 2 "
                     "positive(s)", "after"]


RECORD_FIELDS = {"command", "toolkit_version", "git_commit", "python", "torch", "cuda", "cudnn", "device",
                 "device_name", "host", "platform", "seed", "recipe_hash", "data_hash", "started"}


def test_a_two_epoch_demo_run_is_watched_recorded_and_strict_json(tmp_path, one_thread, capsys):
    """Issue 17's acceptance: epoch lines, train.log, training.png, a full run record, strict JSON."""
    from ppi_cli.config import config_hash
    from ppi_cli.engine.crossval import CrossvalConfig, run_crossval

    def strict(text):
        def refuse(name):
            raise ValueError(f"{name} is not JSON")
        return json.loads(text, parse_constant=refuse)

    cache = lidc_nodule_cache(tmp_path / "cache", side=48, patients=10)
    recipe, data = resolve_study("demo-lidc-ppi-wbp", data=cache, overrides={"schedule.epochs": 2, "seed": 3})
    out = tmp_path / "cv"
    outcome = run_crossval(CrossvalConfig(recipe, data, out, folds=2, seed=3, fold=1, bootstrap=0, device="cpu"))
    err = capsys.readouterr().err
    run = out / "fold-1"
    assert outcome.ran == [1]
    assert [line.split(": ", 1)[1].split(" |")[0] for line in err.splitlines() if ": epoch " in line] == [
        "epoch 1/2", "epoch 2/2"]
    log_lines = (run / "train.log").read_text(encoding="utf-8").splitlines()
    assert [line.split(" |")[0] for line in log_lines[:2]] == ["epoch 1/2", "epoch 2/2"] and "cls " in log_lines[0]
    assert (run / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert re.search(r"fold 1: test AUC [01]\.\d{3} on 20 cases \(10 positive\)", err)
    trained = strict((run / "trained.json").read_text(encoding="utf-8"))
    assert trained["best_metric"] is None and trained["best_epoch"] == 2  # no validation rows: the last epoch
    for path in out.rglob("*.json"):
        strict(path.read_text(encoding="utf-8"))
    for folder in (run, out):
        record = strict((folder / "run.json").read_text(encoding="utf-8"))
        assert set(record) == RECORD_FIELDS
        assert record["seed"] == 3 and record["data_hash"] == data.data_hash and record["host"]
        assert record["recipe_hash"] == config_hash(recipe) and record["python"].count(".") == 2
    assert strict((run / "run.json").read_text(encoding="utf-8"))["device"] == "cpu"


def test_report_figures_are_300_dpi_png_and_pdf_and_flag_degenerate_cells(tmp_path):
    from PIL import Image

    from ppi_cli.reports.plots import heatmap_figure
    from ppi_cli.reports.tables import format_value

    matrix = pd.DataFrame([[0.5, 0.9], [0.8, 0.95]], index=["A", "B"], columns=["A", "B"])
    png = heatmap_figure({"with PPI": matrix}, tmp_path / "heatmap.png", flags={"with PPI": {("A", "A")}})
    assert round(Image.open(png).info["dpi"][0]) == 300
    assert (tmp_path / "heatmap.pdf").read_bytes()[:5] == b"%PDF-"
    plain = heatmap_figure({"with PPI": matrix}, tmp_path / "plain.png")
    assert Image.open(png).tobytes() != Image.open(plain).tobytes()  # the flag is drawn
    assert format_value(np.int64(40)) == "40" and format_value(0.5) == "0.500"


def test_lesion_masks_on_data_without_them_are_refused_before_training(tmp_path, cli):
    cache = lidc_nodule_cache(tmp_path / "cache", side=48, patients=4, with_masks=False)
    result = cli("train", "--recipe", "demo-lidc-ppi-wbp", "--data", cache, "--epochs", "1",
                 "--set", "ppi.mask=lesion", "--out", tmp_path / "run")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    line = _one_line(result.stderr)
    assert "ppi.mask: lesion needs lesion masks" in line and "mask_path" in line
    assert not (tmp_path / "run" / "last.pt").exists()


def test_lesion_masks_of_a_lidc_cache_are_the_masks_ppi_removes(tmp_path, cli):
    """A LIDC cache holds the readers' masks: `ppi.mask: lesion` trains on them and removes all of each nodule."""
    cache = lidc_nodule_cache(tmp_path / "cache", side=48, patients=4)
    result = cli("train", "--recipe", "demo-lidc-ppi-wbp", "--data", cache, "--epochs", "1",
                 "--set", "ppi.mask=lesion", "--set", "ppi.start_epoch=0", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.stderr
    row = pd.read_csv(tmp_path / "run" / "metrics.csv").iloc[0]
    # the masks are the nodules (12 x 12 of a 40-px view: 9 %), so they remove every lesion pixel and no more
    assert row["ppi"] == 1 and row["train_lesion_removed"] == pytest.approx(1.0)
    assert row["train_coverage"] == pytest.approx(144 / 1600, abs=0.02)


def test_a_swap_fill_on_crops_centred_on_every_lesion_warns(tmp_path, capsys):
    from ppi_cli.engine.run_checks import swap_finding

    cache = lidc_nodule_cache(tmp_path / "cache", side=48, patients=4)  # a centred nodule in every crop, both classes
    recipe, data = resolve_study("demo-lidc-ppi-wbp", data=cache, overrides={"ppi.fill": "swap"})
    capsys.readouterr()
    found = check_study(recipe, data, {})
    assert len(found) == 1 and found[0].startswith("ppi.fill: swap on images that all hold a lesion at their centre")
    assert "warning: ppi.fill: swap" in _one_line(capsys.readouterr().err)
    plain, _ = resolve_study("demo-lidc-ppi-wbp", data=cache)
    assert check_study(plain, data, {}) == []  # the zero fill: nothing to say
    fingerprint = read_fingerprint(cache, "lidc")
    assert swap_finding(recipe, fingerprint) == found[0]
    # Lesions in the positives only (GA: a negative has no atrophy), or away from the centre: no warning.
    positives_only = fingerprint | {"lesion": fingerprint["lesion"] | {"n": fingerprint["labels"]["all"]["1"]}}
    assert swap_finding(recipe, positives_only) is None
    scattered = fingerprint | {"lesion": fingerprint["lesion"] | {"centre_offset_px": {"p50": 9.0, "p90": 15.0}}}
    assert swap_finding(recipe, scattered) is None
