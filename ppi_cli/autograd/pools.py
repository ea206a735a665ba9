# SPDX-License-Identifier: MIT
"""Inception's 3×3 average pools as depthwise convolutions on the CPU (the pool swap).

On the CPU the 3×3 average pools of Inception's mixed blocks (stride 1, zero padding counted) run as
depthwise convolutions with a constant 1/9 kernel: the same linear map and the same gradient (to
float rounding), five to ten times faster than the CPU pooling kernel forward and backward, which
made them about 14 % of a plain training step (docs/benchmarks.md). tests/autograd/test_pools.py
pins the swap to the plain pool, values and second-order gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ppi_cli.autograd.torch_calls import avg_pool2d_args, call_arg

__all__ = ["box_pool_as_convolution"]


def _is_box3(args: tuple, kwargs: dict) -> bool:
    """`F.avg_pool2d(x, 3, 1, 1)` of a 4-D CPU float tensor, zero padding counted, no rounding up or divisor."""
    x = call_arg(args, kwargs, 0, "input", None)
    if not (isinstance(x, torch.Tensor) and x.ndim == 4 and x.device.type == "cpu" and x.is_floating_point()):
        return False
    return avg_pool2d_args(args, kwargs) == ([3, 3], [1, 1], [1, 1], False, True, None)


class box_pool_as_convolution(TorchFunctionMode):  # noqa: N801  (used like a function: `with ...():`)
    """While active, a 3×3, stride-1, zero-padded average pool on the CPU runs as a depthwise convolution.

    The pool is the linear map x ↦ (x ∗ 1/9) with zero padding, which is what `conv2d` with a constant
    `(C, 1, 3, 3)` kernel of 1/9 and `groups=C` computes; its backward is the same convolution. Any
    other call passes through, so saliency rules and the double-backward Functions see an ordinary
    convolution without bias.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: D105
        kwargs = kwargs or {}
        if func is F.avg_pool2d and _is_box3(args, kwargs):
            x = call_arg(args, kwargs, 0, "input", None)
            return F.conv2d(x, x.new_full((x.shape[1], 1, 3, 3), 1 / 9), padding=1, groups=x.shape[1])
        return func(*args, **kwargs)
