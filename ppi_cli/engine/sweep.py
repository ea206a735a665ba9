# SPDX-License-Identifier: MIT
"""`ppi sweep`: recipe variants × seeds on one cross-site row (or a cross-validation), paired against the
baseline.

A claim about the method is an experiment: every variant (a set of recipe overrides) trains on
the same site with the same seeds as the baseline (the recipe with `ppi.enabled: false`), so the
seed fixes the hold-out, the initialisation and the batches of both, and each seed gives one
paired difference. The summary is the mean of those differences with a 95 % t-interval over the
seeds, for the in-site hold-out, each other site and the mean over the other sites.

With `--train all` each study trains every site's row; the summary holds each row's summary and the whole
matrix: per seed the mean over the rows of their means over the other sites, paired like any site. With a
twin that lacks the cue at every site (`ppi synth ... --shortcut none`) the ceiling trains every row on the
twin, so the whole matrix says how much a model that never leant on the cue gains there, and each variant's
gain is read as a share of it.

Without a training site the study is a cross-validation of the whole cache (LIDC's cohorts): each
(seed, fold) gives a pair, `in-site` is the fold's test rows and the "other sites" are the caches
given as `tests` (e.g. a cohort whose cue is reversed), on which every fold's model is scored whole.

Layout of the sweep folder:

    sweep.json                               what was asked (recipe, data, sites, variants, seeds)
    <variant>/seed-<s>/                      one `ppi cross-site` study (train-X/, test-Y/ …), or one
                                             `ppi crossval` study (fold-k/ …) without a training site
    ceiling/seed-<s>/                        with --twin: the baseline trained on the twin, tested on the data
                                             (with --train all every row trains on the twin's site)
    runs.csv                                 one row per variant, seed (and fold) and test site: the AUC
    cue_effect.csv                           with --twin and one training site: per variant, seed, site and label,
                                             the cue's effect on the kept model's logit
                                             (engine/cue_effect.py)
    energy.csv, energy_summary.csv           with --energy METHOD: per variant, seed (and fold) and training row,
                                             the share of each kept model's map inside the expert masks of the
                                             data; its paired summary (also in summary.md)
    summary.csv, summary.md                  per variant: mean AUC per site; paired Δ with its interval; the
                                             room (1 − the baseline's AUC), the most any model could gain

Finished studies are skipped, so an interrupted sweep resumes where it stopped, and more seeds join a
finished sweep cheaply: runs.csv and the summary cover the seeds asked, so `--seeds 0-9` after
`--seeds 0-4` trains seeds 5-9 and reads all ten (a sweep asked for fewer seeds than its folder holds
says so).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli.console import log, log_prefix, warn
from ppi_cli.engine.cue_effect import EFFECTS_FILE, cue_effects, cue_rows, effects_frame
from ppi_cli.engine.sweep_energy import check_energy, kept_energy
from ppi_cli.errors import ConfigError
from ppi_cli.reports.sweep_summary import (
    ALL,
    BASELINE,
    CEILING,
    MATRIX,
    cells_frame,
    paired_interval,
    summarise_effects,
    summarise_energy,
    summarise_matrix,
    summarise_sweep,
)

__all__ = ["SweepVariant", "SweepConfig", "SweepOutcome", "parse_variant", "parse_seeds", "run_sweep", "seeded",
           "summarise_sweep", "paired_interval", "summarise_effects", "summarise_energy", "BASELINE", "CEILING",
           "MATRIX", "ALL"]



@dataclass(frozen=True)
class SweepVariant:
    """A named set of recipe overrides (`{"ppi.sigma": 0.15}`)."""

    name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SweepConfig:
    """Options of `ppi sweep`, one field per flag (the recipe and data already resolved by the caller)."""

    recipe: str  # a bundled name or a path
    data: Path
    out: Path
    train: str | None  # the training site (the cross-site row), `all`; None: a cross-validation of the whole cache
    variants: tuple[SweepVariant, ...]  # the recipe as it is is always the first non-baseline variant
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    workers: int = 1  # studies side by side, each in its own process on one thread
    device: str = "auto"
    common: Mapping[str, Any] = field(default_factory=dict)  # overrides of every variant, the baseline's too
    twin: Path | None = None  # `--twin`: the ceiling row, the baseline trained on this twin of `data`
    tests: tuple[Path, ...] = ()  # cross-validation only: further caches every fold's model is scored on
    energy: str | None = None  # a saliency method: the share of each kept model's map inside the data's masks

    @property
    def trained_on(self) -> str:
        """The name the in-site rows carry: the training site, or the cross-validated cache's folder."""
        return self.train if self.train is not None else self.data.name


@dataclass
class SweepOutcome:
    """What a sweep found: one row per run and test site, and the paired summary."""

    out: Path
    runs: Any  # DataFrame: variant, seed, [fold,] train_site, test_site, auc
    summary: Any  # DataFrame: variant, site, n, mean, delta, low, high
    written: list[Path] = field(default_factory=list)


def parse_variant(text: str) -> SweepVariant:
    """`NAME:key=value,key=value` (values read as YAML scalars) → a `SweepVariant`.

    Raises:
        ConfigError: No name, an item without `=`, or the reserved name `baseline`.
    """
    from ppi_cli.config import override_value

    name, sep, body = text.partition(":")
    name = name.strip()
    if not sep or not name or name == BASELINE:
        raise ConfigError(f"--variant '{text}': expected NAME:key=value[,key=value] with a name other than "
                          f"'{BASELINE}'", hint="e.g. --variant 'sigma-0.15:ppi.sigma=0.15,ppi.mask=soft'")
    overrides: dict[str, Any] = {}
    for item in filter(None, (i.strip() for i in body.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--variant '{text}': '{item}' is not key=value", hint="e.g. ppi.sigma=0.15")
        overrides[key.strip()] = override_value(value)
    return SweepVariant(name, overrides)


def parse_seeds(text: str) -> tuple[int, ...]:
    """`0,1,2` or `0-4` (inclusive) → seeds.

    Raises:
        ConfigError: Not integers, or fewer than two seeds (no interval without two pairs).
    """
    try:
        if "-" in text.strip("-"):
            first, last = (int(v) for v in text.split("-", 1))
            seeds = tuple(range(first, last + 1))
        else:
            seeds = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"--seeds '{text}': expected e.g. 0-4 or 0,1,2", hint="--seeds 0-4") from None
    if len(set(seeds)) < 2:
        raise ConfigError(f"--seeds '{text}': a paired interval needs two seeds or more", hint="--seeds 0-4")
    return tuple(dict.fromkeys(seeds))


def format_seeds(seeds: Sequence[int]) -> str:
    """Seeds as `--seeds` takes them: `0-4` for a run of consecutive seeds, else `0,2,5` (sorted)."""
    ordered = sorted(set(seeds))
    if len(ordered) > 2 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]}-{ordered[-1]}"
    return ",".join(map(str, ordered))


def _warn_about_earlier_seeds(cfg: SweepConfig) -> None:
    """A sweep into a folder that holds other seeds summarises only the seeds asked: say so, and how to read all."""
    held = {int(d.name.removeprefix("seed-")) for d in (cfg.out / BASELINE).glob("seed-*")
            if d.is_dir() and d.name.removeprefix("seed-").isdigit()}
    earlier = held - set(cfg.seeds)
    if earlier:
        warn(f"{cfg.out} also holds seed(s) {format_seeds(sorted(earlier))} of an earlier sweep; runs.csv and the "
             f"summary cover the seeds asked ({format_seeds(cfg.seeds)}): ask --seeds "
             f"{format_seeds(sorted(held | set(cfg.seeds)))} to read them all (finished studies do not train again)")


def seeded(overrides: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """`overrides` with `{seed}` in a text value replaced by the study's seed, so a variant can name a file of
    the same seed's earlier study (`ppi.mask_model=runs/baseline/seed-{seed}/baseline/train-D/best.pt`)."""
    return {k: v.replace("{seed}", str(seed)) if isinstance(v, str) else v for k, v in overrides.items()}


def _job(recipe_ref: str, data: str, out: str, train: str | None, overrides: dict[str, Any], seed: int,
         device: str, twin: str | None = None, tests: tuple[str, ...] = (),
         effects_twin: str | None = None, carrying: tuple[int, ...] = (),
         arm: str | None = None, energy: str | None = None) -> list[dict[str, Any]]:
    """One study of one variant and seed (module level, so a spawned worker can run it): a cross-site row, or
    without `train` a cross-validation; with `twin` the model trains on the twin's rows and is tested on
    `data`'s. With `effects_twin` (a cross-site row) the cells also hold the cue's effect on the kept model
    over the `carrying` rows (`cue_effect.cue_effects`), each with an `effect` key instead of `auc`. `arm`: the
    same seed's baseline study, whose finished runs the collapse guard reads instead of training them again.
    `energy`: a saliency method; the cells also hold each kept model's energy inside `data`'s expert masks
    (`kept_energy`), each with an `energy` key instead of `auc`."""
    from ppi_cli.engine.cross_site import CrossSiteConfig, rejected_sites, run_cross_site
    from ppi_cli.engine.study import resolve_study

    with log_prefix(f"{Path(out).parent.name} seed {seed}"):  # which study a worker's lines belong to
        recipe_overrides = {**seeded(overrides, seed), "seed": seed}
        recipe, study_data = resolve_study(recipe_ref, data=Path(data), overrides=recipe_overrides)
        variant = "ppi" if recipe.ppi.enabled else "baseline"  # the study's run folders
        twin_data = None if twin is None else resolve_study(recipe_ref, data=Path(twin),
                                                            overrides=recipe_overrides)[1]
        if train is None:
            others = [resolve_study(recipe_ref, data=Path(t), overrides=recipe_overrides)[1] for t in tests]
            return _crossval_cells(recipe, study_data, twin_data, others, Path(out), seed, device, arm, energy)
        outcome = run_cross_site(CrossSiteConfig(recipe, study_data, Path(out),
                                                 train_sites=None if train == ALL else (train,), seed=seed,
                                                 device=device, bootstrap=0, train_data=twin_data,
                                                 baseline_from=None if arm is None else Path(arm)))
        effects = []
        if effects_twin is not None:
            cue_twin = resolve_study(recipe_ref, data=Path(effects_twin), overrides=recipe_overrides)[1]
            effects = [{"train_site": train, **cell} for cell in cue_effects(
                Path(out) / variant / f"train-{train}" / "best.pt", recipe, study_data, cue_twin, carrying,
                device=device)]
    matrix = next(iter(outcome.matrices.values()))
    rejected = rejected_sites(Path(out))  # ppi.fallback_drop: those rows hold the recipe without PPI
    rows = [str(r) for r in matrix.index] if train == ALL else [train]
    energies = [] if energy is None else [
        {"train_site": row, "energy": kept_energy(Path(out) / variant / f"train-{row}" / "best.pt", study_data, energy,
                                                  device)} for row in rows]
    return [{"train_site": row, "test_site": str(site), "auc": float(matrix.loc[row, site]),
             "rejected": row in rejected}
            for row in rows for site in matrix.columns
            if site not in ("Mean", "STD") and np.isfinite(matrix.loc[row, site])] + effects + energies


def _crossval_cells(recipe: Any, data: Any, twin: Any, others: Sequence[Any], out: Path, seed: int,
                    device: str, arm: str | None = None, energy: str | None = None) -> list[dict[str, Any]]:
    """A cross-validation of `data` (trained on `twin`'s same rows when given), each fold's model scored on its
    test rows of `data` (`in-site`) and on every row of each of `others`; with `energy` also each fold model's
    energy inside `data`'s expert masks."""
    from ppi_cli.engine.crossval import CrossvalConfig, fold_checkpoint, run_crossval
    from ppi_cli.engine.run_state import ppi_rejected
    from ppi_cli.engine.study import fold_splits, predict_rows
    from ppi_cli.reports.metrics import binary_metrics

    folds = recipe.eval.folds
    run_crossval(CrossvalConfig(recipe, twin if twin is not None else data, out, folds=folds, seed=seed,
                                device=device, bootstrap=0, baseline_from=None if arm is None else Path(arm)))
    cells = []
    for split in fold_splits(data, folds, seed, recipe.data.val_fraction):  # the twin's folds: the same rows
        best = fold_checkpoint(out, int(split.fold))
        rejected = ppi_rejected(best.parent)
        for test, rows in ((data, split.test), *((o, np.arange(len(o.labels))) for o in others)):
            _, labels, scores = predict_rows(best, recipe, test, rows, device=device)
            cells.append({"fold": int(split.fold), "train_site": data.name, "test_site": test.name,
                          "auc": float(binary_metrics(labels.tolist(), scores.tolist()).auc), "rejected": rejected})
        if energy is not None:
            cells.append({"fold": int(split.fold), "train_site": data.name,
                          "energy": kept_energy(best, data, energy, device)})
    return cells


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # small models: processes side by side beat threads inside one


def run_sweep(cfg: SweepConfig) -> SweepOutcome:
    """Run every (variant, seed) study not finished yet, then summarise all of them.

    Example:
        >>> run_sweep(SweepConfig("ga-ppi-wbp-cpu", Path("cache/ga"), Path("runs/sweep"), "D",
        ...                       (SweepVariant("ga-ppi-wbp-cpu"),), seeds=(0, 1, 2)))
    """
    from ppi_cli.files import write_text

    if cfg.tests and cfg.train is not None:
        raise ConfigError("--test: further test caches belong to a cross-validation sweep",
                          hint="drop --train to cross-validate --data, or drop --test (a cross-site row is "
                               "tested on every other site already)")
    names_of_tests = [cfg.data.name, *(t.name for t in cfg.tests)]
    if len(set(names_of_tests)) != len(names_of_tests):
        raise ConfigError(f"--test: the caches' folder names must differ from each other and from --data's "
                          f"({', '.join(names_of_tests)})", hint="name each cache's folder after its cohort")
    ceiling = (SweepVariant(CEILING, {"ppi.enabled": False}),) if cfg.twin is not None else ()
    variants = tuple(SweepVariant(v.name, {**cfg.common, **v.overrides})
                     for v in (SweepVariant(BASELINE, {"ppi.enabled": False}), *cfg.variants, *ceiling))
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ConfigError(f"--variant: names must differ ({', '.join(names)})", hint="give each variant its own NAME")
    if cfg.twin is not None:
        _check_twin_early(cfg)
    _check_tests_early(cfg)
    if cfg.energy is not None:
        check_energy(cfg.data, cfg.energy)
    _warn_about_earlier_seeds(cfg)
    cfg.out.mkdir(parents=True, exist_ok=True)
    written = [write_text(cfg.out / "sweep.json", json.dumps(
        {"recipe": cfg.recipe, "data": str(cfg.data), "train": cfg.train, "seeds": list(cfg.seeds),
         "variants": {v.name: dict(v.overrides) for v in variants}}
        | ({"twin": str(cfg.twin)} if cfg.twin is not None else {})
        | ({"tests": [str(t) for t in cfg.tests]} if cfg.tests else {}), indent=2, default=str) + "\n")]
    jobs = [(v, s) for s in cfg.seeds for v in variants]
    results: dict[tuple[str, int], list[dict[str, Any]]] = {}
    started = time.monotonic()
    # the cue's effect on each kept model is measured on one training row's models; --train all has four
    effects_twin = str(cfg.twin) if cfg.twin is not None and cfg.train not in (None, ALL) else None
    carrying = _carrying_rows(cfg) if effects_twin is not None else ()  # one data pair: the same rows for all
    # a PPI variant's collapse guard reads its seed's baseline arm when that has finished (jobs run in this order)
    args = {(v.name, s): (cfg.recipe, str(cfg.data), str(cfg.out / v.name / f"seed-{s}"), cfg.train,
                          dict(v.overrides), s, cfg.device, str(cfg.twin) if v.name == CEILING else None,
                          tuple(str(t) for t in cfg.tests), effects_twin, carrying,
                          None if v.name in (BASELINE, CEILING) else str(cfg.out / BASELINE / f"seed-{s}"),
                          cfg.energy)
            for v, s in jobs}
    if cfg.workers <= 1:
        import torch

        threads = torch.get_num_threads()
        _worker_init()  # a worker's one thread: the same float rounding, so --workers changes no AUC
        try:
            for key in args:
                results[key] = _job(*args[key])
                log(f"[sweep] {key[0]} seed {key[1]}: done ({len(results)}/{len(args)}, "
                    f"{time.monotonic() - started:.0f} s)")
        finally:
            torch.set_num_threads(threads)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        context = multiprocessing.get_context("spawn")  # see engine/demo.py: no fork after torch's thread pools
        with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=context, initializer=_worker_init) as pool:
            futures = {pool.submit(_job, *a): key for key, a in args.items()}
            for future in as_completed(futures):
                key = futures[future]
                results[key] = future.result()
                log(f"[sweep] {key[0]} seed {key[1]}: done ({len(results)}/{len(args)}, "
                    f"{time.monotonic() - started:.0f} s)")
    runs = _runs_frame(results, names, cfg.seeds, folds=cfg.train is None)
    summary = summarise_sweep(runs, cfg.trained_on) if cfg.train != ALL else summarise_matrix(runs)
    effects = effects_frame(results, names, cfg.seeds) if effects_twin is not None else None
    energies = None if cfg.energy is None else cells_frame(
        results, names, cfg.seeds, "energy", [*(["fold"] if cfg.train is None else []), "train_site", "energy"])
    written += _write_tables(cfg, runs, summary, effects, energies)
    return SweepOutcome(cfg.out, runs, summary, written)


def _carrying_rows(cfg: SweepConfig) -> tuple[int, ...]:
    """The rows whose images differ between --data and --twin (the rows carrying the cue), once per sweep."""
    from ppi_cli.engine.study import resolve_study

    recipe, data = resolve_study(cfg.recipe, data=cfg.data, overrides=dict(cfg.common))
    twin = resolve_study(cfg.recipe, data=cfg.twin, overrides=dict(cfg.common))[1]
    return tuple(int(r) for r in cue_rows(recipe, data, twin))


def _check_twin_early(cfg: SweepConfig) -> None:
    """Refuse a twin that is no twin of the data before any study trains, naming --twin."""
    from ppi_cli.engine.study import TWIN_HINT, check_twin, resolve_study
    from ppi_cli.errors import CacheError, DataError

    _, data = resolve_study(cfg.recipe, data=cfg.data, overrides=dict(cfg.common))
    try:
        _, twin = resolve_study(cfg.recipe, data=cfg.twin, overrides=dict(cfg.common))
        check_twin(data, twin)
    except (CacheError, DataError) as error:
        raise DataError(f"--twin {error.message}", hint=TWIN_HINT) from None


def _check_tests_early(cfg: SweepConfig) -> None:
    """Refuse a `--test` cache the recipe cannot read before any study trains, naming --test."""
    from ppi_cli.engine.study import resolve_study
    from ppi_cli.errors import CacheError, DataError

    for test in cfg.tests:
        try:
            resolve_study(cfg.recipe, data=test, overrides=dict(cfg.common))
        except (CacheError, DataError) as error:
            raise DataError(f"--test {error.message}", hint=error.hint) from None


def _runs_frame(results: Mapping[tuple[str, int], list[dict[str, Any]]], names: Sequence[str],
                seeds: Sequence[int], *, folds: bool = False) -> Any:
    frame = cells_frame(results, names, seeds, "auc",
                        [*(["fold"] if folds else []), "train_site", "test_site", "auc", "rejected"])
    frame["rejected"] = frame["rejected"].astype("boolean").fillna(False).astype(bool)  # a job without the key: kept
    return frame


def _write_tables(cfg: SweepConfig, runs: Any, summary: Any, effects: Any = None,
                  energies: Any = None) -> list[Path]:
    from ppi_cli.files import write_csv, write_text
    from ppi_cli.reports.sweep_tables import sweep_markdown

    written = [write_csv(cfg.out / "runs.csv", runs), write_csv(cfg.out / "summary.csv", summary)]
    if effects is not None:
        written.append(write_csv(cfg.out / EFFECTS_FILE, effects))
    energy_summary = None
    if energies is not None:
        energy_summary = summarise_energy(energies)
        written += [write_csv(cfg.out / "energy.csv", energies),
                    write_csv(cfg.out / "energy_summary.csv", energy_summary)]
    seeds = ", ".join(map(str, cfg.seeds))
    if cfg.train == ALL:
        title, pairs = f"trained on every site, seeds {seeds}", "seeds"
    elif cfg.train is not None:
        title, pairs = f"trained on site {cfg.train}, seeds {seeds}", "seeds"
    else:
        title = (f"cross-validated on {cfg.data.name}, seeds {seeds}; in-site: each fold's test rows"
                 + (f"; other sites: {', '.join(t.name for t in cfg.tests)}, scored whole" if cfg.tests else ""))
        pairs = "seeds and folds"
    overrides = {v.name: dict(v.overrides) for v in cfg.variants}
    if cfg.twin is not None:
        overrides[CEILING] = {"ppi.enabled": False, "trained on": str(cfg.twin)}
    text = sweep_markdown(f"{cfg.recipe} {title}", pairs, summary, runs, matrix=cfg.train == ALL,
                          overrides=overrides, common=cfg.common, effects=effects, energy=energy_summary,
                          energy_method=cfg.energy)
    written.append(write_text(cfg.out / "summary.md", text))
    return written
