# SPDX-License-Identifier: MIT
"""An image's look and images put in another's look (`ppi.swap_look`, `ppi.look_to`, `ppi.invariance`).

A look is a smooth gain field of an image (its Gaussian blur: a site's brightness ramp) or its column
profile (an OCT A-scan's gain: a ramp or column stripes). An image is put in another look by
multiplying its pixels by the ratio of the two looks, so a site effect can be moved between images
while their content stays.
"""

from __future__ import annotations

import torch

from ppi_cli.ppi.masks import blurred

__all__ = ["image_look", "swapped_looks", "relooked", "TOP_QUANTILE"]

TOP_QUANTILE = 0.995  # the quantile `ppi.look_level: top` holds: prepare maps each image's 99.5th percentile to the top


def image_look(images: torch.Tensor, kind: str, sigma: float, weight: torch.Tensor | None = None,
               level: str = "swap") -> torch.Tensor:
    """An image's look `(N, C, H, W)`: its Gaussian blur of std `sigma` (`blur`) or its column profile, the mean
    over rows of each column, broadcast down the rows (`columns`); floored at 0.02. With `level` `keep`
    (`ppi.look_level`) the look is divided by its mean over the image, so it holds only the look's shape (a
    ramp's slope, stripes) and an image put in another's look keeps its own overall brightness.

    With `weight` `(N, 1, H, W)` in [0, 1] (`ppi.look_from: outside`: 1 outside the mask) the look is the
    weighted mean instead (a normalised convolution for `blur`), so weight-0 pixels do not enter it; where
    almost no weight is near (under 5 % of the blur's mass, or of a column's rows) the plain look stands.
    `level` `top` gives the look `keep` gives: what differs is how `swapped_looks` and `relooked` scale the result.
    """
    plain = blurred(images, sigma) if kind == "blur" else images.mean(dim=-2, keepdim=True)
    if weight is not None:
        w = weight.expand_as(images)
        if kind == "blur":
            mass, total = blurred(w, sigma), blurred(images * w, sigma)
        else:
            mass, total = w.mean(dim=-2, keepdim=True), (images * w).mean(dim=-2, keepdim=True)
        plain = torch.where(mass > 0.05, total / mass.clamp_min(0.05), plain)
    look = plain.expand_as(images).clamp_min(0.02)
    return look / look.mean(dim=(-2, -1), keepdim=True) if level in ("keep", "top") else look


def swapped_looks(x: torch.Tensor, donor: torch.Tensor, kind: str = "blur", sigma: float = 8.0,
                  outside: torch.Tensor | None = None, level: str = "swap") -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's pixels in the other's look (`ppi.swap_look`): `(donor in x's look, x in donor's look)`.

    An image's look is `image_look` (a smooth gain field such as a site's brightness ramp, or a
    column profile such as stripes of A-scan gain); an image in another's look is its pixels times
    the ratio of the two looks (kept within [1/4, 4]), clipped to [0, 1]. So the donor's pixels that
    fill x* carry x's site effect, the region x^k pastes onto the donor carries the donor's, and the
    site effect stays with the image it belongs to. Images `(B, C, H, W)` or `(B, S, C, H, W)`; `outside`
    `(N, 1, H, W)`, N = B or B·S (`ppi.look_from: outside`): both looks are taken from the pixels where it is 1,
    outside x's mask. `level`: as in `image_look`; with `top` each image put in another's look is then scaled so
    its `TOP_QUANTILE` intensity is what it was, as prepare's percentile normalisation leaves every image: a look
    that brightens an image's columns beyond the data's range would otherwise brighten the choroid under the RPE,
    which is how GA's hypertransmission looks (docs/ppi.md).
    """
    flat_x, flat_d = (t.flatten(0, -4) for t in (x, donor))  # (N, C, H, W)
    ratio = _look_ratio(*(image_look(t, kind, sigma, outside, level) for t in (flat_x, flat_d)))
    into_x = _in_range(flat_d * ratio, flat_d, level).view_as(donor)
    into_d = _in_range(flat_x / ratio, flat_x, level).view_as(x)
    return into_x, into_d


def relooked(images: torch.Tensor, look: torch.Tensor, kind: str = "blur", sigma: float = 8.0,
             outside: torch.Tensor | None = None, level: str = "swap") -> torch.Tensor:
    """`images` in the given `look` `(N, C, H, W)` (`ppi.look_to: random`): what `swapped_looks` makes of a donor
    put into the look's image, with that look computed once for every image that takes it (`look` from
    `image_look` with the same `level`)."""
    flat = images.flatten(0, -4)
    ratio = _look_ratio(look, image_look(flat, kind, sigma, outside, level))
    return _in_range(flat * ratio, flat, level).view_as(images)


def _in_range(moved: torch.Tensor, before: torch.Tensor, level: str) -> torch.Tensor:
    """Images `(N, C, H, W)` given another look, clipped to [0, 1]; with `level` `top` first scaled so that each
    one's `TOP_QUANTILE` intensity is that of the image it was made from."""
    if level == "top":
        was, now = (torch.quantile(t.flatten(1).float(), TOP_QUANTILE, dim=1) for t in (before, moved))
        moved = moved * (was / now.clamp_min(1e-6)).view(-1, 1, 1, 1).to(moved.dtype)
    return moved.clamp(0.0, 1.0)


def _look_ratio(to: torch.Tensor, of: torch.Tensor) -> torch.Tensor:
    return (to / of).clamp(0.25, 4.0)  # a look changes an image's gain by at most four times either way
