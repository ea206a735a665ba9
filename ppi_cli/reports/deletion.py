# SPDX-License-Identifier: MIT
"""Deletion curves: remove the top-k saliency pixels and record how far the model's score drops.

The paper's causal test (section 5, Fig. 5): if a map found the pixels the prediction rests on,
deleting them should take the score down fast. A deleted pixel is set to 0 in every channel, the
same value a pseudo-intervention writes (x* = (1 − T(s)) ⊙ x on [0, 1] intensities). The paper's k
values were lost, so k is a fraction of the image's pixels (our decision, so that LIDC patches and
OCT B-scans share one axis).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from ppi_cli.files import atomic_path
from ppi_cli.reports.localisation import top_k_order

__all__ = ["FRACTIONS", "delete_top_pixels", "deletion_scores", "plot_deletion_curves"]

# Shares of pixels removed; 0 is the unaltered image (our decision: the paper's k were not recovered).
FRACTIONS: tuple[float, ...] = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


def delete_top_pixels(x: torch.Tensor, saliency: np.ndarray, fractions: Sequence[float],
                      fill: float = 0.0) -> torch.Tensor:
    """One copy of `x` per fraction, with that share of its most salient pixels set to `fill`.

    Args:
        x: (C, *spatial) one input as the model sees it.
        saliency: (*spatial) its map; pixels are ranked by positive saliency (ties: raster order).
        fractions: Shares of the pixels to remove, each in [0, 1].
        fill: The value a removed pixel takes in every channel.

    Returns:
        (F, C, *spatial) the deleted copies, in the order of `fractions`.
    """
    spatial = tuple(x.shape[1:])
    if tuple(np.shape(saliency)) != spatial:
        raise ValueError(f"saliency {np.shape(saliency)} does not match the input's spatial shape {spatial}")
    n = int(np.prod(spatial))
    order = torch.as_tensor(top_k_order(saliency), device=x.device)
    out = x.unsqueeze(0).repeat(len(fractions), *([1] * x.dim())).reshape(len(fractions), x.shape[0], n)  # (F, C, n)
    for i, frac in enumerate(fractions):
        if not 0.0 <= frac <= 1.0:
            raise ValueError(f"deletion fractions must lie in [0, 1], got {frac}")
        k = int(round(frac * n))
        out[i, :, order[:k]] = fill
    return out.reshape(len(fractions), *x.shape)


@torch.no_grad()
def deletion_scores(score_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, saliency: np.ndarray,
                    fractions: Sequence[float] = FRACTIONS, fill: float = 0.0) -> np.ndarray:
    """The model's score on each input after deleting each share of its most salient pixels.

    All deleted copies of the batch go through the model in one forward pass.

    Args:
        score_fn: Maps a batch (N, C, *spatial) to the (N,) scores of the explained target
            (probabilities, so drops are comparable between models).
        x: (B, C, *spatial) inputs.
        saliency: (B, *spatial) their maps.
        fractions: Shares of the pixels to remove.
        fill: The value of a removed pixel.

    Returns:
        (B, F) scores; `scores[:, :1] - scores` are the drops when `fractions[0] == 0`.

    Example:
        >>> deletion_scores(lambda b: torch.sigmoid(model(b)[:, 0]), x, s)
    """
    if len(saliency) != x.shape[0]:
        raise ValueError(f"{len(saliency)} maps for {x.shape[0]} inputs")
    batch = torch.cat([delete_top_pixels(x[i], saliency[i], fractions, fill) for i in range(x.shape[0])])  # (B*F, ...)
    scores = score_fn(batch).detach().double().cpu().numpy()
    return scores.reshape(x.shape[0], len(fractions))


def plot_deletion_curves(path: str | Path, fractions: Sequence[float], curves: Mapping[str, np.ndarray],
                         title: str = "Deletion curves", styles: Mapping[str, Mapping[str, str]] | None = None) -> Path:
    """Plot mean score drop against the share of pixels removed, one line per method (and model).

    Args:
        path: Output PNG (640 x 440 px), written atomically.
        fractions: The x axis, shares of the pixels removed.
        curves: Label -> (F,) mean score drop at each fraction.
        title: Figure title.
        styles: Label -> matplotlib line keywords (e.g. one colour per method, one dash per model).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    fig = Figure(figsize=(6.4, 4.4), dpi=100, facecolor="white")
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.12, 0.13, 0.84, 0.78))
    xs = 100.0 * np.asarray(fractions, dtype=np.float64)
    for label, drop in curves.items():
        style = dict((styles or {}).get(label, {}))
        ax.plot(xs, np.asarray(drop, dtype=np.float64), marker="o", markersize=3, label=label, **style)
    positive = xs[xs > 0]
    if positive.size and positive.min() / max(xs.max(), 1e-12) < 0.05:
        ax.set_xscale("symlog", linthresh=float(positive.min()))  # small k matter most (paper Fig. 5)
        ax.set_xticks(xs, [f"{v:g}" for v in xs])
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("pixels removed (% of the image, most salient first)")
    ax.set_ylabel("mean drop in score")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": "ppi"})
    return Path(path)
