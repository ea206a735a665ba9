# SPDX-License-Identifier: MIT
"""`REPORT.md` of `ppi demo`: every headline number, table and picture of the demo, linked.

The reading at the end is written from the numbers (which model scored higher, by how much, whether
the paired t-interval over folds excludes 0), never assumed: on generated data PPI may or may not help.
"""

from __future__ import annotations

import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli import __version__
from ppi_cli.device import select_device
from ppi_cli.files import write_csv, write_text
from ppi_cli.reports.tables import format_interval, format_mean_std, format_value, markdown_table

__all__ = ["write_demo_report", "shortcut_verdict"]

NAMES = {"baseline": "baseline (no PPI)", "ppi-wbp": "PPI + WBP"}
DATASETS = {"lidc": "LIDC-IDRI (synthetic CT nodules)", "ga": "GA OCT (synthetic volumes, sites A–D)"}


def _rel(path: Path, root: Path) -> str:
    return Path(path).resolve().relative_to(root.resolve()).as_posix()


def _crossval_section(dataset: str, pair: dict[str, Any], root: Path) -> tuple[list[str], str]:
    rows = []
    for variant, run in pair.items():
        s, folds = run.summary, run.summary.folds
        rows.append(f"| {NAMES[variant]} | {format_mean_std(folds['auc'])} | {format_interval(s.ci_low, s.ci_high)} "
                    f"| {format_mean_std(folds['accuracy'])} | {format_mean_std(folds['sensitivity'])} | "
                    f"{format_mean_std(folds['specificity'])} | [summary]({_rel(run.out / 'summary.md', root)}) |")
    lines = [f"## {DATASETS[dataset]}: five-fold cross-validation\n",
             "| model | AUC (mean ± std over folds) | 95% bootstrap interval | accuracy | sensitivity | specificity "
             "| details |", "|---|---|---|---|---|---|---|", *rows, ""]
    reading = ""
    comparison = pair["ppi-wbp"].comparison
    if comparison is not None:
        head = comparison.headline
        link = _rel(next(p for p in comparison.written if p.name == "comparison.md"), root)
        per_fold = comparison.paired[comparison.paired["pair"] != "mean"]
        each = ", ".join(format_value(v) for v in per_fold["difference"])
        lines.append(f"Paired comparison on the same folds (PPI + WBP − baseline): mean per-fold ΔAUC "
                     f"**{format_value(_number(head['difference']))}**, 95% t-interval over {head['n_pairs']} folds "
                     f"{format_interval(_number(head['ci_low']), _number(head['ci_high']))} (per fold: {each}); "
                     f"each fold's DeLong test in the [comparison]({link}).\n")
        reading = _verdict(dataset.upper(), per_fold["difference"].to_numpy(dtype=float),
                           _number(head["ci_low"]), _number(head["ci_high"]))
    pictures = " ".join(f"![{NAMES[v]} ROC]({_rel(run.out / 'roc.png', root)})" for v, run in pair.items())
    lines += [f"ROC curves per fold (left: baseline, right: PPI + WBP):\n\n{pictures}\n"]
    figures = {"roc_mean.png": "Mean ROC across folds with its 95% band",
               "calibration.png": "Calibration of the pooled test predictions",
               "confusion.png": "Confusion matrix, each fold at its checkpoint's operating threshold"}
    for name, caption in figures.items():
        drawn = [(v, run.out / name) for v, run in pair.items() if (run.out / name).is_file()]
        if drawn:
            pictures = " ".join(f"![{NAMES[v]}: {caption}]({_rel(path, root)})" for v, path in drawn)
            lines += [f"{caption} ({', '.join(NAMES[v] for v, _ in drawn)}; PDF beside each PNG):\n\n{pictures}\n"]
    return lines, reading


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _verdict(what: str, per_fold: Any, ci_low: float, ci_high: float) -> str:
    """One sentence per dataset: the mean per-fold paired difference and whether its t-interval excludes 0."""
    if not len(per_fold) or not np.isfinite(per_fold).all():
        return f"{what}: the comparison could not be computed."
    mean = float(per_fold.mean())
    sentence = (f"{what}: per fold, PPI + WBP's AUC was {abs(mean):.3f} {_direction(mean)} than the baseline's "
                f"(mean of {len(per_fold)} paired differences")
    if math.isnan(ci_low) or math.isnan(ci_high):
        return sentence + "; too few folds for an interval)."
    verdict = "excludes 0" if ci_low > 0 or ci_high < 0 else "includes 0: no difference shown"
    return sentence + f", 95% t-interval {format_interval(ci_low, ci_high)}, which {verdict})."


def _direction(difference: float) -> str:
    return "higher" if difference > 0 else "lower" if difference < 0 else "no different"


def _cross_site_section(cross_site: Any, root: Path) -> tuple[list[str], str]:
    out = cross_site.out
    lines = ["## GA cross-site matrix (rows: training site; columns: test site)\n",
             "The diagonal is the training site's own hold-out; Mean and STD are the row mean and sample std, as in "
             "the paper's Table 3.\n"]
    titles = {"ppi": "With PPI (PPI + WBP)", "baseline": "No PPI (baseline)"}
    for variant in ("ppi", "baseline"):
        if variant in cross_site.matrices:
            lines += [f"### {titles[variant]}\n", markdown_table(cross_site.matrices[variant], index=True)]
    lines += ["### In-site vs cross-site gap\n", markdown_table(cross_site.gap),
              f"![cross-site AUC heatmaps]({_rel(out / 'heatmap.png', root)})\n",
              f"Tables: [both matrices]({_rel(out / 'cross_site.md', root)}), [cells]({_rel(out / 'cells.csv', root)}),"
              f" [per-cell DeLong comparison]({_rel(out / 'compare' / 'comparison.md', root)}).\n"]
    overall = cross_site.gap[cross_site.gap["train_site"] == "all"].set_index("variant")
    reading = ""
    if {"ppi", "baseline"} <= set(overall.index):
        p, b = overall.loc["ppi"], overall.loc["baseline"]
        smaller = "smaller" if p["gap"] < b["gap"] else "larger" if p["gap"] > b["gap"] else "the same"
        reading = (f"Cross-site: mean cross-site AUC {p['cross_site']:.3f} with PPI vs {b['cross_site']:.3f} without; "
                   f"the in-site − cross-site gap is {p['gap']:.3f} with PPI and {b['gap']:.3f} without ({smaller} "
                   "with PPI). The diagonal cells rest on small hold-outs, so single cells are noisy; the per-cell "
                   "DeLong table says which differences stand out.")
    judged = cross_site.reading
    if judged is not None:  # the row-by-row reading of `ppi cross-site --baseline`, as cross_site.md has it
        reading += f" Row by row ([cross_site.md]({_rel(out / 'cross_site.md', root)})): {judged[1]}"
    return lines, reading


def shortcut_verdict(matrices: dict[str, Any], train: str = "D", reversed_site: str = "C",
                     independent: str = "A", follows: str = "B") -> str:
    """Two sentences: what PPI is expected to fix on the diffuse-shortcut data, and whether it did here.

    Reads the row of the training site where the cue goes with GA: PPI fixed the shortcut when the
    mean over the other sites rose by 0.05 or more without the cue-independent site falling; it
    over-corrected when the reversed site rose while the site where the cue still follows the label
    fell by more than 0.1 (the cue learnt in reverse); otherwise it did not fix it.
    """
    if not {"ppi", "baseline"} <= set(matrices) or train not in matrices["ppi"].index:
        return ""
    p, b = matrices["ppi"].loc[train], matrices["baseline"].loc[train]
    others = [s for s in (independent, follows, reversed_site) if s in p.index]
    if not others:
        return ""
    mean_p, mean_b = float(p[others].mean()), float(b[others].mean())
    expected = (f"PPI is expected to stop the model reading the sites' diffuse brightness ramp, which goes with GA "
                f"at {train}, is reversed at {reversed_site} and says nothing at {independent}, because the ramp "
                "survives removing the lesion.")
    facts = (f"trained on {train}, the mean AUC over the other sites is {mean_p:.3f} with PPI and {mean_b:.3f} "
             f"without ({reversed_site} {p[reversed_site]:.3f} vs {b[reversed_site]:.3f}, {independent} "
             f"{p[independent]:.3f} vs {b[independent]:.3f}, {follows} {p[follows]:.3f} vs {b[follows]:.3f})")
    if mean_p - mean_b >= 0.05 and p[independent] >= b[independent] - 0.02:
        verdict = (f"Here it did: {facts}; this is one seed, and the ten- and twenty-seed tables of docs/ppi.md "
                   "(\"The shortcut benchmark\") are the evidence.")
    elif p[reversed_site] > b[reversed_site] and p[follows] < b[follows] - 0.1:
        verdict = (f"Here it did not: {facts}; the gain at {reversed_site} and the loss at {follows} mean the "
                   "model learnt the ramp in reverse (docs/ppi.md, \"The shortcut benchmark\").")
    else:
        verdict = f"Here it did not: {facts} (docs/ppi.md, \"The shortcut benchmark\")."
    return f"{expected} {verdict}"


def _explain_section(explained: dict[str, Any] | None, localisation: Any, root: Path) -> list[str]:
    lines = ["## Explanation and localisation\n"]
    if explained is None:
        lines.append("`ppi explain` is not installed in this build; no overlay was made.\n")
    else:
        rec = explained["record"]
        lines += [f"`ppi explain {explained['input']} --model models/ga-ppi-wbp.pt` "
                  f"(score {rec.get('score', math.nan):.3f}, {rec.get('label', '?')}, "
                  f"method {rec.get('method', 'wbp')}):\n",
                  f"![GA overlay]({_rel(explained['overlay'], root)})\n"]
    if localisation is None:
        lines.append("`ppi segment-eval` is not installed in this build; localisation was not scored.\n")
    else:
        md = next((p for p in localisation.wrote if str(p).endswith(".md")), None)
        lines += [f"Saliency localisation of the LIDC models against the union of the reader masks "
                  f"({localisation.n_samples} samples; PPI + WBP vs baseline):\n",
                  markdown_table(localisation.summary, index=True)]
        if md is not None:
            lines.append(f"Details: [segment-eval]({_rel(md, root)}).\n")
        gallery = next((p for p in localisation.wrote if Path(p).name == "gallery.png"), None)
        if gallery is not None:
            lines.append("Case gallery (model input, expert contour, baseline and PPI + WBP saliency; PDF beside "
                         f"it):\n\n![case gallery]({_rel(gallery, root)})\n")
    return lines


def write_demo_report(cfg: Any, *, runs: dict[str, dict[str, Any]], cross_site: Any, models: list[Path],
                      explained: dict[str, Any] | None, localisation: Any, steps: dict[str, float],
                      seconds: float) -> Path:
    """Write `REPORT.md` and `timings.csv` into the demo folder and return the report's path."""
    import pandas as pd

    root = cfg.out
    device = select_device(cfg.device).type
    workers = f"{cfg.workers} worker processes" if cfg.workers > 0 else "one process"
    lines = ["# ppi demo report\n",
             f"Generated by `ppi demo` (ppi {__version__}) on {time.strftime('%Y-%m-%d %H:%M')}, Python "
             f"{platform.python_version()} on {platform.machine()}, device {device}, {workers}; wall time "
             f"**{seconds / 60:.1f} min**. All data are generated (`ppi synth lidc`, `ppi synth ga`): nothing here "
             "is a clinical result, and whether PPI helps on these data is reported as measured.\n",
             f"Data: {cfg.lidc_patients} synthetic CT series ({cfg.lidc_crop}×{cfg.lidc_crop} lesion patches); "
             f"{cfg.ga_per_site} synthetic OCT volumes per site A–D ({cfg.ga_bscans} B-scans, cached at "
             f"{cfg.ga_bscan_size}×{cfg.ga_bscan_size}; `--shortcut {cfg.ga_shortcut}`, lesion strength "
             f"{cfg.ga_lesion_strength}). Recipes: `demo-lidc-*`, `demo-ga-*` (tiny CNN).\n"]
    readings = []
    for dataset in ("lidc", "ga"):
        section, reading = _crossval_section(dataset, runs[dataset], root)
        lines += section
        readings.append(reading)
    section, reading = _cross_site_section(cross_site, root)
    lines += section
    readings.append(reading)
    if getattr(cfg, "ga_shortcut", "mark") == "diffuse":
        readings.insert(0, shortcut_verdict(cross_site.matrices))
    lines += _explain_section(explained, localisation, root)
    lines += ["## Trained models\n", "Fold-0 checkpoints of each cross-validation, for `ppi explain`:\n",
              *[f"- [`{_rel(m, root)}`]({_rel(m, root)})" for m in models], ""]
    lines += ["## What this shows\n", *[f"- {r}" for r in readings if r], ""]
    timing = pd.DataFrame({"step": list(steps), "seconds": [round(v, 1) for v in steps.values()]})
    lines += ["## Time per step\n", "Rows marked (worker) ran side by side in worker processes: they overlap, and "
              "'all training, wall time' is their elapsed time together.\n", markdown_table(timing, digits=1),
              f"Total wall time: {seconds:.0f} s ([timings.csv](timings.csv)).\n"]
    write_csv(root / "timings.csv", timing)
    return write_text(root / "REPORT.md", "\n".join(lines))
