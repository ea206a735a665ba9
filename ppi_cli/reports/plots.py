# SPDX-License-Identifier: MIT
"""Pictures where people would rather look (300-dpi PNG and PDF): ROC curves per fold and their mean with a
95 % band, a calibration plot, the confusion matrix at the operating threshold, cross-site AUC heatmaps,
training curves and a case gallery.

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

__all__ = ["training_figure", "save_figure", "roc_figure", "heatmap_figure", "mean_roc", "mean_roc_figure",
           "calibration_figure", "confusion_counts", "confusion_figure", "gallery_figure"]


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


def mean_roc(folds: Sequence[tuple[np.ndarray, np.ndarray]], grid: int = 201,
             level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each fold's ROC curve on a common false-positive-rate grid, their mean and a `level` band.

    A fold's true-positive rate at a grid point is the highest it reaches at that false-positive rate
    or below (the step curve `roc_figure` draws). The band is mean ± t(k − 1) · sd / √k over the k
    folds, clipped to [0, 1]; with one fold it is the curve itself. Folds with one class are skipped.

    Returns:
        `(fpr grid, mean tpr, band low, band high, per-fold tpr (k × grid))`.
    """
    from scipy import stats

    fpr_grid = np.linspace(0.0, 1.0, grid)
    rows = []
    for y, s in folds:
        y, s = np.asarray(y), np.asarray(s)
        if not 0 < np.sum(y) < len(y):
            continue
        fpr, tpr, _ = roc_points(y, s)
        upto = np.searchsorted(fpr, fpr_grid, side="right") - 1
        rows.append(np.maximum.accumulate(tpr)[np.clip(upto, 0, None)])
    tprs = np.asarray(rows, dtype=float).reshape(len(rows), grid)
    if not len(rows):
        empty = np.full(grid, np.nan)
        return fpr_grid, empty, empty, empty, tprs
    mean = tprs.mean(axis=0)
    if len(rows) < 2:
        return fpr_grid, mean, mean.copy(), mean.copy(), tprs
    half = float(stats.t.ppf(0.5 + level / 2, len(rows) - 1)) * tprs.std(axis=0, ddof=1) / np.sqrt(len(rows))
    return fpr_grid, mean, np.clip(mean - half, 0, 1), np.clip(mean + half, 0, 1), tprs


def mean_roc_figure(curves: Mapping[str, Sequence[tuple[np.ndarray, np.ndarray]]], path: str | Path,
                    title: str = "Mean ROC across folds", level: float = 0.95) -> Path:
    """The mean ROC curve over folds with its `level` band (`mean_roc`), one panel per run, folds faint.

    Args:
        curves: `{run name: [(labels, scores) per fold]}`.
        path: The PNG to write (and a PDF beside it).
        title: Figure title.
        level: Coverage of the t-band of the mean curve.
    """
    plt = _pyplot()
    names = list(curves)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        grid, mean, low, high, tprs = mean_roc(curves[name], level=level)
        aucs = [roc_auc(y, s) for y, s in curves[name] if 0 < np.sum(y) < len(y)]
        for row in tprs:
            ax.plot(grid, row, lw=0.6, alpha=0.35, color="tab:blue")
        if len(tprs):
            spread = f" ± {np.std(aucs, ddof=1):.3f}" if len(aucs) > 1 else ""
            ax.plot(grid, mean, lw=2.2, color="black", label=f"mean of {len(tprs)} folds (AUC {np.mean(aucs):.3f}"
                    f"{spread})")
            if len(tprs) > 1:
                ax.fill_between(grid, low, high, color="grey", alpha=0.3, lw=0, label=f"{level:.0%} band of the mean")
        ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=0.8)
        ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 − specificity", ylabel="sensitivity", title=name, aspect="equal")
        ax.legend(loc="lower right", fontsize=7)
    fig.suptitle(title)
    return save_figure(fig, path)


def calibration_figure(labels: np.ndarray, scores: np.ndarray, path: str | Path, title: str = "Calibration",
                       n_bins: int = 10) -> Path:
    """Reliability diagram of pooled test predictions (scores are probabilities in [0, 1]).

    Top: the observed share of positives against the mean predicted probability per bin of equal
    width (scikit-learn's `calibration_curve`), with the diagonal of perfect calibration; bottom: how
    many predictions fall in each bin. The Brier score is in the legend.
    """
    from sklearn.calibration import calibration_curve

    plt = _pyplot()
    y, s = np.asarray(labels, dtype=float), np.clip(np.asarray(scores, dtype=float), 0.0, 1.0)
    observed, predicted = calibration_curve(y, s, n_bins=n_bins, strategy="uniform")
    brier = float(np.mean((s - y) ** 2))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(4.2, 5.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], ls=":", color="grey", lw=0.8, label="perfectly calibrated")
    top.plot(predicted, observed, marker="o", color="black", lw=1.6, label=f"{len(y)} predictions (Brier {brier:.3f})")
    top.set(xlim=(0, 1), ylim=(-0.02, 1.02), ylabel="observed share of positives", title=title)
    top.legend(loc="upper left", fontsize=7)
    bottom.hist(s, bins=np.linspace(0, 1, n_bins + 1), color="tab:blue", alpha=0.7)
    bottom.set(xlabel="predicted probability", ylabel="count")
    bottom.yaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return save_figure(fig, path)


def confusion_counts(folds: Sequence[tuple[np.ndarray, np.ndarray, float]]) -> np.ndarray:
    """The summed 2 × 2 confusion matrix `[[TN, FP], [FN, TP]]` (rows: truth) of folds called at their own
    thresholds: `(labels, scores, threshold)` per fold, a score at or above its threshold is positive."""
    total = np.zeros((2, 2), dtype=int)
    for y, s, threshold in folds:
        truth = np.asarray(y).astype(int)
        called = (np.asarray(s, dtype=float) >= float(threshold)).astype(int)
        np.add.at(total, (truth, called), 1)
    return total


def confusion_figure(matrix: np.ndarray, path: str | Path, title: str = "Confusion matrix",
                     classes: Sequence[str] = ("negative", "positive"), note: str = "") -> Path:
    """A confusion matrix as integer counts with row shares (rows: truth; columns: the call)."""
    plt = _pyplot()
    counts = np.asarray(matrix, dtype=int)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(3.8, 3.6))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), n in np.ndenumerate(counts):
        ax.text(j, i, f"{n:d}\n({shares[i, j]:.0%})", ha="center", va="center", fontsize=10,
                color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), [f"called {c}" for c in classes])
    ax.set_yticks(range(len(classes)), [f"truly {c}" for c in classes])
    ax.set_title(title, fontsize=10)
    if note:
        fig.text(0.01, 0.005, note, fontsize=7, color="grey")
    fig.tight_layout()
    return save_figure(fig, path)


def gallery_figure(cases: Sequence[Mapping[str, Any]], path: str | Path, title: str = "Cases") -> Path:
    """One row per case: the raw image, the expert contour on it, and each saliency map on the image.

    Args:
        cases: Each `{"name": str, "image": 2-D array, "mask": 2-D array or None,
            "maps": {column title: 2-D saliency array}}`; every case has the same map titles.
        path: The PNG to write (and a PDF beside it).
        title: Figure title.
    """
    plt = _pyplot()
    titles = list(cases[0]["maps"]) if cases else []
    columns = ["image", "expert contour", *titles]
    fig, axes = plt.subplots(len(cases), len(columns), figsize=(2.2 * len(columns), 2.3 * len(cases)),
                             squeeze=False)
    for i, (row, case) in enumerate(zip(axes, cases, strict=True)):
        image = np.asarray(case["image"], dtype=float)
        mask = case.get("mask")
        for ax, column in zip(row, columns, strict=True):
            ax.imshow(image, cmap="gray")
            if column == "expert contour":
                if mask is not None and np.any(mask):
                    ax.contour(np.asarray(mask, dtype=float), levels=[0.5], colors="red", linewidths=1.2)
                else:
                    ax.text(0.5, 0.5, "no mask", ha="center", va="center", color="yellow", transform=ax.transAxes)
            elif column != "image":
                heat = np.abs(np.asarray(case["maps"][column], dtype=float))
                ax.imshow(heat / max(float(heat.max()), 1e-12), cmap="jet", alpha=0.45, vmin=0, vmax=1)
                if mask is not None and np.any(mask):
                    ax.contour(np.asarray(mask, dtype=float), levels=[0.5], colors="white", linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(column, fontsize=9)
        name = str(case.get("name", ""))
        row[0].set_ylabel(name if len(name) <= 22 else "…" + name[-21:], fontsize=7)  # DICOM UIDs are long
    fig.suptitle(title)
    fig.tight_layout()
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


def training_figure(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str = "Training", *,
                    final: bool = True) -> Path:
    """Per-epoch curves of one run (the rows of metrics.csv): losses, intervention diagnostics, validation.

    `final` writes the 300-dpi PNG and the PDF like every other figure; the redraws while a run
    trains (`final=False`) are a quick 120-dpi PNG only.

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
    return save_figure(fig, path) if final else save_figure(fig, path, dpi=120, pdf=False)
