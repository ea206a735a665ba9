# SPDX-License-Identifier: MIT
"""K B-scans of a volume for one training sample (paper appendix E.2), and the Gaussian blur of images.

Every volume Dataset (`ga`, and `synthetic` with `synthetic_slices`) serves training samples of K
B-scans drawn here, kept in B-scan order with their position ids; evaluation serves every B-scan.
`blurred` is the one Gaussian blur of the package: the GA training blur (`data.blur`), and above this
layer PPI's blur fill and blurred looks (`ppi.fill`, `ppi.swap_look`).
"""

from __future__ import annotations

import torch

__all__ = ["sample_bscans", "blurred"]


def sample_bscans(n: int, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Positions of `min(k, n)` of a volume's `n` B-scans, drawn without replacement, in B-scan order.

    Returns:
        `(K,)` int64 indices, ascending.
    """
    return torch.randperm(n, generator=generator)[: min(k, n)].sort().values


def blurred(x: torch.Tensor, sigma: float | tuple[float, float]) -> torch.Tensor:
    """A Gaussian blur of `(N, C, H, W)` images with std `sigma` pixels (separable, reflect padding), or
    `(down, across)` stds along H and W; an axis of std 0 is left as it is.

    As `ppi.fill: blur` a removed pixel takes its neighbourhood's smooth level, so the image keeps its
    low-frequency look (a site's brightness ramp, its overall gain) and loses the detail inside the mask,
    instead of a black hole the classifier can learn to see; as `data.blur` a scanner's softer focus.
    """
    n, c, h, w = x.shape
    out = x.reshape(n * c, 1, h, w)
    down, across = sigma if isinstance(sigma, tuple) else (sigma, sigma)
    for axis, size, sigma in ((2, h, down), (3, w, across)):
        if sigma <= 0:
            continue
        radius = max(0, min(int(round(3 * sigma)), size - 1))  # reflect padding needs radius < size
        taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
        kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
        shape = (1, 1, -1, 1) if axis == 2 else (1, 1, 1, -1)
        pad = (0, 0, radius, radius) if axis == 2 else (radius, radius, 0, 0)
        out = torch.nn.functional.conv2d(torch.nn.functional.pad(out, pad, mode="reflect"),
                                         (kernel / kernel.sum()).view(shape))
    return out.view(n, c, h, w)
