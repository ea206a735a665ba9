# SPDX-License-Identifier: MIT
"""`ppi crossval`: k-fold cross-validation by subject, one training per fold, collected into a report.

Folds are stratified by label and grouped by subject, seeded, and saved (`folds.json`, and
`fold-k/split.json` with the validation hold-out carved from the other folds): `study.fold_splits`,
the same rows `ppi train --fold k` trains on.
Each fold runs alone with `--fold k` (a scheduler's job array) and leaves `fold-k/predictions.csv`;
`--collect`, or a run of all folds, merges them into `predictions.csv`, `folds.csv`, `summary.md`
and `roc.png` (paper: five-fold cross-validation, AUC ± std).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ppi_cli.checkpoint import load_checkpoint
from ppi_cli.config import Recipe
from ppi_cli.console import log, warn
from ppi_cli.data.splits import Split
from ppi_cli.engine.evaluate import stored_threshold
from ppi_cli.engine.run_checks import check_study
from ppi_cli.engine.run_state import BEST, ppi_rejected
from ppi_cli.engine.study import (
    StudyClock,
    StudyData,
    fold_splits,
    predict_rows,
    resolve_study,
    test_summary,
    train_once,
    write_study_record,
)
from ppi_cli.errors import ConfigError, DataError, ModelError
from ppi_cli.files import write_csv, write_json
from ppi_cli.reports.crossval_report import write_crossval_report
from ppi_cli.reports.predictions import PREDICTIONS_FILE, read_predictions, write_predictions
from ppi_cli.workspace import Workspace

__all__ = ["CrossvalConfig", "CrossvalOutcome", "CrossvalRequest", "run_crossval", "collect_crossval",
           "crossval_study", "fold_checkpoint", "fold_thresholds"]


@dataclass(frozen=True)
class CrossvalConfig:
    """Options of `ppi crossval`, one-to-one with its flags."""

    recipe: Recipe
    data: StudyData
    out: Path
    folds: int = 5  # paper: five folds
    seed: int = 0  # seeds the folds and the validation hold-outs (training uses the recipe's seed)
    fold: int | None = None  # run only this fold (job arrays); None runs every fold not yet finished
    device: str = "auto"
    bootstrap: int = 2000  # resamples for the interval of the mean AUC
    compare: Path | None = None  # another run on the same folds to compare with, after collecting
    # a crossval of the recipe without PPI on the same folds (a sweep's baseline arm), whose finished fold-k runs
    # the collapse guard reads instead of training them again; None: `compare`'s, where it is that run
    baseline_from: Path | None = None


@dataclass
class CrossvalOutcome:
    """What a `ppi crossval` call did."""

    out: Path
    ran: list[int]
    summary: Any | None  # reports.crossval_report.CrossvalSummary once every fold is in
    comparison: Any | None = None
    written: list[Path] = field(default_factory=list)


def _fold_dir(out: Path, k: int) -> Path:
    return out / f"fold-{k}"


def fold_checkpoint(out: Path, k: int) -> Path:
    """The checkpoint fold `k` of the cross-validation in `out` tested (`fold-k/best.pt`)."""
    return _fold_dir(out, k) / BEST


def _run_fold(cfg: CrossvalConfig, split: Split) -> list[Path]:
    k = int(split.fold)
    fold_dir = _fold_dir(cfg.out, k)
    log(f"fold {k}: training on {split.train.size} rows, validating on {split.val.size}, testing on "
        f"{split.test.size}")
    arms = cfg.baseline_from or cfg.compare
    arm = _fold_dir(arms, k) if arms is not None else None
    best = train_once(cfg.recipe, cfg.data, split, fold_dir, device=cfg.device, without_ppi=arm)
    indices, _, scores = predict_rows(best, cfg.recipe, cfg.data, split.test, device=cfg.device)
    path = write_predictions(fold_dir / PREDICTIONS_FILE, f"fold-{k}", indices, cfg.data.labels[indices], scores)
    log(f"fold {k}: {test_summary(cfg.data.labels[indices], scores)}")
    return [fold_dir, path]


def _read_record(out: Path) -> dict[str, Any]:
    path = out / "study.json"
    if not path.is_file():
        raise DataError(f"{out}: not a crossval folder (no study.json)", hint="point --out at a `ppi crossval` run")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise DataError(f"{path}: unreadable study record", hint="re-run the study in a new --out") from None
    if record.get("command") != "crossval":
        raise DataError(f"{out}: a {record.get('command')} study, not a crossval one", hint="use the matching command")
    return record


def fold_thresholds(out: Path, n_folds: int) -> dict[str, tuple[float, str]]:
    """`{"fold-k": (threshold, source)}`: the operating threshold each fold's `best.pt` stores (Youden's J on its
    validation split, or the default 0.5 without one, as its source says); a fold whose checkpoint is gone or
    stores none is left out (and the report draws no confusion matrix)."""
    thresholds = {}
    for k in range(n_folds):
        path = fold_checkpoint(out, k)
        if not path.is_file():
            continue
        try:
            meta = load_checkpoint(path)["meta"]
        except ModelError:
            continue
        value, missing = stored_threshold(meta)
        if missing is None:
            thresholds[f"fold-{k}"] = (value, str(meta["threshold"].get("source", "stored")))
    return thresholds


def collect_crossval(out: Path, *, bootstrap: int = 2000, compare: Path | None = None) -> CrossvalOutcome:
    """Merge every fold's predictions into `predictions.csv` and write the report; needs only the files.

    Args:
        out: The crossval folder (its `study.json` gives the number of folds and the title).
        bootstrap: Resamples for the interval of the mean AUC.
        compare: Another run on the same folds to compare with (`ppi compare`).

    Raises:
        DataError: A fold has not finished (its predictions are missing); the hint names the command.
    """
    import pandas as pd

    record = _read_record(out)
    n_folds = int(record["folds"])
    missing = [k for k in range(n_folds) if not (_fold_dir(out, k) / PREDICTIONS_FILE).is_file()]
    if missing:
        listed = ", ".join(map(str, missing))
        raise DataError(f"{out}: fold(s) {listed} of {n_folds} have not finished",
                        hint=f"run `ppi crossval --out {out} --fold {missing[0]}` (and the others) first")
    frame = pd.concat([read_predictions(_fold_dir(out, k) / PREDICTIONS_FILE) for k in range(n_folds)],
                      ignore_index=True)
    if frame["index"].duplicated().any():
        raise DataError(f"{out}: a manifest row was tested in two folds", hint="the folds were made with other "
                        "settings; re-run in a new --out")
    written = [write_csv(out / PREDICTIONS_FILE, frame, float_format="%.8g")]
    summary = write_crossval_report(frame, out, title=record.get("title", out.name), n_boot=bootstrap,
                                    seed=int(record.get("seed", 0)), thresholds=fold_thresholds(out, n_folds),
                                    rejected={f"fold-{k}" for k in range(n_folds) if ppi_rejected(_fold_dir(out, k))})
    for row in summary.folds.itertuples():
        if getattr(row, "flag", ""):
            warn(f"{out.name}: {row.fold} test AUC {row.auc:.3f} on {row.n} cases is flagged ({row.flag})")
    outcome = CrossvalOutcome(out, [], summary, written=written + summary.written)
    if compare is not None:
        from ppi_cli.reports.compare import compare_runs

        outcome.comparison = compare_runs(out, compare, out / f"compare-{compare.name}", n_boot=bootstrap,
                                          seed=int(record.get("seed", 0)))
        outcome.written += outcome.comparison.written
    return outcome


def run_crossval(cfg: CrossvalConfig) -> CrossvalOutcome:
    """Run (or resume) a cross-validation study, and collect it when every fold was asked for.

    Finished folds (with predictions) are skipped; an interrupted fold resumes from its last
    checkpoint. With `fold` set only that fold runs; otherwise every fold runs and the results are
    collected (and compared with `compare`, when given).

    Example:
        >>> recipe, data = resolve_study("lidc-ppi-wbp-cpu")
        >>> run_crossval(CrossvalConfig(recipe, data, Path("runs/cv"))).summary.headline
    """
    if cfg.fold is not None and not 0 <= cfg.fold < cfg.folds:
        raise ConfigError(f"--fold {cfg.fold}: folds are numbered 0 to {cfg.folds - 1}", hint="--fold 0")
    record = {"command": "crossval", "dataset": cfg.data.kind, "data_hash": cfg.data.data_hash,
              "folds": cfg.folds, "seed": cfg.seed, "val_fraction": cfg.recipe.data.val_fraction,
              "title": f"{cfg.recipe.name} on {cfg.data.name}"}
    written = write_study_record(cfg.out, record, {"main": cfg.recipe})
    splits = fold_splits(cfg.data, cfg.folds, cfg.seed, cfg.recipe.data.val_fraction)
    written.append(write_json(cfg.out / "folds.json", {f"fold-{s.fold}": s.test.tolist() for s in splits}))
    check_study(cfg.recipe, cfg.data, {f"fold {s.fold}": s.test for s in splits
                                       if cfg.fold is None or s.fold == cfg.fold})
    ran = []
    wanted = [cfg.fold] if cfg.fold is not None else list(range(cfg.folds))
    clock = StudyClock(sum(not (_fold_dir(cfg.out, k) / PREDICTIONS_FILE).is_file() for k in wanted))
    for k in wanted:
        if (_fold_dir(cfg.out, k) / PREDICTIONS_FILE).is_file():
            log(f"fold {k}: finished earlier, skipped")
            continue
        written += _run_fold(cfg, splits[k])
        ran.append(k)
        if clock.total > 1:
            log(clock.done())
    if cfg.fold is not None:
        log(f"fold {cfg.fold} done; when every fold is, merge them with `ppi crossval --out {cfg.out} --collect`")
        return CrossvalOutcome(cfg.out, ran, None, written=written)
    outcome = collect_crossval(cfg.out, bootstrap=cfg.bootstrap, compare=cfg.compare)
    outcome.ran, outcome.written = ran, written + outcome.written
    return outcome


@dataclass(frozen=True)
class CrossvalRequest:
    """The raw options of `ppi crossval`; `crossval_study` resolves the defaults."""

    recipe: str | None = None  # None: the dataset's PPI+WBP recipe
    data: Path | None = None
    dataset: str | None = None  # lidc or ga, when both workspace caches exist
    out: Path | None = None  # None: a new runs/crossval-... folder (or the latest one with --collect)
    folds: int | None = None  # None: the recipe's eval.folds
    seed: int | None = None  # None: the recipe's seed; seeds the folds and the training alike
    fold: int | None = None
    collect: bool = False
    compare: Path | None = None
    device: str = "auto"
    bootstrap: int | None = None  # None: the recipe's eval.bootstrap (2000 when collecting alone)
    workspace: Path | None = None
    verify: bool = False  # re-hash every cache file (--verify)


def crossval_study(request: CrossvalRequest) -> CrossvalOutcome:
    """Resolve `ppi crossval`'s options against the workspace, then run, run one fold, or collect.

    Raises:
        ConfigError: `--fold` without `--out` (separate jobs must share one folder), or `--collect` with
            no crossval run to collect.
    """
    ws = Workspace.resolve(request.workspace)
    if request.collect:
        out = request.out or ws.latest_run("crossval", request.dataset)
        if out is None:
            raise ConfigError(f"{ws.runs}: no crossval run to collect", hint="pass --out with the study folder")
        return collect_crossval(out, bootstrap=2000 if request.bootstrap is None else request.bootstrap,
                                compare=request.compare)
    if request.fold is not None and request.out is None:
        raise ConfigError("--fold needs --out: every fold of a study must write to the same folder",
                          hint="--out runs/my-study --fold 0 (and the same --out for the other folds and --collect)")
    recipe, data = resolve_study(request.recipe, data=request.data, dataset=request.dataset,
                                 workspace=request.workspace, overrides={"seed": request.seed}, device=request.device,
                                 verify=request.verify)
    out = request.out or ws.new_run("crossval", data.kind, recipe.name)
    cfg = CrossvalConfig(recipe, data, out, folds=request.folds or recipe.eval.folds,
                         seed=recipe.seed, fold=request.fold,
                         device=request.device,
                         bootstrap=recipe.eval.bootstrap if request.bootstrap is None else request.bootstrap,
                         compare=request.compare)
    return run_crossval(cfg)
