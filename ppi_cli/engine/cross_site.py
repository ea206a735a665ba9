# SPDX-License-Identifier: MIT
"""`ppi cross-site`: train on one site, test on its hold-out and on every other site (paper §4.3, Table 3).

For each training site X, a subject-grouped, label-stratified hold-out of X is set aside (the
diagonal cell), a validation share of the rest selects the model, and the model is evaluated on
the hold-out and on all rows of each other test site. Layout of the study folder:

    study.json                         the data, seed and hold-out share every cell must agree on
    <variant>/recipe.yaml, study.json  variant = ppi (the recipe) or baseline (ppi.enabled false)
    <variant>/train-X/                 the training run on site X (checkpoints, split.json)
    <variant>/train-X/test-Y/predictions.csv   one cell, part "X>Y"
    cells.csv, matrix-*.csv/.md, gap.csv/.md, cross_site.md, heatmap.png   written by collect

A cell runs alone (`--train A --test B`): the site's model is trained once and reused by its
other cells. Collecting needs only the files.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli.config import Recipe
from ppi_cli.console import log, warn
from ppi_cli.data.splits import Split, holdout_split
from ppi_cli.engine.run_checks import check_study
from ppi_cli.engine.run_state import ppi_rejected
from ppi_cli.engine.study import (
    StudyClock,
    StudyData,
    check_twin,
    predict_rows,
    resolve_study,
    train_once,
    write_study_record,
)
from ppi_cli.errors import ConfigError, DataError
from ppi_cli.files import write_csv
from ppi_cli.reports.cross_site import cross_site_matrix, ppi_reading, site_gaps, write_cross_site_tables
from ppi_cli.reports.metrics import binary_metrics, cell_flag
from ppi_cli.reports.plots import heatmap_figure
from ppi_cli.reports.predictions import PREDICTIONS_FILE, read_predictions, write_predictions
from ppi_cli.workspace import Workspace

__all__ = ["CrossSiteConfig", "CrossSiteOutcome", "CrossSiteRequest", "site_split", "variants_of", "run_cross_site",
           "collect_cross_site", "cross_site_study"]

VARIANT_ORDER = ("ppi", "baseline")


@dataclass(frozen=True)
class CrossSiteConfig:
    """Options of `ppi cross-site`, one-to-one with its flags."""

    recipe: Recipe
    data: StudyData
    out: Path
    train_sites: tuple[str, ...] | None = None  # None: every site (`--train all`)
    test_sites: tuple[str, ...] | None = None  # None: every site; the training site's hold-out always runs
    baseline: bool = False  # also run the recipe with ppi.enabled false, for the side-by-side matrices
    seed: int = 0  # seeds the hold-outs (training uses the recipe's seed)
    device: str = "auto"
    bootstrap: int = 2000  # resamples for the paired comparison of the two variants
    train_data: StudyData | None = None  # where the models train if not on `data`: its twin (`ppi sweep --twin`)
    # a study of the recipe without PPI on the same data, seed and hold-outs (a sweep's baseline arm), whose
    # finished train-X runs the collapse guard reads instead of training them again; None: this study's own
    # baseline arm (`--baseline`, or the baseline recipe run into the same --out before)
    baseline_from: Path | None = None


@dataclass
class CrossSiteOutcome:
    """What a `ppi cross-site` call did and found."""

    out: Path
    ran: list[str]  # cells run now, as "variant:X>Y"
    matrices: dict[str, Any]  # variant -> matrix DataFrame (Table 3 layout)
    gap: Any | None = None  # `site_gaps(matrices)`: in-site vs cross-site per variant and training site
    written: list[Path] = field(default_factory=list)
    reading: tuple[Any, str] | None = None  # `ppi_reading(matrices)`: did PPI help, row by row (with --baseline)


def variants_of(recipe: Recipe, baseline: bool) -> dict[str, Recipe]:
    """The recipes a study runs: the recipe itself (named ppi or baseline), plus its no-PPI twin with `baseline`."""
    variants = {"ppi" if recipe.ppi.enabled else "baseline": recipe}
    if baseline and recipe.ppi.enabled:
        variants["baseline"] = recipe.replace(**{"ppi.enabled": False})
    return variants


def site_split(data: StudyData, site: str, holdout_fraction: float, val_fraction: float, seed: int) -> Split:
    """Training, validation and hold-out rows of one site, grouped by subject and stratified by label."""
    rows = np.flatnonzero(data.sites == site)
    pool, held = holdout_split(rows, data.labels, data.subjects, holdout_fraction, seed)
    train, val = holdout_split(pool, data.labels, data.subjects, val_fraction, seed + 1)
    return Split(train, val, held)


def _check_sites(requested: Sequence[str] | None, known: Sequence[str], option: str) -> list[str]:
    if requested is None:
        return list(known)
    unknown = [s for s in requested if s not in known]
    if unknown:
        raise ConfigError(f"{option} {','.join(unknown)}: no such site in the cache (sites: {', '.join(known)})",
                          hint=f"{option} {','.join(known)}" + (" or --train all" if option == "--train" else ""))
    return list(dict.fromkeys(requested))


def run_cross_site(cfg: CrossSiteConfig) -> CrossSiteOutcome:
    """Run the requested cells (skipping finished ones), then collect every finished cell.

    Example:
        >>> recipe, data = resolve_study(None, dataset="ga")
        >>> run_cross_site(CrossSiteConfig(recipe, data, Path("runs/xs"), ("A",), ("B", "C", "D")))
    """
    sites = sorted(set(cfg.data.sites) - {"na"})
    if len(sites) < 2:
        raise DataError(f"{cfg.data.name}: the cache has {len(sites)} site(s); a cross-site study needs two or more",
                        hint="prepare a multi-site cache (ppi prepare ga) or use ppi crossval")
    trains = _check_sites(cfg.train_sites, sites, "--train")
    tests = _check_sites(cfg.test_sites, sites, "--test")
    holdout = cfg.recipe.eval.holdout_fraction
    record = {"command": "cross-site", "dataset": cfg.data.kind, "data_hash": cfg.data.data_hash, "seed": cfg.seed,
              "holdout_fraction": holdout, "val_fraction": cfg.recipe.data.val_fraction, "sites": sites}
    fit_data = cfg.data
    if cfg.train_data is not None:  # trained on the twin's rows (the same split), tested on `data`'s
        check_twin(cfg.data, cfg.train_data)
        fit_data, record["train_data_hash"] = cfg.train_data, cfg.train_data.data_hash
    written = write_study_record(cfg.out, record, {})
    hold_outs = {f"site {t} hold-out": site_split(cfg.data, t, holdout, cfg.recipe.data.val_fraction, cfg.seed).test
                 for t in trains}
    check_study(cfg.recipe, cfg.data, hold_outs | {f"site {t}": np.flatnonzero(cfg.data.sites == t)
                                                   for t in tests if t not in trains})
    ran = []
    variants = variants_of(cfg.recipe, cfg.baseline)
    clock = StudyClock(sum(any(not (cfg.out / v / f"train-{t}" / f"test-{s}" / PREDICTIONS_FILE).is_file()
                               for s in {t, *tests}) for v in variants for t in trains))
    arms = cfg.baseline_from or cfg.out  # without one, this study's baseline arm (--baseline, or an earlier call)
    for variant, recipe in variants.items():
        written += write_study_record(cfg.out / variant, {"variant": variant, "seed": cfg.seed,
                                                          "data_hash": cfg.data.data_hash}, {variant: recipe})
    order = sorted(variants, key=lambda v: v != "baseline")  # a site's arm before its PPI run, whose guard reads it
    for train_site, variant in ((t, v) for t in trains for v in order):
        recipe = variants[variant]
        split = site_split(cfg.data, train_site, holdout, recipe.data.val_fraction, cfg.seed)
        train_dir = cfg.out / variant / f"train-{train_site}"
        cells = {train_site: split.test} | {t: np.flatnonzero(cfg.data.sites == t) for t in tests if t != train_site}
        pending = {t: rows for t, rows in cells.items() if not (train_dir / f"test-{t}" / PREDICTIONS_FILE).is_file()}
        if not pending:
            log(f"{variant}: cells {train_site}>{','.join(cells)} finished earlier, skipped")
            continue
        log(f"{variant}: training on site {train_site} ({split.train.size} rows, {split.val.size} for validation, "
            f"{split.test.size} held out)")
        arm = arms / "baseline" / f"train-{train_site}" if variant != "baseline" else None
        best = train_once(recipe, fit_data, split, train_dir, device=cfg.device, without_ppi=arm)
        for test_site, rows in pending.items():
            indices, _, scores = predict_rows(best, recipe, cfg.data, rows, device=cfg.device)
            path = train_dir / f"test-{test_site}" / PREDICTIONS_FILE
            written.append(write_predictions(path, f"{train_site}>{test_site}", indices,
                                             cfg.data.labels[indices], scores))
            ran.append(f"{variant}:{train_site}>{test_site}")
        if clock.total > 1:
            log(clock.done())
    outcome = collect_cross_site(cfg.out, bootstrap=cfg.bootstrap)
    outcome.ran, outcome.written = ran, written + outcome.written
    return outcome


def rejected_sites(out: Path) -> set[str]:
    """The training sites of the cross-site study in `out` whose PPI model `ppi.fallback_drop` rejected."""
    return {run.name.removeprefix("train-") for run in (out / "ppi").glob("train-*") if ppi_rejected(run)}


def collect_cross_site(out: Path, *, bootstrap: int = 2000) -> CrossSiteOutcome:
    """Merge every finished cell into the matrices, the gap table, the heatmap and, with both variants, a
    paired per-cell comparison of PPI against the baseline (DeLong). Needs only the files.

    Raises:
        DataError: The folder has no finished cell.
    """
    import pandas as pd

    rows, written, matrices, parts = [], [], {}, {}
    variants = [v for v in VARIANT_ORDER if (out / v).is_dir()]
    rejected = rejected_sites(out)
    for variant in variants:
        files = sorted((out / variant).glob(f"train-*/test-*/{PREDICTIONS_FILE}"))
        if not files:
            continue
        frame = pd.concat([read_predictions(p) for p in files], ignore_index=True)
        written.append(write_csv(out / variant / PREDICTIONS_FILE, frame, float_format="%.8g"))
        parts[variant] = set(frame["part"])
        for part, cell in frame.groupby("part", sort=True):
            train_site, _, test_site = str(part).partition(">")
            metrics = binary_metrics(cell["label"].to_numpy(), cell["score"].to_numpy())
            flag = cell_flag(metrics.auc, metrics.n, metrics.n_positive,
                             rejected=variant == "ppi" and train_site in rejected)
            if flag:
                warn(f"{variant}: cell {train_site}>{test_site} AUC {metrics.auc:.3f} on {metrics.n} cases is flagged "
                     f"({flag})")
            rows.append({"variant": variant, "train_site": train_site, "test_site": test_site} | metrics.to_dict()
                        | {"flag": flag})
    if not rows:
        raise DataError(f"{out}: no finished cross-site cell here", hint="run `ppi cross-site --out DIR --train A` "
                        "first")
    cells = pd.DataFrame(rows)
    written.append(write_csv(out / "cells.csv", cells))
    # Every site of the data, so a partly run study shows its missing cells as gaps rather than hiding them.
    sites = sorted(set(_recorded_sites(out)) | set(cells["train_site"]) | set(cells["test_site"]))
    for variant in variants:
        part = cells[cells["variant"] == variant]
        if len(part):
            matrices[variant] = cross_site_matrix(part[["train_site", "test_site", "auc"]], sites)
    reading, gap = ppi_reading(matrices, rejected), site_gaps(matrices)
    written += write_cross_site_tables(matrices, out, reading, gap)
    titles = {"ppi": "with PPI", "baseline": "no PPI"}
    flags = {titles[v]: {(r.train_site, r.test_site) for r in cells[cells["variant"] == v].itertuples() if r.flag}
             for v in matrices}
    written.append(heatmap_figure({titles[v]: m[sites] for v, m in matrices.items()}, out / "heatmap.png",
                                  flags=flags))
    if len(matrices) == 2 and parts["ppi"] == parts["baseline"]:
        from ppi_cli.reports.compare import compare_runs

        written += compare_runs(out / "ppi", out / "baseline", out / "compare", n_boot=bootstrap).written
    elif len(matrices) == 2:
        log("the PPI and baseline studies cover different cells; the paired comparison waits until they match")
    return CrossSiteOutcome(out, [], matrices, gap, written, reading)


def _recorded_sites(out: Path) -> list[str]:
    try:
        return list(json.loads((out / "study.json").read_text(encoding="utf-8")).get("sites", []))
    except (OSError, ValueError):
        return []


@dataclass(frozen=True)
class CrossSiteRequest:
    """The raw options of `ppi cross-site`; `cross_site_study` resolves the defaults."""

    train: str | None = None  # "A", "A,B" or "all"; None with collect only
    test: str | None = None  # "B,C,D"; None: every site
    recipe: str | None = None  # None: the GA PPI+WBP recipe
    data: Path | None = None
    dataset: str | None = None
    out: Path | None = None
    baseline: bool = False
    collect: bool = False
    seed: int | None = None
    device: str = "auto"
    bootstrap: int = 2000
    workspace: Path | None = None
    verify: bool = False  # re-hash every cache file (--verify)


def _site_list(value: str | None) -> tuple[str, ...] | None:
    if value is None or value.strip().lower() == "all":
        return None
    return tuple(s.strip() for s in value.split(",") if s.strip())


def cross_site_study(request: CrossSiteRequest) -> CrossSiteOutcome:
    """Resolve `ppi cross-site`'s options against the workspace (GA by default), then run cells or collect.

    Raises:
        ConfigError: Neither `--train` nor `--collect`, or `--collect` with no study to collect.
    """
    ws = Workspace.resolve(request.workspace)
    if request.collect and request.train is None:
        out = request.out or ws.latest_run("cross-site", request.dataset)
        if out is None:
            raise ConfigError(f"{ws.runs}: no cross-site study to collect", hint="pass --out with the study folder")
        return collect_cross_site(out, bootstrap=request.bootstrap)
    if request.train is None:
        raise ConfigError("cross-site needs --train SITE[,SITE] or --train all (or --collect)",
                          hint="ppi cross-site --train A --test B,C,D")
    dataset = request.dataset or (None if request.recipe or request.data else "ga")
    recipe, data = resolve_study(request.recipe, data=request.data, dataset=dataset, workspace=request.workspace,
                                 overrides={"seed": request.seed}, device=request.device,
                                 verify=request.verify)
    out = request.out or ws.new_run("cross-site", data.kind, recipe.name)
    cfg = CrossSiteConfig(recipe, data, out, train_sites=_site_list(request.train), test_sites=_site_list(request.test),
                          baseline=request.baseline, seed=recipe.seed,
                          device=request.device, bootstrap=request.bootstrap)
    return run_cross_site(cfg)
