# SPDX-License-Identifier: MIT
"""What a training run says about itself: one line per epoch on stderr and in `train.log`, `training.png`
redrawn as it goes, and the findings about the finished run as warnings at the end of `train.log`."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli.config.recipe import Recipe
from ppi_cli.console import log, warn
from ppi_cli.files import write_text
from ppi_cli.reports.plots import training_figure

__all__ = ["TRAIN_LOG", "TRAINING_PNG", "PLOT_EVERY", "epoch_line", "report_epoch", "report_findings"]

TRAIN_LOG, TRAINING_PNG = "train.log", "training.png"
_LINE_TERMS = (("cls", "cls"), ("con", "con"), ("reg", "reg"), ("ad", "ad"), ("out", "out"))
_LINE_DIAGNOSTICS = (("coverage", "cov"), ("lesion_removed", "lesion"), ("mask_on_cue", "on cue"), ("p_con", "p*"),
                     ("p_ad", "p'"))
PLOT_EVERY = 10.0  # seconds between redraws of training.png (always drawn after the last epoch)


def epoch_line(row: dict[str, Any], epochs: int, eta: float) -> str:
    """One epoch as one line: loss terms, intervention diagnostics, validation, learning rate, time and ETA."""

    def part(pairs: tuple[tuple[str, str], ...]) -> str:
        return "  ".join(f"{label} {row[f'train_{key}']:.3f}" for key, label in pairs
                         if math.isfinite(row.get(f"train_{key}", math.nan)))

    val = [f"{k.removeprefix('val_')} {v:.3f}" for k, v in row.items() if k.startswith("val_") and math.isfinite(v)]
    pieces = [f"epoch {row['epoch']}/{epochs}" + (" PPI" if row.get("ppi") else ""), part(_LINE_TERMS),
              part(_LINE_DIAGNOSTICS), ("val " + "  ".join(val)) if val else "no validation",
              f"lr {row['lr']:.2g}", f"{row['seconds']:.1f} s" + (f", ETA {eta:.0f} s" if eta > 0 else "")]
    return " | ".join(p for p in pieces if p)


def report_epoch(out_dir: Path, recipe: Recipe, rows: list[dict[str, Any]], last_plot: float) -> float:
    """The epoch's line on stderr and in train.log, and training.png every PLOT_EVERY seconds and at the end."""
    epochs = recipe.schedule.epochs
    row = rows[-1]
    eta = float(np.mean([r["seconds"] for r in rows])) * (epochs - int(row["epoch"]))
    lines = [epoch_line(r, epochs, 0.0) for r in rows[:-1]] + [epoch_line(row, epochs, eta)]
    log(f"{out_dir.name}: {lines[-1]}")
    write_text(out_dir / TRAIN_LOG, "\n".join(lines) + "\n")
    now = time.monotonic()
    if now - last_plot >= PLOT_EVERY or int(row["epoch"]) == epochs:
        training_figure(rows, out_dir / TRAINING_PNG, title=f"{recipe.name}: {out_dir.name}",
                        final=int(row["epoch"]) == epochs)
        return now
    return last_plot


def report_findings(out_dir: Path, findings: list[str]) -> None:
    """Each finding about the finished run as a warning on stderr and a `warning:` line at the end of train.log."""
    for line in findings:
        warn(line)
    if findings and (out_dir / TRAIN_LOG).is_file():
        text = (out_dir / TRAIN_LOG).read_text(encoding="utf-8")
        write_text(out_dir / TRAIN_LOG, text + "".join(f"warning: {line}\n" for line in findings))
