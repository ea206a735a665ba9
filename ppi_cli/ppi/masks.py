# SPDX-License-Identifier: MIT
"""Intervention masks T(s) and the intervened image x* = (1 − T(s)) ⊙ x (paper eqs. 1-2, appendix B).

Every function takes saliency maps `(B, 1, *spatial)` (signed, per input pixel, as `saliency_map`
returns them) and gives a mask of the same shape in [0, 1], 1 where the pixel is removed. The mask
is per pixel and broadcast over the image's channels. Statistics (max, mean, std) are per image
over all its pixels; std is the population std.

- `soft`: T = sigmoid(ω (ŝ − σ)) with ŝ = s / max(s), the max-normalised saliency and a fixed σ;
- `soft-adaptive`: the same with σ_i = mean(ŝ_i) + c · std(ŝ_i) per image;
- `hard`: T = 1[s > c · std(s)] (the "point" mask);
- `top-k`: T = 1 on exactly the k largest saliency values of each image, k = `ppi.top_k` or
  `ppi.coverage` × pixels: the same pixel budget for every image and every saliency method;
- `box`: the box around the hard mask's points, centred on their centre of mass, half-sizes
  `spread` times their std along each axis (by the union bound at least 1 − d/spread² of the
  points lie inside, d the number of axes).

`dilate` grows any of them by a square neighbourhood (`ppi.dilate`), and `lesion` masks are not
computed here: they are the data's own (ppi/intervention.py).

Soft masks are differentiable in s; hard and box masks are constants (their gradient reaches the
parameters only through the classifier's outputs on the masked images).
"""

from __future__ import annotations

import torch

from ppi_cli.autograd.tensors import broadcast_per_sample
from ppi_cli.data.bscans import blurred
from ppi_cli.errors import ConfigError

__all__ = ["normalise_saliency", "keep_top_k", "soft_mask", "adaptive_soft_mask", "hard_mask", "box_mask",
           "intervention_mask", "evidence_mask", "intervene", "blurred", "broadcast_per_sample", "top_k_mask",
           "budget", "dilate", "MASKS"]

MASKS = ("soft", "soft-adaptive", "hard", "box", "top-k", "lesion")
_EPS = 1e-12


def _flat(s: torch.Tensor) -> torch.Tensor:
    return s.flatten(1)  # (B, P): every pixel of an image in one row


def normalise_saliency(s: torch.Tensor) -> torch.Tensor:
    """ŝ = s / max(s) per image, so the largest value is 1 (a map with no positive value stays ≤ 0)."""
    peak = _flat(s).amax(dim=1).clamp_min(_EPS)  # (B,)
    return s / broadcast_per_sample(peak, s)


def keep_top_k(s: torch.Tensor, k: int) -> torch.Tensor:
    """Zero all but the `k` largest saliency values of each image (k = 0 or ≥ pixels keeps all).

    The paper builds its CUB masks from the top 1000 points of every method (appendix B).
    """
    flat = _flat(s)
    if k <= 0 or k >= flat.shape[1]:
        return s
    threshold = flat.topk(k, dim=1).values[:, -1:]  # (B, 1): the k-th largest value
    keep = (flat >= threshold).to(s.dtype)
    return (flat * keep).view_as(s)


def budget(s: torch.Tensor, top_k: int, coverage: float) -> int:
    """Pixels per image a budgeted mask removes: `top_k` if set, else `coverage` × pixels (at least one)."""
    pixels = _flat(s).shape[1]
    if top_k > 0:
        return min(top_k, pixels)
    return max(1, min(pixels, round(coverage * pixels)))


def top_k_mask(s: torch.Tensor, k: int) -> torch.Tensor:
    """1 on exactly the `k` largest saliency values of each image (ties broken by position), else 0."""
    flat = _flat(s.detach())
    mask = torch.zeros_like(flat)
    mask.scatter_(1, flat.topk(k, dim=1).indices, 1.0)
    return mask.view_as(s)


def evidence_mask(s: torch.Tensor, coverage: float, smooth: float = 0.0) -> torch.Tensor:
    """1 on each map's top `coverage` share of pixels by its positive part, else 0: L_out's own mask.

    The positive part is the evidence for the map's class (a true-class map: for its label), blurred
    with a Gaussian of std `smooth` pixels first when `smooth` > 0 so that the mask is a compact
    region (`ppi.out_coverage`, `ppi.map_smooth`). A constant: no gradient reaches the map through it.

    Example:
        >>> s = torch.tensor([[[[3.0, -5.0], [1.0, 2.0]]]])
        >>> evidence_mask(s, 0.5).flatten().tolist()
        [1.0, 0.0, 0.0, 1.0]
    """
    part = s.detach().clamp(min=0)
    if smooth > 0:
        part = blurred(part, smooth)
    return top_k_mask(part, budget(part, 0, coverage))


def soft_mask(s: torch.Tensor, sigma: float, omega: float, coverage: float = 0.0) -> torch.Tensor:
    """Thresholded sigmoid on the max-normalised saliency: T = sigmoid(ω (ŝ − σ)) (eq. 2).

    With `coverage` > 0 the threshold is per image, σ_i the (1 − coverage) quantile of ŝ_i, so T
    passes one half at the budget's edge and removes about that share of pixels whatever the map's
    shape; σ_i is a constant (the gradient reaches s through ŝ only).
    """
    s_hat = normalise_saliency(s)
    if coverage > 0:
        sigma_i = torch.quantile(_flat(s_hat).detach().float(), 1.0 - coverage, dim=1).to(s_hat.dtype)
        return torch.sigmoid(omega * (s_hat - broadcast_per_sample(sigma_i, s)))
    return torch.sigmoid(omega * (s_hat - sigma))


def adaptive_soft_mask(s: torch.Tensor, c: float, omega: float) -> torch.Tensor:
    """Eq. 2 with a per-image threshold σ_i = mean(ŝ_i) + c · std(ŝ_i) (appendix B's adaptive σ)."""
    s_hat = normalise_saliency(s)
    flat = _flat(s_hat)
    sigma = flat.mean(dim=1) + c * flat.std(dim=1, unbiased=False)  # (B,)
    return torch.sigmoid(omega * (s_hat - broadcast_per_sample(sigma, s)))


def hard_mask(s: torch.Tensor, c: float) -> torch.Tensor:
    """The point mask 1[s > c · std(s)] (appendix B: "larger than k times the std of the WBP weights")."""
    s = s.detach()
    std = _flat(s).std(dim=1, unbiased=False)  # (B,)
    return (s > broadcast_per_sample(c * std, s)).to(s.dtype)


def box_mask(s: torch.Tensor, c: float, spread: float) -> torch.Tensor:
    """The box around the hard mask's points: centre of mass ± `spread` · std along each axis.

    An image without any point gets an empty box (nothing removed). Half-sizes are at least half
    a pixel, so a single point gives a one-pixel box.
    """
    points = hard_mask(s, c)  # (B, 1, *spatial)
    spatial = points.shape[2:]
    count = _flat(points).sum(dim=1)  # (B,)
    inside = torch.ones_like(points, dtype=torch.bool)
    for axis, size in enumerate(spatial):
        shape = [1] * points.ndim
        shape[2 + axis] = size
        coord = torch.arange(size, dtype=points.dtype, device=points.device).view(shape)  # broadcasts on one axis
        total = count.clamp_min(1)
        centre = _flat(points * coord).sum(dim=1) / total  # (B,)
        var = _flat(points * coord**2).sum(dim=1) / total - centre**2
        half = (spread * var.clamp_min(0).sqrt()).clamp_min(0.5)  # (B,)
        inside &= (coord - broadcast_per_sample(centre, points)).abs() <= broadcast_per_sample(half, points)
    return (inside & broadcast_per_sample(count > 0, points)).to(s.dtype)


def intervention_mask(s: torch.Tensor, kind: str, *, sigma: float = 0.5, omega: float = 20.0, c: float = 1.0,
                      top_k: int = 0, spread: float = 2.0, coverage: float = 0.0) -> torch.Tensor:
    """The mask T(s) `(B, 1, *spatial)` of a recipe's `ppi.mask`, after keeping the top-k points.

    Args:
        s: Saliency `(B, 1, *spatial)`.
        kind: `soft`, `soft-adaptive`, `hard` or `box`.
        sigma: Fixed threshold of `soft` on max-normalised saliency.
        omega: Sigmoid steepness of the soft masks.
        c: Std multiplier of `soft-adaptive`, `hard` and `box`.
        top_k: Keep only the k largest saliency values per image first (0 keeps all); the budget of `top-k`.
        spread: Box half-size in stds of the points' coordinates.
        coverage: Share of pixels: the budget of `top-k` without `top_k`, the per-image σ of `soft`.

    Raises:
        ConfigError: Unknown mask kind.
    """
    if kind == "top-k":
        return top_k_mask(s, budget(s, top_k, coverage))
    s = keep_top_k(s, top_k)
    if kind == "soft":
        return soft_mask(s, sigma, omega, coverage)
    if kind == "soft-adaptive":
        return adaptive_soft_mask(s, c, omega)
    if kind == "hard":
        return hard_mask(s, c)
    if kind == "box":
        return box_mask(s, c, spread)
    raise ConfigError(f"ppi.mask: unknown mask '{kind}'", hint=f"use one of: {', '.join(MASKS)}")


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Grow masks `(B, 1, H, W)` by `radius` pixels: each pixel takes the largest value of its (2r + 1)² square.

    A max filter, so a soft mask keeps its gradient (through the maximum) and a binary one stays binary.
    """
    if radius <= 0:
        return mask
    size = 2 * radius + 1
    return torch.nn.functional.max_pool2d(mask, size, stride=1, padding=radius)


def intervene(x: torch.Tensor, mask: torch.Tensor, fill: torch.Tensor | None = None) -> torch.Tensor:
    """The intervened image x* = (1 − T) ⊙ x + T ⊙ fill: masked pixels become 0 (eq. 1) or `fill`.

    Args:
        x: Images `(B, C, *spatial)` in [0, 1].
        mask: `(B, 1, *spatial)` in [0, 1], broadcast over channels.
        fill: What replaces a removed pixel, shaped like `x` (None: 0, the paper's eq. 1).
    """
    t = mask.to(x.dtype)
    if fill is None:
        return (1 - t) * x
    return (1 - t) * x + t * fill


