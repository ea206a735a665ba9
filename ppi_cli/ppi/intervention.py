# SPDX-License-Identifier: MIT
"""The pseudo-intervention of a batch: saliency, masks, and the images x* and x' (paper section 3.1).

`pseudo_intervention` runs the saliency method on the clean batch, builds the masks and returns
one tensor holding both intervened sets, so the trainer classifies them in a single forward:

    inputs = [ x*_i = (1 − T(s_i)) ⊙ x_i   for the rows L_con applies to ;
               x'_i = (1 − T(s_j)) ⊙ x_i   for every row, j = perm(i) ≠ i ]

Saliency is taken for each sample's true class. A binary head has one logit, the positive class,
so for a negative sample the map is negated (the evidence for class 0 is the evidence against the
positive logit). For the multi-view model saliency and masks are per B-scan, with respect to the
slice logit (`model.slice_classifier`), and L_ad permutes whole volumes, so slice k of volume i
takes the mask of slice k of volume j.

Dropout is switched off while the saliency is computed: it regularises training, it is not part
of the function whose evidence the map shows (and WBP has no rule for it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ppi_cli.config.recipe import PPIConfig
from ppi_cli.ppi.losses import derangement
from ppi_cli.ppi.masks import intervene, intervention_mask

__all__ = ["Intervention", "pseudo_intervention", "contrast_rows", "dropout_off", "norm_statistics_frozen"]


@dataclass
class Intervention:
    """What one pseudo-intervention produced for a batch of B samples.

    Attributes:
        saliency: `(N, 1, *spatial)` maps, N = B images or B·S B-scans, true-class sign.
        mask: `(N, 1, *spatial)` T(s) in [0, 1].
        rows: int64 `(R,)` batch rows L_con applies to.
        perm: int64 `(B,)` the image whose mask each row takes for L_ad (identity when B < 2).
        inputs: `(R + B', C, *spatial)` or `(R + B', S, C, H, W)`: x* of `rows`, then x' of every row
            (B' = B, or 0 when B < 2).
        positions: `(R + B', S)` positions matching `inputs` (volume models), else None.
    """

    saliency: torch.Tensor
    mask: torch.Tensor
    rows: torch.Tensor
    perm: torch.Tensor
    inputs: torch.Tensor
    positions: torch.Tensor | None

    @property
    def n_contrast(self) -> int:
        """Number of x* images at the front of `inputs`."""
        return int(self.rows.numel())


@contextmanager
def dropout_off(model: nn.Module) -> Iterator[None]:
    """Put dropout layers in eval mode for the block and give them back their mode afterwards."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.training]
    for layer in layers:
        layer.eval()
    try:
        yield
    finally:
        for layer in layers:
            layer.train()


@contextmanager
def norm_statistics_frozen(model: nn.Module) -> Iterator[None]:
    """Train-mode batch norm keeps using batch statistics but does not update its running ones.

    The intervened images must not drift the running statistics, which describe clean images and
    are what the model uses at test time.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None)
             for m in norms]
    for m in norms:
        m.momentum = 0.0  # running = (1 − 0)·running + 0·batch
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved, strict=True):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def contrast_rows(labels: torch.Tensor, binary: bool, contrast_on: str) -> torch.Tensor:
    """Rows L_con applies to: binary tasks the positives (or all), multi-class tasks all rows."""
    if binary and contrast_on == "positives":
        return torch.nonzero(labels > 0.5).flatten()
    return torch.arange(labels.shape[0], device=labels.device)


def pseudo_intervention(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, cfg: PPIConfig, *,
                        binary: bool, positions: torch.Tensor | None = None,
                        generator: torch.Generator | None = None) -> Intervention:
    """Saliency, masks and intervened images of a clean batch (paper eqs. 1, 4).

    Args:
        model: The unwrapped model (not DDP); for volumes the multi-view model.
        x: `(B, C, *spatial)` images or `(B, S, C, H, W)` volumes, [0, 1].
        labels: `(B,)` float {0, 1} (binary) or int64 class indices.
        cfg: The recipe's `ppi` section (saliency, mask, σ, ω, c, top_k, contrast_on, create_graph).
        binary: The model has one logit.
        positions: `(B, S)` B-scan positions for volume models.
        generator: CPU generator for the L_ad permutation (seeded by the trainer).

    Returns:
        An `Intervention`; `saliency` and soft masks keep their graph when `cfg.create_graph`.
    """
    from ppi_cli.saliency import saliency_map

    volume = positions is not None
    b = x.shape[0]
    images = x.flatten(0, 1) if volume else x  # (N, C, H, W)
    per_image = images.shape[0] // b  # S B-scans per volume, or 1
    if binary:
        target: torch.Tensor | int = 0
        sign = (2 * labels.to(x.dtype) - 1).repeat_interleave(per_image)  # (N,): −1 for negatives
    else:
        target = labels.long()
        sign = None
    explained = model.slice_classifier if volume else model
    with dropout_off(explained):
        s = saliency_map(explained, images, target, method=cfg.saliency, create_graph=cfg.create_graph)
    if sign is not None:
        s = s * sign.view(-1, *([1] * (s.ndim - 1)))  # (N, 1, *spatial)
    mask = intervention_mask(s, cfg.mask, sigma=cfg.sigma, omega=cfg.omega, c=cfg.c, top_k=cfg.top_k,
                             spread=cfg.box_spread)
    if not cfg.create_graph:
        mask = mask.detach()
    mask_b = mask.view(b, per_image, *mask.shape[1:]) if volume else mask  # (B, S, 1, H, W) or (B, 1, ...)
    rows = contrast_rows(labels, binary, cfg.contrast_on)
    perm = derangement(b, generator).to(x.device)
    parts = [intervene(x[rows], mask_b[rows])]
    pos_parts = [positions[rows]] if volume else []
    if b >= 2:
        parts.append(intervene(x, mask_b[perm]))
        pos_parts += [positions] if volume else []
    return Intervention(saliency=s, mask=mask, rows=rows, perm=perm, inputs=torch.cat(parts),
                        positions=torch.cat(pos_parts) if volume else None)
