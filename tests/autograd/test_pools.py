# SPDX-License-Identifier: MIT
"""The pool swap (autograd/pools.py) is the plain 3×3 average pool: values, gradients, second order."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ppi_cli.autograd.pools import box_pool_as_convolution


def test_box_pool_as_convolution_is_the_average_pool():
    torch.manual_seed(0)
    for layout in (torch.contiguous_format, torch.channels_last):
        x = torch.rand(2, 5, 7, 6, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_(True)
        g = torch.rand(2, 5, 7, 6, dtype=torch.float64)
        expected = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)
        (expected_grad,) = torch.autograd.grad(expected, x, g)
        with box_pool_as_convolution():
            got = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)
            assert got.grad_fn is not None and "Convolution" in type(got.grad_fn).__name__
            (got_grad,) = torch.autograd.grad(got, x, g)
            assert torch.autograd.gradgradcheck(lambda t: F.avg_pool2d(t, 3, 1, 1), (x[:1, :2, :4, :4],))
        assert torch.allclose(got, expected, rtol=0, atol=1e-15)
        assert torch.allclose(got_grad, expected_grad, rtol=0, atol=1e-15)
    # Pools that are not that linear map pass through untouched (a convolution would differ).
    x = torch.rand(1, 3, 7, 7)
    with box_pool_as_convolution():
        for kwargs in ({"stride": 2, "padding": 1}, {"stride": 1, "padding": 1, "count_include_pad": False},
                       {"stride": 1, "padding": 0}, {"stride": 2, "padding": 1, "ceil_mode": True},
                       {"stride": 1, "padding": 1, "divisor_override": 4}):
            got = F.avg_pool2d(x, 3, **kwargs)
            assert "AvgPool" in type(F.avg_pool2d(x.requires_grad_(), 3, **kwargs).grad_fn).__name__, kwargs
            x.requires_grad_(False)
            assert torch.equal(got, F.avg_pool2d(x, 3, **kwargs)), kwargs
