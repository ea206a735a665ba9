# SPDX-License-Identifier: MIT
"""Pictures where people would rather look: ROC curves and cross-site AUC heatmaps (300-dpi PNG and PDF).

Matplotlib runs on the Agg backend (no display needed, safe in batch jobs) and every figure is
written atomically, so an interrupted study never leaves a half-written PNG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli.files import atomic_path
from ppi_cli.reports.metrics import MIN_CASES, roc_auc, roc_points

__all__ = ["training_figure", "save_figure", "roc_figure", "heatmap_figure"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, dpi: int = 300, pdf: bool = True) -> Path:
    """Save a matplotlib figure as PNG (300 dpi: print quality) and, with `pdf`, as a vector PDF beside it
    (same name, `.pdf`), each atomically; then close it. Returns the PNG's path."""
    plt = _pyplot()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
        if pdf:
            with atomic_path(Path(path).with_suffix(".pdf")) as tmp:
                fig.savefig(tmp, format="pdf", bbox_inches="tight")
    finally:
        plt.close(fig)
    return Path(path)


def roc_figure(curves: Mapping[str, Sequence[tuple[np.ndarray, np.ndarray]]], path: str | Path,
               title: str = "ROC") -> Path:
    """ROC curves, one panel per run, one thin line per fold and the pooled curve in bold.

    Args:
        curves: `{run name: [(labels, scores) per fold]}`; folds with one class only are skipped.
        path: The PNG to write.
        title: Figure title.
    """
    plt = _pyplot()
    names = list(curves)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        folds = [(np.asarray(y), np.asarray(s)) for y, s in curves[name] if 0 < np.sum(y) < len(y)]
        for k, (y, s) in enumerate(folds):
            fpr, tpr, _ = roc_points(y, s)
            ax.step(fpr, tpr, where="post", lw=0.8, alpha=0.6, label=f"fold {k} ({roc_auc(y, s):.3f})")
        if folds:
            y_all = np.concatenate([y for y, _ in folds])
            s_all = np.concatenate([s for _, s in folds])
            fpr, tpr, _ = roc_points(y_all, s_all)
            ax.step(fpr, tpr, where="post", lw=2.2, color="black", label=f"pooled ({roc_auc(y_all, s_all):.3f})")
        ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=0.8)
        ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 − specificity", ylabel="sensitivity", title=name, aspect="equal")
        ax.legend(loc="lower right", fontsize=7)
    fig.suptitle(title)
    return save_figure(fig, path)


def heatmap_figure(matrices: Mapping[str, Any], path: str | Path, title: str = "Cross-site AUC",
                   flags: Mapping[str, set[tuple[str, str]]] | None = None) -> Path:
    """Cross-site AUC matrices side by side (rows = training site, columns = test site).

    Args:
        matrices: `{panel name: DataFrame of AUCs}`, e.g. `{"with PPI": m1, "no PPI": m0}`; only the
            site columns are drawn (Mean/STD are left to the tables). One shared colour scale.
        path: The PNG to write.
        title: Figure title.
        flags: `{panel name: {(train site, test site)}}`: degenerate cells (`reports.metrics.cell_flag`),
            drawn with a red frame and a `!` after the value.
    """
    plt = _pyplot()
    names = list(matrices)
    frames = [matrices[n] for n in names]
    values = [f.to_numpy(dtype=float) for f in frames]
    finite = np.concatenate([v[np.isfinite(v)] for v in values] + [np.array([0.5, 1.0])])
    low, high = float(min(finite.min(), 0.5)), 1.0
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 + 2.6 * len(names), 3.6), squeeze=False)
    image = None
    for ax, name, frame, v in zip(axes[0], names, frames, values, strict=True):
        image = ax.imshow(np.ma.masked_invalid(v), cmap="viridis", vmin=low, vmax=high)
        ax.set_xticks(range(v.shape[1]), [str(c) for c in frame.columns])
        ax.set_yticks(range(v.shape[0]), [str(r) for r in frame.index])
        ax.set(xlabel="test site", ylabel="training site", title=name)
        flagged = (flags or {}).get(name, set())
        for (i, j), cell in np.ndenumerate(v):
            text = "—" if not np.isfinite(cell) else f"{cell:.3f}"
            shade = "white" if np.isfinite(cell) and cell < (low + high) / 2 else "black"
            if (str(frame.index[i]), str(frame.columns[j])) in flagged:
                text += " !"
                ax.add_patch(plt.Rectangle((j - 0.47, i - 0.47), 0.94, 0.94, fill=False, edgecolor="red", lw=2))
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=shade)
    if any(flags.values() if flags else ()):
        fig.text(0.01, 0.01, f"! AUC ≤ 0.5, or fewer than {MIN_CASES} cases of a class", fontsize=7, color="red")
    fig.colorbar(image, ax=list(axes[0]), shrink=0.8, label="AUC")
    fig.suptitle(title)
    return save_figure(fig, path)


def training_figure(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str = "Training") -> Path:
    """Per-epoch curves of one run (the rows of metrics.csv): losses, intervention diagnostics, validation.

    Left: every `train_*` loss term (log scale) with the PPI epochs shaded; middle: mask coverage,
    the lesion share removed, p(y | x*) and p(y | x'); right: the validation metric and loss.
    """
    plt = _pyplot()
    epochs = [int(r["epoch"]) for r in rows]

    def series(key: str) -> list[float]:
        return [float(r.get(key, np.nan)) for r in rows]

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    losses = [k for k in ("cls", "con", "reg", "ad", "out", "loss") if any(f"train_{k}" in r for r in rows)]
    for key in losses:
        axes[0].plot(epochs, series(f"train_{key}"), marker=".", label=key, lw=2 if key == "loss" else 1)
    axes[0].set_yscale("log")
    axes[0].set_title("training losses")
    diagnostics = {"coverage": "mask coverage", "lesion_removed": "lesion removed", "mask_on_cue": "mask on cue",
                   "p_con": "p(y | x*)",
                   "p_ad": "p(y | x')"}
    for key, label in diagnostics.items():
        if any(f"train_{key}" in r for r in rows):
            axes[1].plot(epochs, series(f"train_{key}"), marker=".", label=label)
    axes[1].set_ylim(-0.02, 1.02)
    axes[1].set_title("intervention")
    metric = next((k for k in (rows[0] if rows else {}) if k.startswith("val_") and k != "val_loss"), None)
    if metric:
        axes[2].plot(epochs, series(metric), marker=".", label=metric.removeprefix("val_"))
    axes[2].plot(epochs, series("val_loss"), marker=".", label="val loss")
    axes[2].set_title("validation")
    if not np.isfinite(series("val_loss")).any():
        axes[2].text(0.5, 0.5, "no validation split\n(data.val_fraction: 0)", ha="center", va="center",
                     transform=axes[2].transAxes, color="grey")
    ppi_epochs = [e for e, r in zip(epochs, rows, strict=True) if int(r.get("ppi", 0))]
    for ax in axes:
        ax.set_xlabel("epoch")
        if ppi_epochs:
            ax.axvspan(min(ppi_epochs) - 0.5, max(ppi_epochs) + 0.5, color="tab:orange", alpha=0.08)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.suptitle(title + (" (shaded: PPI epochs)" if ppi_epochs else ""))
    fig.tight_layout()
    return save_figure(fig, path, dpi=120, pdf=False)  # redrawn every 10 s while training: a quick PNG
