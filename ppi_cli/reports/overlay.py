# SPDX-License-Identifier: MIT
"""Saliency overlays for clinicians: one PNG per prediction, sized and laid out the same every time.

2D inputs (a CT patch, a photo): the image in grey, the positive saliency as a heat overlay that is
transparent where the evidence is low, a colour bar, and a caption with the score, the saliency
method and the model. Volumes (GA OCT): the volume score, the attention weight of every B-scan as a
bar plot, and a montage of the most attended B-scans with their overlays.

Only the caption text given by the caller is drawn: nothing here reads DICOM headers, so no patient
name, ID or birth date can reach a PNG. Figures are drawn with matplotlib's Agg canvas (no display,
no global pyplot state) and written atomically.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ppi_cli.files import atomic_path
from ppi_cli.reports.localisation import positive_part

__all__ = [
    "HEAT_CMAP", "IMAGE_SIZE_IN", "DPI", "OverlayLayout", "caption_text", "heat_scale", "heat_rgba",
    "render_image_overlay", "render_volume_overlay", "volume_size_px",
]

HEAT_CMAP = "inferno"  # perceptually uniform and still readable in greyscale print
DPI = 100
IMAGE_SIZE_IN = (6.4, 5.6)  # 640 x 560 px: room for the image, the colour bar and a two-line caption
VOLUME_WIDTH_IN = 10.0
MONTAGE_COLUMNS = 3
ALPHA_MAX = 0.75  # the grey image stays visible under the strongest evidence
ALPHA_FLOOR = 0.15  # relative saliency below this is fully transparent


@dataclass(frozen=True)
class OverlayLayout:
    """Where things landed in the PNG, in output pixels (row 0 at the top), for callers and tests.

    `panels` maps a panel name (`image`, or `bscan <k>` in a montage) to the inclusive pixel box
    `(row0, row1, col0, col1)` that the drawn image occupies.
    """

    size_px: tuple[int, int]  # (width, height)
    panels: dict[str, tuple[int, int, int, int]]
    scale: float  # saliency value drawn at full heat


def caption_text(*, score: float, label: str, method: str, model: str, note: str = "") -> str:
    """The overlay caption: score, label, method and model; optional note on its own line.

    Callers pass only model facts here, never header fields, so the caption cannot carry PHI.

    Example:
        >>> caption_text(score=0.91, label="malignant", method="wbp", model="tiny (lidc-ppi)")
    """
    text = f"{label}: score {score:.3f}   ·   saliency {method}   ·   model {model}"
    return f"{text}\n{note}" if note else text


def heat_scale(maps: Sequence[np.ndarray], percentile: float = 99.5) -> float:
    """The saliency value drawn at full heat: a high percentile of the positive evidence.

    A percentile rather than the maximum keeps one extreme pixel from washing out the rest.
    Returns 0 when no map has positive evidence.
    """
    pos = np.concatenate([positive_part(m).ravel() for m in maps]) if maps else np.zeros(0)
    pos = pos[pos > 0]
    if pos.size == 0:
        return 0.0
    return float(max(np.percentile(pos, percentile), np.finfo(np.float32).tiny))


def heat_rgba(saliency: np.ndarray, scale: float, cmap: str = HEAT_CMAP) -> np.ndarray:
    """Colour the positive saliency; alpha grows with it and is zero below the floor.

    Args:
        saliency: (H, W) map, signed.
        scale: Value drawn at full heat (see `heat_scale`); 0 gives a fully transparent layer.
        cmap: A matplotlib colour map name.

    Returns:
        (H, W, 4) float RGBA in [0, 1].
    """
    from matplotlib import colormaps

    rel = np.clip(positive_part(saliency) / scale, 0.0, 1.0) if scale > 0 else np.zeros(np.shape(saliency))
    rgba = colormaps[cmap](rel)  # (H, W, 4)
    rgba[..., 3] = ALPHA_MAX * np.clip((rel - ALPHA_FLOOR) / (1.0 - ALPHA_FLOOR), 0.0, 1.0)
    return rgba


def render_image_overlay(path: str | Path, image: np.ndarray, saliency: np.ndarray, caption: str) -> OverlayLayout:
    """Draw a 2D overlay PNG (640 x 560 px).

    Args:
        path: Output PNG, written atomically.
        image: (H, W) grey or (H, W, 3) colour, intensities in [0, 1] (what the model saw).
        saliency: (H, W) signed map at the same resolution.
        caption: Text under the image (see `caption_text`).

    Returns:
        The layout, with the image panel's pixel box.
    """
    _check_pair(image, saliency)
    fig = _figure(IMAGE_SIZE_IN)
    ax = fig.add_axes((0.04, 0.15, 0.78, 0.80))
    scale = heat_scale([saliency])
    mappable = _draw_panel(ax, image, saliency, scale)
    cax = fig.add_axes((0.86, 0.15, 0.03, 0.80))
    _colour_bar(fig, mappable, cax, scale)
    fig.text(0.5, 0.03, caption, ha="center", va="bottom", fontsize=9, wrap=True)
    return _save(fig, path, {"image": ax}, scale)


def volume_size_px(top_slices: int) -> tuple[int, int]:
    """PNG size (width, height) of a volume overlay with `top_slices` montage panels."""
    rows = max(1, math.ceil(top_slices / MONTAGE_COLUMNS))
    return int(VOLUME_WIDTH_IN * DPI), int(round(_volume_height_in(rows) * DPI))


def render_volume_overlay(path: str | Path, volume: np.ndarray, maps: Mapping[int, np.ndarray],
                          attention: np.ndarray, slice_scores: np.ndarray, caption: str,
                          source_bscans: np.ndarray | None = None) -> OverlayLayout:
    """Draw a volume overlay PNG: attention of every B-scan, then a montage of the chosen B-scans.

    Args:
        path: Output PNG, written atomically.
        volume: (S, H, W) B-scans in [0, 1], as the model saw them.
        maps: B-scan index -> (H, W) saliency map for the B-scans of the montage (most attended
            first; the caller chooses them). All panels share one heat scale, so they compare.
        attention: (S,) attention weight per B-scan (paper appendix E.2: softmax over B-scans).
        slice_scores: (S,) per-B-scan probability p_k.
        caption: Text at the bottom (volume score, method, model).
        source_bscans: (S,) the B-scan of the input file each model B-scan came from, shown in the
            panel titles when it differs (a viewer numbers the file's B-scans).

    Returns:
        The layout, with one pixel box per montage panel (`bscan <k>`).
    """
    volume = np.asarray(volume)
    n_slices = volume.shape[0]
    attention = np.asarray(attention, dtype=np.float64).ravel()
    slice_scores = np.asarray(slice_scores, dtype=np.float64).ravel()
    if attention.shape != (n_slices,) or slice_scores.shape != (n_slices,):
        raise ValueError(f"attention {attention.shape} and slice scores {slice_scores.shape} must be ({n_slices},)")
    for k, m in maps.items():
        _check_pair(volume[k], m)
    rows = max(1, math.ceil(len(maps) / MONTAGE_COLUMNS))
    height_in = _volume_height_in(rows)
    fig = _figure((VOLUME_WIDTH_IN, height_in))
    _draw_attention_bars(fig, height_in, attention, slice_scores, chosen=list(maps))

    scale = heat_scale(list(maps.values()))
    panel_h = 2.6 / height_in  # montage rows are 2.6 in tall plus a title line
    axes, mappable = {}, None
    for i, (k, saliency) in enumerate(maps.items()):
        row, col = divmod(i, MONTAGE_COLUMNS)
        bottom = (0.75 + (rows - 1 - row) * 2.9) / height_in
        ax = fig.add_axes((0.03 + col * 0.30, bottom, 0.28, panel_h))
        mappable = _draw_panel(ax, volume[k], saliency, scale)
        source = "" if source_bscans is None or int(source_bscans[k]) == k else f" (file {int(source_bscans[k])})"
        ax.set_title(f"B-scan {k}{source}: attention {attention[k]:.3f}, p = {slice_scores[k]:.2f}", fontsize=8)
        axes[f"bscan {k}"] = ax
    if mappable is not None:
        cax = fig.add_axes((0.93, 0.75 / height_in, 0.015, (rows * 2.9 - 0.3) / height_in))
        _colour_bar(fig, mappable, cax, scale)
    fig.text(0.5, 0.15 / height_in, caption, ha="center", va="bottom", fontsize=9, wrap=True)
    return _save(fig, path, axes, scale)


def _volume_height_in(rows: int) -> float:
    return 0.75 + rows * 2.9 + 2.6  # caption band, montage rows, attention bar plot


def _draw_attention_bars(fig, height_in: float, attention: np.ndarray, slice_scores: np.ndarray,
                         chosen: list[int]) -> None:
    ax = fig.add_axes((0.07, 1.0 - 2.2 / height_in, 0.86, 1.8 / height_in))
    from matplotlib.ticker import MaxNLocator

    n = attention.size
    colours = ["#d95f02" if k in chosen else "#7570b3" for k in range(n)]
    ax.bar(np.arange(n), attention, color=colours, width=0.85)
    ax.set_xlim(-0.6, n - 0.4)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("B-scan", fontsize=8)
    ax.set_ylabel("attention weight", fontsize=8)
    ax.tick_params(labelsize=7)
    twin = ax.twinx()
    twin.plot(np.arange(n), slice_scores, ".", color="#1b9e77", markersize=4)
    twin.set_ylim(0, 1)
    twin.set_ylabel("B-scan probability", fontsize=8, color="#1b9e77")
    twin.tick_params(labelsize=7, colors="#1b9e77")
    ax.set_title("attention over B-scans (orange: shown below)", fontsize=9)


def _draw_panel(ax, image: np.ndarray, saliency: np.ndarray, scale: float):
    from matplotlib.colors import Normalize

    img = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    if img.ndim == 2:
        ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(img, interpolation="nearest")
    ax.imshow(heat_rgba(saliency, scale), interpolation="nearest")
    ax.set_axis_off()
    # A scalar mappable for the colour bar; the RGBA layer itself carries no colour-map link.
    from matplotlib.cm import ScalarMappable

    return ScalarMappable(norm=Normalize(0.0, 1.0), cmap=HEAT_CMAP)


def _colour_bar(fig, mappable, cax, scale: float) -> None:
    bar = fig.colorbar(mappable, cax=cax)
    bar.set_label("positive saliency (relative)" if scale > 0 else "no positive saliency", fontsize=8)
    bar.ax.tick_params(labelsize=7)


def _figure(size_in: tuple[float, float]):
    from matplotlib.figure import Figure

    return Figure(figsize=size_in, dpi=DPI, facecolor="white")


def _save(fig, path: str | Path, axes: Mapping[str, object], scale: float) -> OverlayLayout:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    width, height = (int(round(v)) for v in fig.bbox.size)
    panels = {name: _image_box(ax, height) for name, ax in axes.items()}
    with atomic_path(path) as tmp:
        # No bbox_inches="tight": the PNG keeps the promised size. Metadata says only the software.
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": "ppi"})
    return OverlayLayout((width, height), panels, scale)


def _image_box(ax, height: int) -> tuple[int, int, int, int]:
    """Inclusive (row0, row1, col0, col1) output pixels covered by the first image drawn in `ax`."""
    x0, x1, y0, y1 = ax.images[0].get_extent()  # data coordinates of the pixel edges
    (dx0, dy0), (dx1, dy1) = ax.transData.transform([(x0, y0), (x1, y1)])
    cols = sorted((dx0, dx1))
    rows = sorted((height - dy0, height - dy1))  # display y grows upwards, PNG rows downwards
    return (math.ceil(rows[0]), math.floor(rows[1]) - 1, math.ceil(cols[0]), math.floor(cols[1]) - 1)


def _check_pair(image: np.ndarray, saliency: np.ndarray) -> None:
    if np.ndim(image) not in (2, 3) or np.shape(image)[:2] != np.shape(saliency):
        raise ValueError(f"image {np.shape(image)} and saliency {np.shape(saliency)} must share (H, W)")
