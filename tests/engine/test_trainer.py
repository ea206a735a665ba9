# SPDX-License-Identifier: MIT
"""The trainer end to end on the generated task: run folder, checkpoint meta, CLI, resume, DDP."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import ROOT

from ppi_cli.checkpoint import load_checkpoint
from ppi_cli.config.recipe import load_recipe
from ppi_cli.data.datasets import build_dataset
from ppi_cli.data.splits import Split
from ppi_cli.engine.distributed import init_distributed, weights_digest
from ppi_cli.engine.evaluate import predict
from ppi_cli.engine.run_state import finished_run
from ppi_cli.engine.study import load_study_data, study_split
from ppi_cli.engine.trainer import fit
from ppi_cli.errors import ConfigError
from ppi_cli.models import load_model
from ppi_cli.reports.metrics import youden_point

SMALL = """\
extends: synthetic-ppi-wbp-cpu
model: {{input_size: 16}}
data: {{crop: 16, synthetic_size: {size}, batch_size: 16}}
schedule: {{epochs: {epochs}}}
"""


def _recipe_file(tmp_path: Path, size: int = 64, epochs: int = 2, extra: str = "") -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL.format(size=size, epochs=epochs) + extra)
    return path


def _split(recipe):
    """The rows `ppi train` (no --fold) would train and validate on."""
    return study_split(load_study_data(recipe, None), fold=None, folds=recipe.eval.folds, seed=recipe.seed,
                       val_fraction=recipe.data.val_fraction)


def _subprocess_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PPI_WORKSPACE=str(tmp_path / "ws"), PPI_QUIET="1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_fit_writes_a_self_describing_run(tmp_path, one_thread):
    recipe = load_recipe(_recipe_file(tmp_path))
    split = _split(recipe)
    result = fit(recipe, cache_dir=None, split=split, out_dir=tmp_path / "run", device="cpu")
    for name in ("last.pt", "best.pt", "metrics.csv", "recipe.yaml", "split.json"):
        assert (tmp_path / "run" / name).is_file(), name
    metrics = pd.read_csv(result.metrics_csv)
    assert metrics["epoch"].tolist() == [1, 2] and metrics["ppi"].tolist() == [0, 1]  # start_epoch: 1
    assert {"train_cls", "train_con", "train_reg", "train_ad", "val_auc", "val_loss", "alpha"} <= set(metrics)
    assert np.isfinite(metrics.loc[1, ["train_con", "train_reg", "train_ad"]].astype(float)).all()
    saved = json.loads((tmp_path / "run" / "split.json").read_text())
    assert saved["train"] == split.train.tolist() and saved["val"] == split.val.tolist()
    model, meta = load_model(result.best_checkpoint)
    assert meta["input"] == {"dataset": "synthetic", "kind": "image", "channels": 1, "window": [0.0, 1.0],
                             "crop": 16, "input_size": 16, "input_adapt": "native", "spacing_mm": None,
                             "n_bscans": None, "bscan_size": None}
    assert meta["classes"] == ["negative", "positive"] and meta["data_hash"] is None
    assert meta["recipe"]["ppi"]["saliency"] == "wbp" and meta["epoch"] == result.best_epoch
    pred = predict(model, build_dataset("synthetic", None, split.val, recipe.data, train=False))
    # The operating threshold is Youden's J on the kept epoch's validation predictions, stored in the meta.
    assert meta["threshold"] == {"value": pytest.approx(youden_point(pred.labels, pred.scores)[0]),
                                 "source": "validation Youden J"}
    assert pred.scores.shape == (len(split.val),) and np.array_equal(pred.indices, split.val)
    assert ((pred.scores >= 0) & (pred.scores <= 1)).all()
    # Diagnostics of the PPI epoch; the generated task carries its blob masks, so the lesion share is measured.
    ppi_row = metrics.loc[1]
    assert 0 < ppi_row["train_coverage"] < 1 and 0 <= ppi_row["train_lesion_removed"] <= 1
    assert 0 <= ppi_row["train_p_ad"] <= 1  # alpha 0 in this recipe: no x*, so no p_con
    assert (metrics["train_grad_norm"] > 0).all()  # every epoch's steps applied gradients, warm-up and PPI
    log = (tmp_path / "run" / "train.log").read_text().splitlines()
    assert [line.split(" |")[0] for line in log] == ["epoch 1/2", "epoch 2/2 PPI"]
    assert "cov " in log[1] and "lesion " in log[1] and "val auc" in log[1] and "lr " in log[1]
    assert (tmp_path / "run" / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "run" / "training.pdf").read_bytes()[:5] == b"%PDF-"  # the last epoch's print-quality copy


def test_epoch_line_reads_every_term_and_skips_what_was_not_measured():
    from ppi_cli.engine.train_log import epoch_line

    row = {"epoch": 3, "ppi": 1, "lr": 0.002, "train_cls": 0.31234, "train_con": 0.5, "train_reg": 0.02,
           "train_ad": 0.4, "train_loss": 1.2, "train_coverage": 0.05, "train_p_con": float("nan"),
           "train_p_ad": 0.7, "val_auc": 0.9123, "val_loss": 0.4, "seconds": 2.04}
    line = epoch_line(row, 10, 14.3)
    assert line == ("epoch 3/10 PPI | cls 0.312  con 0.500  reg 0.020  ad 0.400 | cov 0.050  p' 0.700 | "
                    "val auc 0.912  loss 0.400 | lr 0.002 | 2.0 s, ETA 14 s")
    assert "no validation" in epoch_line(row | {"val_auc": float("nan"), "val_loss": float("nan")}, 10, 0.0)


def test_cli_train_fold_resume_guard_and_errors(tmp_path, cli, one_thread):
    recipe = _recipe_file(tmp_path, epochs=1, extra="eval: {folds: 4}\n")
    out = tmp_path / "fold1"
    ok = cli("train", "--recipe", recipe, "--out", out, "--fold", "1", "--device", "cpu")
    assert ok.exit_code == 0, ok.stderr
    assert "best epoch  1" in ok.stdout and f"wrote {out / 'best.pt'}" in ok.stderr
    split = json.loads((out / "split.json").read_text())
    assert split["fold"] == 1 and not set(split["test"]) & set(split["train"] + split["val"])
    again = cli("train", "--recipe", recipe, "--out", out, "--device", "cpu")
    assert again.exit_code == 1 and "already holds a training run" in again.stderr and "--resume" in again.stderr
    other = cli("train", "--recipe", recipe, "--out", out, "--device", "cpu", "--resume", "--set", "optim.lr=0.5")
    assert other.exit_code == 1 and "another recipe" in other.stderr
    bad = cli("train", "--recipe", recipe, "--out", tmp_path / "x", "--fold", "4", "--device", "cpu")
    assert bad.exit_code == 1 and "--fold 4" in bad.stderr and "Traceback" not in bad.stderr


def test_multiview_trains_on_generated_volumes(tmp_path, one_thread):
    extra = ("model: {name: multiview, backbone: tiny, input_size: 16, multiview: {slices_per_volume: 3, "
             "num_positions: 6, bias_epochs: 2}}\ndata: {synthetic_slices: 6, batch_size: 4}\n")
    recipe = load_recipe(_recipe_file(tmp_path, size=24, extra=extra))
    result = fit(recipe, cache_dir=None, split=_split(recipe), out_dir=tmp_path / "mv", device="cpu")
    model, meta = load_model(result.last_checkpoint)
    assert meta["input"]["kind"] == "volume"
    assert float(model.attention_bias) == pytest.approx(2.5)  # epoch 2 of a 5 → 0 ramp over 2 epochs
    metrics = pd.read_csv(result.metrics_csv)
    assert metrics["ppi"].tolist() == [0, 1] and np.isfinite(metrics["train_ad"].iloc[1])


@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted_run(tmp_path, cli, one_thread):
    recipe = _recipe_file(tmp_path, size=96, epochs=4)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "ppi_cli", "train", "--recipe", str(recipe), "--out", str(killed),
                             "--device", "cpu"], cwd=ROOT, env=_subprocess_env(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (killed / "last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    done = load_checkpoint(killed / "last.pt")["progress"]["epoch"]
    assert 1 <= done < 4, f"the kill did not land mid-run (epoch {done}); stderr: {err.decode()[-500:]}"
    resumed = cli("train", "--recipe", recipe, "--out", killed, "--resume", "--device", "cpu")
    assert resumed.exit_code == 0, resumed.stderr
    straight = cli("train", "--recipe", recipe, "--out", tmp_path / "straight", "--device", "cpu")
    assert straight.exit_code == 0, straight.stderr
    a, b = load_checkpoint(killed / "last.pt"), load_checkpoint(tmp_path / "straight" / "last.pt")
    assert a["progress"]["epoch"] == b["progress"]["epoch"] == 4
    for key, value in b["state_dict"].items():
        assert torch.equal(a["state_dict"][key], value), key
    losses = ["train_cls", "train_con", "train_ad", "val_loss"]
    rows = [pd.read_csv(run / "metrics.csv")[losses] for run in (killed, tmp_path / "straight")]
    assert rows[0].equals(rows[1])


def test_channels_last_on_the_cpu_is_opt_in_and_trains_the_same_model(tmp_path, one_thread):
    weights, metrics = {}, {}
    for on in (False, True):
        recipe = load_recipe(_recipe_file(tmp_path, epochs=2), {"schedule.channels_last_cpu": on})
        split = _split(recipe)
        result = fit(recipe, cache_dir=None, split=split, out_dir=tmp_path / f"run-{on}", device="cpu")
        weights[on] = load_checkpoint(result.last_checkpoint)["state_dict"]
        metrics[on] = pd.read_csv(result.metrics_csv)
        conv = next(v for v in weights[on].values() if v.ndim == 4 and v.shape[1] > 1 and v.shape[2] > 1)
        assert conv.is_contiguous(memory_format=torch.channels_last) == on  # the layout the run trained in
    # other kernels, the same arithmetic up to rounding; Adam moves a weight by up to lr per step whatever
    # its gradient's size, so rounding-level differences in tiny gradients show at that scale, not below
    lr = recipe.optim.lr
    for key, value in weights[False].items():
        diff = (weights[True][key].double() - value.double()).abs().max().item()
        assert diff <= lr, (key, diff)
    assert np.allclose(metrics[True]["val_loss"], metrics[False]["val_loss"], rtol=1e-3)


@pytest.mark.slow
def test_torchrun_two_ranks_end_with_equal_checkpoints(tmp_path):
    recipe = _recipe_file(tmp_path, epochs=1, extra="ppi: {start_epoch: 0}\n")
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
           str(29500 + os.getpid() % 1000), "-m", "ppi_cli", "train", "--recipe", str(recipe), "--out", str(out),
           "--device", "cpu"]
    done = subprocess.run(cmd, cwd=ROOT, env=_subprocess_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    payload = load_checkpoint(out / "last.pt")
    ranks = payload["meta"]["distributed"]
    assert ranks["world_size"] == 2 and len(set(ranks["weights_sha256"])) == 1
    model, _ = load_model(out / "last.pt")
    assert weights_digest(model) == ranks["weights_sha256"][0]  # the file holds what both ranks hold
    assert pd.read_csv(out / "metrics.csv")["ppi"].tolist() == [1]


def test_torchrun_with_one_rank_trains_under_ddp(tmp_path, monkeypatch, one_thread):
    """`torchrun --nproc-per-node 1` takes the multi-process path (process group, DDP), then leaves the group."""
    import socket

    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(key, value)
    assert not init_distributed("cpu").enabled  # such variables alone (another launcher's, say): one process
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "one-rank")  # torchrun's own
    wrapped = []

    class Spy(torch.nn.parallel.DistributedDataParallel):
        def __init__(self, module, *args, **kwargs):
            wrapped.append(module)
            super().__init__(module, *args, **kwargs)

    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", Spy)
    recipe = load_recipe(_recipe_file(tmp_path, size=32, epochs=2))
    result = fit(recipe, cache_dir=None, split=_split(recipe), out_dir=tmp_path / "run",
                 device="cpu")
    assert len(wrapped) == 1 and not dist.is_initialized()
    ranks = load_checkpoint(result.last_checkpoint)["meta"]["distributed"]
    assert ranks["world_size"] == 1 and len(ranks["weights_sha256"]) == 1


def test_best_checkpoint_of_a_ppi_run_is_never_a_warm_up_epoch(tmp_path, monkeypatch, one_thread):
    """The warm-up epoch scores best on validation here, yet best.pt must hold a model trained with PPI."""
    import ppi_cli.engine.trainer as trainer

    scores = iter([0.9, 0.6, 0.7])  # epoch 1 (warm-up), epoch 2 (first PPI epoch), epoch 3
    threshold = {"value": 0.5, "source": "test"}
    monkeypatch.setattr(trainer, "_validate", lambda *args, **kwargs: (next(scores), 0.5, threshold))
    recipe = load_recipe(_recipe_file(tmp_path, size=32, epochs=3))
    assert recipe.ppi.enabled and recipe.ppi.start_epoch == 1
    result = fit(recipe, cache_dir=None, split=_split(recipe), out_dir=tmp_path / "run",
                 device="cpu")
    assert (result.best_epoch, result.best_metric) == (3, 0.7)
    assert load_checkpoint(result.best_checkpoint)["meta"]["epoch"] == 3


@pytest.mark.parametrize(("last_auc", "falls_back"), [(0.74, True), (0.76, False)])
def test_fallback_drop_rejects_a_ppi_run_that_validates_past_it_below_its_warm_up(tmp_path, monkeypatch, one_thread,
                                                                                   last_auc, falls_back):
    """`ppi.fallback_drop: 0.2` under `eval.select: loss`: warm-up epochs 1-2 (the best AUC: epoch 1, 0.95; the
    lower loss: epoch 2), PPI epochs 3-4 (kept: epoch 4, the lower loss). Epoch 4 at AUC 0.74 is 0.21 below the
    warm-up's best (against epoch 2's 0.9 it would be 0.16): PPI is rejected, the recipe trains without PPI in
    baseline-fallback/ (its kept epoch: 3) and that best.pt becomes the run's, byte for byte; at 0.76 (0.19
    below) the PPI model stays."""
    import ppi_cli.engine.trainer as trainer

    scores = iter([(0.95, 0.5), (0.9, 0.4), (0.7, 0.6), (last_auc, 0.3),  # the PPI run
                   (0.9, 0.5), (0.92, 0.3), (0.93, 0.2), (0.91, 0.25)])  # the fallback's
    threshold = {"value": 0.5, "source": "test"}
    monkeypatch.setattr(trainer, "_validate", lambda *args, **kwargs: (*next(scores), threshold))
    guard = "eval:\n  select: loss\nppi:\n  start_epoch: 2\n  fallback_drop: 0.2\n"
    recipe = load_recipe(_recipe_file(tmp_path, size=32, epochs=4, extra=guard))
    out = tmp_path / "run"
    result = fit(recipe, cache_dir=None, split=_split(recipe), out_dir=out, device="cpu")
    log = (out / "train.log").read_text()
    if falls_back:
        fallback = out / "baseline-fallback"
        assert result.rejected.startswith("PPI rejected: the kept PPI epoch 4 has val auc 0.740, more than "
                                          "ppi.fallback_drop 0.2 below warm-up epoch 1's 0.950")
        assert result.rejected.endswith("; best.pt is the same recipe trained without PPI (baseline-fallback/)")
        assert f"warning: {result.rejected}" in log
        assert not load_recipe(fallback / "recipe.yaml").ppi.enabled
        assert pd.read_csv(fallback / "metrics.csv")["ppi"].tolist() == [0, 0, 0, 0]
        assert (result.best_checkpoint, result.best_epoch) == (out / "best.pt", 3)
        assert (out / "best.pt").read_bytes() == (fallback / "best.pt").read_bytes()
        record = json.loads((out / "ppi-rejected.json").read_text())
        assert (record["ppi_best_epoch"], record["fallback_best_epoch"]) == (4, 3)
        again = fit(recipe, cache_dir=None, split=_split(recipe), out_dir=out, device="cpu", resume=True)
        assert again.rejected == result.rejected and again.best_epoch == 3  # finished: nothing trains again
        assert (out / "best.pt").read_bytes() == (fallback / "best.pt").read_bytes()
    else:
        assert (result.best_epoch, result.best_metric, result.rejected) == (4, last_auc, "")
        assert load_checkpoint(out / "best.pt")["meta"]["epoch"] == 4
        assert not (out / "ppi-rejected.json").exists() and not (out / "baseline-fallback").exists()
        assert "PPI rejected" not in log and "PPI made validation worse" in log  # still below: still reported


def test_fallback_drop_without_a_warm_up_is_refused_at_load(tmp_path):
    path = _recipe_file(tmp_path, size=32, epochs=1, extra="ppi:\n  start_epoch: 0\n  fallback_drop: 0.2\n")
    with pytest.raises(ConfigError, match="ppi.fallback_drop 0.2 compares the kept PPI epoch with the best warm-up "
                                          "epoch, and ppi.start_epoch is 0"):
        load_recipe(path)


@pytest.mark.parametrize(("kept_auc", "falls_back"), [(0.90, True), (0.92, False)])
def test_fallback_against_the_baseline_keeps_ppi_only_where_it_validates_as_well(tmp_path, monkeypatch, one_thread,
                                                                                 kept_auc, falls_back):
    """`ppi.fallback_against: baseline`, `fallback_drop: 0.02`, `eval.select: loss`, no warm-up: the PPI run keeps
    epoch 2 (the lower loss), the run without PPI (trained in baseline-fallback/ either way) keeps its epoch 2 at
    0.93. PPI at 0.90 is 0.03 below it: rejected, and best.pt is the baseline's, byte for byte; at 0.92 (0.01 below)
    PPI stands and best.pt stays its own."""
    import ppi_cli.engine.trainer as trainer

    scores = iter([(0.95, 0.5), (kept_auc, 0.3), (0.99, 0.4),  # the PPI run: its best AUC is not the kept epoch
                   (0.9, 0.5), (0.93, 0.2), (0.95, 0.25)])  # the run without PPI
    threshold = {"value": 0.5, "source": "test"}
    monkeypatch.setattr(trainer, "_validate", lambda *args, **kwargs: (*next(scores), threshold))
    guard = "eval:\n  select: loss\nppi:\n  start_epoch: 0\n  fallback_drop: 0.02\n  fallback_against: baseline\n"
    recipe = load_recipe(_recipe_file(tmp_path, size=32, epochs=3, extra=guard))
    out, fallback = tmp_path / "run", tmp_path / "run" / "baseline-fallback"
    result = fit(recipe, cache_dir=None, split=_split(recipe), out_dir=out, device="cpu")
    assert pd.read_csv(fallback / "metrics.csv")["ppi"].tolist() == [0, 0, 0]  # trained whatever PPI did
    assert pd.read_csv(out / "metrics.csv")["ppi"].tolist() == [1, 1, 1]
    if falls_back:
        assert result.rejected == ("PPI rejected: the kept PPI epoch 2 has val auc 0.900, more than ppi.fallback_drop "
                                   "0.02 below the recipe without PPI (baseline-fallback/, epoch 2: 0.930); best.pt is "
                                   "that run's")
        assert f"warning: {result.rejected}" in (out / "train.log").read_text()
        assert (out / "best.pt").read_bytes() == (fallback / "best.pt").read_bytes()
        record = json.loads((out / "ppi-rejected.json").read_text())
        assert (record["ppi_best_epoch"], record["fallback_best_epoch"]) == (2, 2)
        again = fit(recipe, cache_dir=None, split=_split(recipe), out_dir=out, device="cpu", resume=True)
        assert again.rejected == result.rejected  # finished: nothing trains again (the scores are spent)
        assert (out / "best.pt").read_bytes() == (fallback / "best.pt").read_bytes()
    else:
        assert (result.best_epoch, result.best_metric, result.rejected) == (2, kept_auc, "")
        assert load_checkpoint(out / "best.pt")["meta"]["epoch"] == 2
        assert load_checkpoint(out / "best.pt")["meta"]["recipe"]["ppi"]["enabled"]
        assert not (out / "ppi-rejected.json").exists()


@pytest.mark.parametrize("kept_auc", [0.90, 0.92])
def test_the_guard_reads_a_finished_run_without_ppi_instead_of_training_it_again(tmp_path, monkeypatch, one_thread,
                                                                                capsys, kept_auc):
    """As above, with the run without PPI already finished in another folder (a study's baseline arm, its recipe
    without the guard: a field of PPI): the PPI run trains only itself (three validations, not six) and compares
    its kept epoch with the arm's; rejected, best.pt is the arm's, byte for byte, and the record names the arm."""
    import ppi_cli.engine.trainer as trainer

    scores = iter([(0.9, 0.5), (0.93, 0.2), (0.95, 0.25),  # the arm
                   (0.95, 0.5), (kept_auc, 0.3), (0.99, 0.4)])  # the PPI run
    threshold = {"value": 0.5, "source": "test"}
    monkeypatch.setattr(trainer, "_validate", lambda *args, **kwargs: (*next(scores), threshold))
    guard = "eval:\n  select: loss\nppi:\n  start_epoch: 0\n  fallback_drop: 0.02\n  fallback_against: baseline\n"
    recipe = load_recipe(_recipe_file(tmp_path, size=32, epochs=3, extra=guard))
    arm, out = tmp_path / "arm", tmp_path / "run"
    fit(recipe.replace(**{"ppi.enabled": False, "ppi.fallback_drop": None}), cache_dir=None, split=_split(recipe),
        out_dir=arm, device="cpu")
    result = fit(recipe, cache_dir=None, split=_split(recipe), out_dir=out, device="cpu", without_ppi=arm)
    assert next(scores, None) is None and not (out / "baseline-fallback").exists()
    assert f"run: the recipe without PPI is the finished run in {arm}; not trained again" in capsys.readouterr().err
    if kept_auc == 0.90:
        assert result.rejected.endswith("0.02 below the recipe without PPI (../arm/, epoch 2: 0.930); best.pt is that "
                                        "run's")
        assert (out / "best.pt").read_bytes() == (arm / "best.pt").read_bytes()
        assert json.loads((out / "ppi-rejected.json").read_text())["fallback"] == os.path.join("..", "arm")
    else:
        assert (result.best_epoch, result.best_metric, result.rejected) == (2, kept_auc, "")
        assert load_checkpoint(out / "best.pt")["meta"]["recipe"]["ppi"]["enabled"]


def test_a_run_without_ppi_serves_the_guard_only_finished_and_the_same_training(tmp_path, monkeypatch, one_thread):
    """`finished_run`: the arm serves where it is the recipe without PPI, trained to its last epoch on the same split
    and data; fields under `ppi.` may differ, since a run without PPI reads none of them (trained with other ones
    it learns the same weights), and so may the labels (name, description)."""
    import ppi_cli.engine.run_state as run_state
    import ppi_cli.engine.trainer as trainer

    recipe = load_recipe(_recipe_file(tmp_path, size=32, epochs=2))
    plain, split, arm = recipe.replace(**{"ppi.enabled": False}), _split(recipe), tmp_path / "arm"
    fit(plain, cache_dir=None, split=split, out_dir=arm, device="cpu")
    progress = load_checkpoint(arm / "last.pt")["progress"]
    done = finished_run(arm, plain, None, split)
    assert done is not None and (done.best_epoch, done.best_metric, done.best_checkpoint) == (
        progress["best_epoch"], pytest.approx(progress["best_metric"], nan_ok=True), arm / "best.pt")
    other_ppi = plain.replace(**{"ppi.beta": 7.0, "ppi.coverage": 0.5, "ppi.start_epoch": 0})
    assert finished_run(arm, other_ppi, None, split) is not None
    fit(other_ppi, cache_dir=None, split=split, out_dir=tmp_path / "other", device="cpu")
    weights = [load_checkpoint(run / "best.pt")["state_dict"] for run in (arm, tmp_path / "other")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert finished_run(arm, plain.replace(**{"name": "another", "description": "labels"}), None, split) is not None
    assert finished_run(arm, recipe, None, split) is None  # with PPI
    assert finished_run(arm, plain.replace(**{"optim.lr": 0.5}), None, split) is None  # another training
    assert finished_run(arm, plain.replace(**{"schedule.epochs": 3}), None, split) is None
    moved = Split(split.train[1:], np.r_[split.val, split.train[:1]], split.test)
    assert finished_run(arm, plain, None, moved) is None  # another split
    with monkeypatch.context() as patch:
        patch.setattr(run_state, "describe_cache", lambda kind, cache_dir: {"hash": "another cache"})
        assert finished_run(arm, plain, None, split) is None  # other data
    calls = iter([None])

    def interrupted(*args, **kwargs):  # the second epoch's validation never comes: an arm still training
        next(calls)
        return 0.9, 0.5, {"value": 0.5, "source": "test"}

    monkeypatch.setattr(trainer, "_validate", interrupted)
    with pytest.raises(StopIteration):
        fit(plain, cache_dir=None, split=split, out_dir=tmp_path / "busy", device="cpu")
    assert (tmp_path / "busy" / "last.pt").is_file() and finished_run(tmp_path / "busy", plain, None, split) is None


def test_only_ppi_epochs_read_the_answer_keys_regions(tmp_path, monkeypatch, one_thread):
    """Warm-up epochs (and a baseline's) build their training data without lesion masks; PPI epochs with them."""
    import ppi_cli.engine.trainer as trainer

    asked: list[bool] = []
    served: list[bool] = []

    def spy(*args, **kwargs):
        dataset = build_dataset(*args, **kwargs)
        if kwargs.get("train"):
            asked.append(kwargs.get("regions", True))
            served.append("mask" in dataset[0])
        return dataset

    monkeypatch.setattr(trainer, "build_dataset", spy)
    recipe = load_recipe(_recipe_file(tmp_path, size=32, epochs=3))
    assert recipe.ppi.enabled and recipe.ppi.start_epoch == 1
    fit(recipe, cache_dir=None, split=_split(recipe), out_dir=tmp_path / "ppi", device="cpu")
    assert asked == served == [False, True, True]  # epoch 1 warms up; the generated task has masks
    asked.clear()
    served.clear()
    baseline = dataclasses.replace(recipe, ppi=dataclasses.replace(recipe.ppi, enabled=False))
    fit(baseline, cache_dir=None, split=_split(baseline), out_dir=tmp_path / "baseline", device="cpu")
    assert asked == served == [False, False, False]


@pytest.mark.parametrize(("select", "kept"), [("metric", 2), ("loss", 4), ("last", 5)])
def test_eval_select_chooses_the_epoch_best_pt_keeps(tmp_path, monkeypatch, one_thread, select, kept):
    """Validation (AUC, loss) per epoch; epoch 1 is warm-up. metric: AUC first, the loss breaks the tie of
    epochs 2 and 3; loss: the lowest loss, the AUC breaks the tie of epochs 4 and 5; last: the last epoch."""
    import ppi_cli.engine.trainer as trainer

    scores = iter([(0.95, 0.1), (0.9, 0.5), (0.9, 0.6), (0.8, 0.3), (0.7, 0.3)])
    threshold = {"value": 0.5, "source": "test"}
    monkeypatch.setattr(trainer, "_validate", lambda *args, **kwargs: (*next(scores), threshold))
    recipe = load_recipe(_recipe_file(tmp_path, size=32, epochs=5, extra=f"eval:\n  select: {select}\n"))
    result = fit(recipe, cache_dir=None, split=_split(recipe), out_dir=tmp_path / "run", device="cpu")
    assert result.best_epoch == kept
    assert load_checkpoint(result.best_checkpoint)["meta"]["epoch"] == kept


@pytest.mark.parametrize(("clean_loss", "chosen"), [(0.2, "clean"), (0.45, "running")])
def test_intervened_norm_select_trains_both_modes_and_keeps_the_better_validated(tmp_path, monkeypatch, one_thread,
                                                                                 clean_loss, chosen):
    """`ppi.intervened_norm: select` under `eval.select: loss`: the running run's kept epoch has validation loss
    0.4; the clean run's 0.2 (clean wins) or 0.45 (running wins). Epoch 1 is warm-up in both."""
    import ppi_cli.engine.trainer as trainer

    scores = iter([(0.9, 0.1), (0.8, 0.4), (0.85, 0.5),  # running: kept epoch 2
                   (0.9, 0.1), (0.7, 0.6), (0.9, clean_loss)])  # clean: kept epoch 3
    threshold = {"value": 0.5, "source": "test"}
    monkeypatch.setattr(trainer, "_validate", lambda *args, **kwargs: (*next(scores), threshold))
    recipe = load_recipe(_recipe_file(tmp_path, size=32, epochs=3,
                                      extra="eval:\n  select: loss\nppi:\n  intervened_norm: select\n"))
    out = tmp_path / "run"
    result = fit(recipe, cache_dir=None, split=_split(recipe), out_dir=out, device="cpu")
    record = json.loads((out / "norm-select.json").read_text())
    assert record["chosen"] == chosen and record["best_epochs"] == {"running": 2, "clean": 3}
    assert record["keys"]["running"][0] == -0.4 and record["keys"]["clean"][0] == -clean_loss
    for mode in ("running", "clean"):  # each mode trained in its own folder, with its own recipe
        assert load_recipe(out / f"norm-{mode}" / "recipe.yaml").ppi.intervened_norm == mode
    assert result.best_checkpoint == out / "best.pt" and result.best_epoch == {"running": 2, "clean": 3}[chosen]
    assert (out / "best.pt").read_bytes() == (out / f"norm-{chosen}" / "best.pt").read_bytes()
    assert load_checkpoint(out / "best.pt")["meta"]["epoch"] == result.best_epoch
    # a study finds the runs to resume, and the folder says what was asked for
    assert trainer.has_last_checkpoint(out) and not (out / "last.pt").exists()
    assert load_recipe(out / "recipe.yaml").ppi.intervened_norm == "select"
    # no validation rows, nothing to choose on: refused before any training
    bare = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, val_fraction=0.0))
    with pytest.raises(ConfigError, match="intervened_norm: select chooses on the validation split"):
        fit(bare, cache_dir=None, split=_split(bare), out_dir=tmp_path / "bare", device="cpu")
    assert not (tmp_path / "bare").exists()


def _fit_one_epoch_runs(tmp_path, monkeypatch, losses: list[float], ppi_extra: str) -> Path:
    """Train a one-epoch recipe with `ppi.look_level: select` (columns swapped, PPI from the start) and the PPI
    fields `ppi_extra`, each run's validation loss the next of `losses` in training order; its folder."""
    import ppi_cli.engine.trainer as trainer

    served = iter(losses)
    threshold = {"value": 0.5, "source": "test"}
    monkeypatch.setattr(trainer, "_validate", lambda *args, **kwargs: (0.9, next(served), threshold))
    look = "eval:\n  select: loss\nppi:\n  look_level: select\n  fill: swap\n  swap_look: columns\n" \
           "  start_epoch: 0\n" + ppi_extra
    recipe = load_recipe(_recipe_file(tmp_path, size=32, epochs=1, extra=look))
    out = tmp_path / "run"
    fit(recipe, cache_dir=None, split=_split(recipe), out_dir=out, device="cpu")
    return out


def test_look_level_select_under_norm_select_chooses_a_level_in_each_norm_run(tmp_path, monkeypatch, one_thread):
    """`ppi.look_level: select` with `ppi.intervened_norm: select`: each batch-norm run trains both look levels in its
    own folder and keeps the level of the lower validation loss; the norm choice is then made between the two
    kept runs. Validation losses at the kept epochs: running/swap 0.4, running/keep 0.3, clean/swap 0.25,
    clean/keep 0.5, so running keeps `keep`, clean keeps `swap`, and clean/swap (0.25) wins."""
    import ppi_cli.engine.trainer as trainer

    out = _fit_one_epoch_runs(tmp_path, monkeypatch, [0.4, 0.3, 0.25, 0.5], "  intervened_norm: select\n")
    for norm, kept, keys in (("running", "keep", (-0.4, -0.3)), ("clean", "swap", (-0.25, -0.5))):
        record = json.loads((out / f"norm-{norm}" / "level-select.json").read_text())
        assert record["chosen"] == kept and (record["keys"]["swap"][0], record["keys"]["keep"][0]) == keys
        for level in ("swap", "keep"):
            trained = load_recipe(out / f"norm-{norm}" / f"level-{level}" / "recipe.yaml").ppi
            assert (trained.intervened_norm, trained.look_level) == (norm, level)
        assert (out / f"norm-{norm}" / "best.pt").read_bytes() == \
            (out / f"norm-{norm}" / f"level-{kept}" / "best.pt").read_bytes()
    record = json.loads((out / "norm-select.json").read_text())
    assert record["chosen"] == "clean" and (record["keys"]["running"][0], record["keys"]["clean"][0]) == (-0.3, -0.25)
    assert (out / "best.pt").read_bytes() == (out / "norm-clean" / "level-swap" / "best.pt").read_bytes()
    assert trainer.has_last_checkpoint(out)  # the nested runs are found to resume


@pytest.mark.parametrize(("top_loss", "kept"), [(0.2, "top"), (0.3, "keep")])
def test_look_choices_keep_top_trains_keep_and_top_and_keeps_the_lower_validation_loss(tmp_path, monkeypatch,
                                                                                       one_thread, top_loss, kept):
    """`ppi.look_choices: keep-top`: `look_level: select` trains `keep` then `top`, each in its own folder with its
    own recipe, and keeps the lower validation loss (keep's 0.3; a tie keeps `keep`); no `swap` run is trained."""
    import ppi_cli.engine.trainer as trainer

    out = _fit_one_epoch_runs(tmp_path, monkeypatch, [0.3, top_loss], "  look_choices: keep-top\n")
    record = json.loads((out / "level-select.json").read_text())
    assert record["chosen"] == kept and (record["keys"]["keep"][0], record["keys"]["top"][0]) == (-0.3, -top_loss)
    for level in ("keep", "top"):
        assert load_recipe(out / f"level-{level}" / "recipe.yaml").ppi.look_level == level
    assert not (out / "level-swap").exists()
    assert (out / "best.pt").read_bytes() == (out / f"level-{kept}" / "best.pt").read_bytes()
    assert trainer.has_last_checkpoint(out) and not (out / "last.pt").exists()  # top's run is found to resume


def test_look_choices_without_look_level_select_exits_1_in_one_line(tmp_path):
    extra = "ppi:\n  look_choices: keep-top\n  fill: swap\n  swap_look: columns\n  look_level: keep\n"
    with pytest.raises(ConfigError, match="look_choices 'keep-top' says what ppi.look_level: select chooses between"):
        load_recipe(_recipe_file(tmp_path, size=32, epochs=1, extra=extra))


def test_look_level_select_without_a_swapped_look_exits_1_in_one_line(tmp_path):
    path = _recipe_file(tmp_path, size=32, epochs=1, extra="ppi:\n  look_level: select\n")
    with pytest.raises(ConfigError, match="look_level: select trains twice .* no look is swapped"):
        load_recipe(path)


@pytest.mark.parametrize(("worse", "limit", "drop"), [(1.0, 0.5, "0.02"), (0.0, 5.0, "0.02"), (1.0, 0.5, "null")])
def test_the_training_fit_guard_rejects_ppi_that_fits_its_training_images_worse(tmp_path, monkeypatch, one_thread,
                                                                                worse, limit, drop):
    """`ppi.fallback_fit` beside `fallback_drop`: both runs validate alike (the drop guard passes), and the decision
    is the training fit's, read from the two runs' metrics.csv (the PPI run's train_cls read `worse` higher than it
    was, so the case does not rest on how three epochs of this task happen to train): PPI's mean over its three
    epochs more than `limit` above the run without PPI's is rejected, best.pt the baseline's, byte for byte, and the
    record says why; at 5 (no loss is that far above) PPI stands. With `fallback_drop: null` the whole guard is off,
    this rule too: nothing trains without PPI and PPI stands."""
    import ppi_cli.engine.trainer as trainer

    scores = iter([(0.9, 0.5), (0.93, 0.2), (0.95, 0.25)] * 2)  # the PPI run, then the run without PPI: alike
    threshold = {"value": 0.5, "source": "test"}
    monkeypatch.setattr(trainer, "_validate", lambda *args, **kwargs: (*next(scores), threshold))
    read = trainer._epoch_rows
    out, fallback = tmp_path / "run", tmp_path / "run" / "baseline-fallback"

    def shifted(result):
        rows = read(result)
        return [{**r, "train_cls": r["train_cls"] + worse} for r in rows] if result.out_dir == out else rows

    monkeypatch.setattr(trainer, "_epoch_rows", shifted)
    guard = (f"eval:\n  select: loss\nppi:\n  start_epoch: 0\n  fallback_drop: {drop}\n  fallback_against: baseline\n"
             f"  fallback_fit: {limit}\n")
    recipe = load_recipe(_recipe_file(tmp_path, size=32, epochs=3, extra=guard))
    result = fit(recipe, cache_dir=None, split=_split(recipe), out_dir=out, device="cpu")
    if drop == "null":
        assert (result.best_epoch, result.rejected) == (2, "") and not fallback.exists()
        assert next(scores) == (0.9, 0.5)  # the run without PPI never validated
        return
    ppi_fit, plain_fit = (pd.read_csv(run / "metrics.csv")["train_cls"].mean() for run in (out, fallback))
    if ppi_fit + worse > plain_fit + limit:
        assert worse == 1.0  # the case that must reject does; the other must not come here
        assert result.rejected == (f"PPI rejected: its training loss (train_cls) over the last 3 epochs is "
                                   f"{ppi_fit + worse:.3f}, more than ppi.fallback_fit {limit:g} above the recipe "
                                   f"without PPI's {plain_fit:.3f} (baseline-fallback/): PPI kept the classifier from "
                                   "fitting its training images; best.pt is that run's")
        assert (out / "best.pt").read_bytes() == (fallback / "best.pt").read_bytes()
        assert json.loads((out / "ppi-rejected.json").read_text())["reason"] == result.rejected
    else:
        assert worse == 0.0
        assert (result.best_epoch, result.rejected) == (2, "")
        assert load_checkpoint(out / "best.pt")["meta"]["recipe"]["ppi"]["enabled"]
        assert not (out / "ppi-rejected.json").exists()
