# SPDX-License-Identifier: MIT
"""`ppi demo`: the whole study on generated data, on a laptop, in minutes.

Synthesise LIDC-like CT and multi-site GA-like OCT, prepare both caches, cross-validate the
baseline and PPI+WBP on both (five folds, paired per-fold comparison), build the A–D cross-site
matrix with and without PPI, explain one prediction and score saliency localisation when those
commands are installed, and write `REPORT.md` linking every table and picture. Sizes are chosen so
that everything finishes within 10 minutes on 2 CPU cores (docs/demo.md has the measured time).

Every step is resumable: a re-run skips generated data, up-to-date caches, finished folds and cells.
"""

from __future__ import annotations

import multiprocessing
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ppi_cli.config import load_recipe
from ppi_cli.console import log, log_prefix, warn
from ppi_cli.data.ga.prepare import GaPrepareConfig, prepare_ga
from ppi_cli.data.lidc.prepare import LidcPrepareConfig, prepare_lidc
from ppi_cli.data.synth.ga import SynthGaConfig, synth_ga
from ppi_cli.data.synth.lidc import SynthLidcConfig, synth_lidc
from ppi_cli.engine.cross_site import CrossSiteConfig, collect_cross_site, run_cross_site
from ppi_cli.engine.crossval import CrossvalConfig, collect_crossval, run_crossval
from ppi_cli.engine.explain import ExplainConfig, explain
from ppi_cli.engine.segment_eval import SegmentEvalConfig, segment_eval
from ppi_cli.engine.study import load_study_data
from ppi_cli.errors import PpiError
from ppi_cli.files import atomic_path
from ppi_cli.reports.demo_report import write_demo_report

__all__ = ["DemoConfig", "DemoResult", "run_demo", "DEMO_RECIPES"]

# (dataset, variant) -> bundled recipe; variants name the checkpoints in models/ (models/lidc-ppi-wbp.pt).
DEMO_RECIPES = {
    ("lidc", "baseline"): "demo-lidc-baseline", ("lidc", "ppi-wbp"): "demo-lidc-ppi-wbp",
    ("ga", "baseline"): "demo-ga-baseline", ("ga", "ppi-wbp"): "demo-ga-ppi-wbp",
}
SITE_RECIPES = {"baseline": "demo-ga-site-baseline", "ppi-wbp": "demo-ga-site-ppi-wbp"}  # the A–D matrix


@dataclass(frozen=True)
class DemoConfig:
    """Options of `ppi demo` and the demo's data sizes (chosen for ≤ 10 minutes on 2 CPU cores)."""

    out: Path = Path("ppi-demo")
    device: str = "auto"
    seed: int = 0
    folds: int = 5  # paper: five-fold cross-validation
    workers: int = 2  # training processes side by side (each on one thread); 0 trains in this process
    lidc_patients: int = 40  # synthetic CT series; about 15 lesion-slice samples each
    lidc_size: int = 96  # CT slice side (px)
    lidc_slices: int = 12
    lidc_crop: int = 48  # cached patch side (px) around each lesion
    ga_per_site: int = 80  # synthetic volumes per site (A–D), half with GA; about 20 held out per diagonal cell
    ga_shortcut: str = "diffuse"  # the planted cue: a lateral ramp (docs/ppi.md, "The shortcut benchmark")
    ga_diffuse: str = "ramp"
    ga_lesion_strength: float = 1.0  # headroom: the baseline reads GA at D, and falls for the ramp at C (docs/ppi.md)
    ga_bscans: int = 8  # B-scans per volume, generated and cached
    ga_size: tuple[int, int] = (64, 128)  # generated B-scan (H, W); site D's are narrower
    ga_bscan_size: int = 32  # cached B-scan side
    bootstrap: int = 500  # resamples for intervals and comparisons
    epochs: int | None = None  # smoke runs only: every demo recipe trains this many epochs, PPI from the first


@dataclass
class DemoResult:
    """What the demo produced."""

    out: Path
    report: Path
    seconds: float
    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds
    headlines: dict[str, str] = field(default_factory=dict)  # "lidc ppi-wbp" -> "AUC 0.9 ± 0.05 (...)"
    written: list[Path] = field(default_factory=list)


class _Clock:
    """Times each step and logs it, so the report can say where the minutes went."""

    def __init__(self) -> None:
        self.steps: dict[str, float] = {}
        self.started = time.monotonic()

    def run(self, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        log(f"[demo] {name} ...")
        t0 = time.monotonic()
        result = fn(*args, **kwargs)
        self.steps[name] = time.monotonic() - t0
        log(f"[demo] {name}: {self.steps[name]:.1f} s")
        return result


def _synth_and_prepare_lidc(cfg: DemoConfig) -> Path:
    raw = cfg.out / "data" / "synth-lidc"
    if not (raw / "answer_key.csv").is_file():
        synth_lidc(SynthLidcConfig(out=raw, patients=cfg.lidc_patients, size=cfg.lidc_size,
                                   slices=cfg.lidc_slices, seed=cfg.seed))
    cache = cfg.out / "cache" / "lidc"
    prepare_lidc(LidcPrepareConfig(root=raw, out=cache, crop=cfg.lidc_crop))
    return cache


def _synth_and_prepare_ga(cfg: DemoConfig) -> Path:
    raw = cfg.out / "data" / "synth-ga"
    if not (raw / "manifest.csv").is_file():
        synth_ga(SynthGaConfig(out=raw, per_site=cfg.ga_per_site, n_bscans=cfg.ga_bscans, size=cfg.ga_size,
                               seed=cfg.seed, shortcut=cfg.ga_shortcut, diffuse=cfg.ga_diffuse,
                               lesion_strength=cfg.ga_lesion_strength))
    cache = cfg.out / "cache" / "ga"
    prepare_ga(GaPrepareConfig(manifest=raw / "manifest.csv", out=cache, n_bscans=cfg.ga_bscans,
                               bscan_size=(cfg.ga_bscan_size, cfg.ga_bscan_size)))
    return cache


def _recipe(cfg: DemoConfig, name: str) -> Any:
    overrides: dict[str, Any] = {"seed": cfg.seed}
    if cfg.epochs is not None:
        overrides |= {"schedule.epochs": cfg.epochs, "ppi.start_epoch": 0}
    return load_recipe(name, overrides)


def _crossval_job(cfg: DemoConfig, dataset: str, variant: str, cache: Path) -> Path:
    """One cross-validation (run in a worker process or here); returns its folder."""

    recipe = _recipe(cfg, DEMO_RECIPES[(dataset, variant)])
    out = cfg.out / dataset / f"crossval-{variant}"
    run_crossval(CrossvalConfig(recipe, load_study_data(recipe, cache), out, folds=cfg.folds, seed=cfg.seed,
                                device=cfg.device, bootstrap=cfg.bootstrap))
    return out


def _cross_site_job(cfg: DemoConfig, dataset: str, variant: str, cache: Path) -> Path:
    """One variant of the A–D matrix (both variants share the study folder, each its own sub-folder)."""

    recipe = _recipe(cfg, SITE_RECIPES[variant])
    out = cfg.out / dataset / "cross-site"
    run_cross_site(CrossSiteConfig(recipe, load_study_data(recipe, cache), out, seed=cfg.seed, device=cfg.device,
                                   bootstrap=cfg.bootstrap))
    return out


def _run_job(name: str, cfg: DemoConfig, dataset: str, variant: str, cache: Path) -> float:
    """A worker's entry point: run one job by name (module-level, so spawn can pickle it) and time it."""
    t0 = time.monotonic()
    study = {"_crossval_job": "crossval", "_cross_site_job": "cross-site"}[name]
    with log_prefix(f"{dataset} {study} {variant}"):  # two workers share one terminal
        {"_crossval_job": _crossval_job, "_cross_site_job": _cross_site_job}[name](cfg, dataset, variant, cache)
    return time.monotonic() - t0


def _worker_init() -> None:
    import torch

    # Tiny CNNs on small images gain little from intra-op threads, and two training processes on two
    # cores must not fight over them: one thread each.
    torch.set_num_threads(1)


def _train_all(cfg: DemoConfig, caches: dict[str, Path], clock: _Clock) -> None:
    """The eight trainings groups (4 cross-validations, 2 matrix variants), spread over `cfg.workers` processes."""
    # Longest first, so that two workers finish at about the same time.
    jobs = [(_crossval_job, "ga", "ppi-wbp"), (_crossval_job, "lidc", "ppi-wbp"), (_cross_site_job, "ga", "ppi-wbp"),
            (_crossval_job, "ga", "baseline"), (_crossval_job, "lidc", "baseline"), (_cross_site_job, "ga", "baseline")]
    names = {_crossval_job: f"{cfg.folds}-fold CV", _cross_site_job: "cross-site A-D"}
    t0 = time.monotonic()
    if cfg.workers <= 0:
        for fn, dataset, variant in jobs:
            clock.run(f"{dataset.upper()}: {names[fn]}, {variant}", fn, cfg, dataset, variant, caches[dataset])
        return

    # spawn, not fork: a forked child of a process that already ran torch's thread pools can hang.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=context, initializer=_worker_init) as pool:
        futures = {pool.submit(_run_job, fn.__name__, cfg, dataset, variant, caches[dataset]):
                   f"{dataset.upper()}: {names[fn]}, {variant} (worker)" for fn, dataset, variant in jobs}
        log(f"[demo] training {len(jobs)} studies in {cfg.workers} worker processes ...")
        for future in as_completed(futures):
            clock.steps[futures[future]] = future.result()  # re-raises a worker's error here
            log(f"[demo] {futures[future]}: {clock.steps[futures[future]]:.1f} s")
    clock.steps["all training, wall time"] = time.monotonic() - t0


def _collect(cfg: DemoConfig) -> tuple[dict[str, dict[str, Any]], Any]:
    """Read every study back from its files; compare PPI with the baseline on the same folds."""

    runs: dict[str, dict[str, Any]] = {}
    for dataset in ("lidc", "ga"):
        base = cfg.out / dataset / "crossval-baseline"
        runs[dataset] = {"baseline": collect_crossval(base, bootstrap=cfg.bootstrap),
                         "ppi-wbp": collect_crossval(cfg.out / dataset / "crossval-ppi-wbp", bootstrap=cfg.bootstrap,
                                                     compare=base)}
    return runs, collect_cross_site(cfg.out / "ga" / "cross-site", bootstrap=cfg.bootstrap)


def _keep_models(cfg: DemoConfig) -> list[Path]:
    """Copy each cross-validation's fold-0 checkpoint to models/<dataset>-<variant>.pt for `ppi explain`."""
    written = []
    for dataset, variant in DEMO_RECIPES:
        best = cfg.out / dataset / f"crossval-{variant}" / "fold-0" / "best.pt"
        target = cfg.out / "models" / f"{dataset}-{variant}.pt"
        with atomic_path(target) as tmp:
            shutil.copyfile(best, tmp)
        written.append(target)
    return written


def _explain(cfg: DemoConfig) -> dict[str, Any] | None:
    """One overlay: the GA PPI+WBP model on the first GA-positive volume of site A (a Duke .mat file)."""
    import pandas as pd

    raw = cfg.out / "data" / "synth-ga"
    manifest = pd.read_csv(raw / "manifest.csv", dtype={"site": str})
    pick = manifest[(manifest["site"] == "A") & (manifest["label"] == 1)]
    row = (pick if len(pick) else manifest).iloc[0]
    site_yaml = raw / "site_configs" / f"{row['site']}.yaml"
    overlay = cfg.out / "explain" / "ga-ppi-wbp-overlay.png"
    result = explain(ExplainConfig(input=raw / str(row["path"]), model=cfg.out / "models" / "ga-ppi-wbp.pt",
                                   out=overlay, json_out=overlay.with_suffix(".json"),
                                   site=str(site_yaml) if site_yaml.is_file() else str(row["site"]),
                                   device=cfg.device, top_slices=4))
    return {"overlay": overlay, "input": Path("data/synth-ga") / str(row["path"]), "record": result.record,
            "wrote": result.wrote}


def _segment_eval(cfg: DemoConfig, cache: Path) -> Any | None:
    """Localisation of the LIDC models' saliency against the reader masks, PPI+WBP vs baseline."""
    out = cfg.out / "segment-eval"
    if out.exists():
        shutil.rmtree(out)  # cheap to redo, and segment-eval refuses to mix with an older run
    return segment_eval(SegmentEvalConfig(model=cfg.out / "models" / "lidc-ppi-wbp.pt",
                                          compare=cfg.out / "models" / "lidc-baseline.pt", data=cache, out=out,
                                          limit=40, device=cfg.device))


def _optional(clock: _Clock, name: str, fn: Any, *args: Any) -> Any:
    """Run a step whose command may be missing or may fail on exotic data without sinking the demo."""

    try:
        return clock.run(name, fn, *args)
    except PpiError as exc:
        warn(f"{name} skipped: {exc.one_line()}")
        return None


def run_demo(cfg: DemoConfig) -> DemoResult:
    """Run every step of the demo and write `REPORT.md` into `cfg.out`.

    Example:
        >>> run_demo(DemoConfig(out=Path("ppi-demo"))).report
        PosixPath('ppi-demo/REPORT.md')
    """

    clock = _Clock()
    cfg.out.mkdir(parents=True, exist_ok=True)
    caches = {"lidc": clock.run("LIDC: synthesise and prepare", _synth_and_prepare_lidc, cfg),
              "ga": clock.run("GA: synthesise and prepare", _synth_and_prepare_ga, cfg)}
    _train_all(cfg, caches, clock)
    runs, cross_site = clock.run("collect and compare", _collect, cfg)
    models = _keep_models(cfg)
    explained = _optional(clock, "explain one GA volume", _explain, cfg)
    localisation = _optional(clock, "segment-eval LIDC", _segment_eval, cfg, caches["lidc"])
    seconds = time.monotonic() - clock.started
    report = write_demo_report(cfg, runs=runs, cross_site=cross_site, models=models, explained=explained,
                               localisation=localisation, steps=clock.steps, seconds=seconds)
    headlines = {f"{d} {v}": run.summary.headline for d, pair in runs.items() for v, run in pair.items()}
    return DemoResult(cfg.out, report, seconds, clock.steps, headlines, [*models, report])
