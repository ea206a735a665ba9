# SPDX-License-Identifier: MIT
"""A naive WBP: walk the layers and apply the paper's rule table one layer at a time (Sec. 3.2).

Independent of autograd and of `ppi_cli.saliency`: every rule is written out literally.
- Linear: W^l = W^{l+1} W_fc.
- Conv (Appendix A.2): dilate W^{l+1} with stride - 1 zeros, full convolution with the kernel
  transposed in (out, in) and flipped in space, rows/columns the stride skipped get zero.
- Activation h: multiply by h(a)/a, computed with the module's own forward.
- Batch norm: multiply by gamma/sqrt(var + eps), running statistics in eval, batch ones in train.
- Group, layer and instance norm: multiply by gamma/sqrt(var + eps) of the statistics each uses.
- Max pool: move each entry to the arg-max of its window (found by a loop, first maximum wins).
- Average pools: spread each entry, divided by the window size, over its window.
- Residual sum x + f(x): the rows of both branches add, W = W^{l+1} + G_f(W^{l+1}).
- Squeeze-excitation gate x * g(x) (g ends in a sigmoid): the gate is a constant per-channel scale,
  W = W^{l+1} * g; nothing goes back through g (as batch norm's statistics).
- Grouped (depthwise) conv: the conv rule per group.
Networks are trees of `nn.Sequential`, `Branches` (an Inception-style concatenation), `Residual`
and `Gate`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

Backward = Callable[[torch.Tensor], torch.Tensor]


class Branches(nn.Module):
    """Inception-style block: every branch sees the input; outputs are concatenated on channels."""

    def __init__(self, *branches: nn.Module):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        return torch.cat([b(x) for b in self.branches], dim=1)


class Residual(nn.Module):
    """`shortcut(x) + body(x)` (ResNet's basic block before its last ReLU; MBConv with `shortcut=Identity`)."""

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut if shortcut is not None else nn.Identity()

    def forward(self, x):
        return self.shortcut(x) + self.body(x)


class Gate(nn.Module):
    """Squeeze-excitation: `x * squeeze(x)`, the squeeze branch ending in a sigmoid."""

    def __init__(self, squeeze: nn.Module):
        super().__init__()
        self.squeeze = squeeze

    def forward(self, x):
        return x * self.squeeze(x)


class Elementwise(nn.Module):
    """An activation written as a functional call in forward (what custom nets and Inception do)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


ACTIVATIONS = (nn.ReLU, nn.SiLU, nn.GELU, nn.Tanh, nn.ELU, nn.Hardswish, nn.Mish, nn.ReLU6, nn.LeakyReLU,
               nn.Softsign, nn.SELU, nn.CELU, nn.Hardtanh, Elementwise)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def reference_rows(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """W^0[target] for each sample, shape of `x`."""
    logits, backward = _walk(model, x)
    rows = torch.zeros_like(logits)
    rows[torch.arange(x.shape[0]), target] = 1.0  # W^L = identity, row `target`
    return backward(rows)


def reference_map(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """s = sum_c x * W^0[target], shape (B, 1, *spatial)."""
    return (x * reference_rows(model, x, target)).sum(1, keepdim=True)


def _walk(module: nn.Module, a: torch.Tensor) -> tuple[torch.Tensor, Backward]:
    with torch.no_grad():
        if isinstance(module, nn.Sequential):
            steps = []
            for child in module:
                a, back = _walk(child, a)
                steps.append(back)

            def chain(v):
                for back in reversed(steps):
                    v = back(v)
                return v

            return a, chain
        if isinstance(module, Branches):
            outs, backs = zip(*(_walk(b, a) for b in module.branches), strict=True)
            sizes = [o.shape[1] for o in outs]
            return torch.cat(outs, 1), lambda v: sum(b(p) for b, p in zip(backs, v.split(sizes, 1), strict=True))
        if isinstance(module, Residual):
            (skip, skip_back), (body, body_back) = _walk(module.shortcut, a), _walk(module.body, a)
            return skip + body, lambda v: skip_back(v) + body_back(v)
        if isinstance(module, Gate):
            gate = module.squeeze(a.clone())  # a constant scale: the squeeze branch is not walked
            return a * gate, lambda v: v * gate
        out = module(a.clone())  # clone: an in-place activation must not overwrite the recorded input
        return out, _rule(module, a, out)


def _rule(module: nn.Module, a: torch.Tensor, out: torch.Tensor) -> Backward:
    if isinstance(module, nn.Linear):
        return lambda v: v @ module.weight
    if isinstance(module, _CONVS):
        return lambda v: _conv_rule(module, v, a.shape)
    if isinstance(module, ACTIVATIONS):
        assert bool((a != 0).all()), "the reference needs activation inputs away from 0"
        secant = module(a.clone()) / a
        return lambda v: v * secant
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        dims = (0, *range(2, a.ndim))
        var = a.var(dims, unbiased=False) if module.training else module.running_var
        scale = module.weight / torch.sqrt(var + module.eps)
        return lambda v: v * scale.reshape(1, -1, *[1] * (a.ndim - 2))
    if isinstance(module, nn.GroupNorm):
        b, c, g = a.shape[0], a.shape[1], module.num_groups
        var = a.reshape(b, g, -1).var(-1, unbiased=False)  # (B, G)
        scale = (1 / torch.sqrt(var + module.eps)).repeat_interleave(c // g, 1) * module.weight  # (B, C)
        return lambda v: v * scale.reshape(b, c, *[1] * (a.ndim - 2))
    if isinstance(module, nn.LayerNorm):
        dims = tuple(range(a.ndim - len(module.normalized_shape), a.ndim))
        scale = module.weight / torch.sqrt(a.var(dims, unbiased=False, keepdim=True) + module.eps)  # (B, *shape)
        return lambda v: v * scale
    if isinstance(module, nn.modules.instancenorm._InstanceNorm):
        inv_std = 1 / torch.sqrt(a.var(tuple(range(2, a.ndim)), unbiased=False, keepdim=True) + module.eps)
        return lambda v: v * inv_std * module.weight.reshape(1, -1, *[1] * (a.ndim - 2))
    if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
        return lambda v: _max_pool_rule(module, v, a)
    if isinstance(module, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
        return lambda v: _avg_pool_rule(v, a.shape, _pool_windows(module, a.shape, out.shape))
    if isinstance(module, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)):
        return lambda v: _avg_pool_rule(v, a.shape, _adaptive_windows(a.shape, out.shape))
    if isinstance(module, nn.Flatten):
        return lambda v: v.reshape(a.shape)
    if isinstance(module, (nn.Dropout, nn.Identity)) and not (module.training and isinstance(module, nn.Dropout)):
        return lambda v: v
    raise TypeError(f"the reference has no rule for {type(module).__name__}")


def _tuple(value, n: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, tuple | list) else (value,) * n


def _conv_rule(conv: nn.Module, v: torch.Tensor, in_shape: torch.Size) -> torch.Tensor:
    n = v.ndim - 2
    assert conv.padding_mode == "zeros"
    if conv.groups > 1:  # grouped / depthwise: each group is its own convolution
        g = conv.groups
        parts = []
        for i, (vi, wi) in enumerate(zip(v.chunk(g, 1), conv.weight.chunk(g, 0), strict=True)):
            part = nn.Conv2d(wi.shape[1], wi.shape[0], wi.shape[2:], conv.stride, conv.padding, conv.dilation,
                             bias=False).to(wi.dtype) if n == 2 else None
            assert part is not None, "the reference's grouped rule is 2-D"
            part.weight.data = wi
            in_part = (in_shape[0], in_shape[1] // g, *in_shape[2:])
            parts.append(_conv_rule(part, vi, torch.Size(in_part)))
            del i
        return torch.cat(parts, 1)
    stride, dilation, pad = _tuple(conv.stride, n), _tuple(conv.dilation, n), _tuple(conv.padding, n)
    k = conv.weight.shape[2:]
    # dilate the upstream rows: stride - 1 zeros between neighbours
    dilated = v.new_zeros(*v.shape[:2], *[(s - 1) * st + 1 for s, st in zip(v.shape[2:], stride, strict=True)])
    dilated[(slice(None), slice(None), *[slice(None, None, st) for st in stride])] = v
    # full convolution: pad by dilation * (k - 1) on both sides; the forward's padding p shifts
    # coordinates, so the first p rows of the result belong to padding and are dropped
    span = [dilation[i] * (k[i] - 1) for i in range(n)]
    dilated = F.pad(dilated, [p for i in reversed(range(n)) for p in (span[i] - pad[i], span[i])])
    kernel = conv.weight.transpose(0, 1).flip(list(range(2, 2 + n)))  # T_{0,1}(F(K))
    back = _CONV_FN[n](dilated, kernel, dilation=dilation)
    # keep the input's size: rows beyond the last window are zero, rows of the right padding are dropped
    extra = [in_shape[2 + i] - back.shape[2 + i] for i in range(n)]
    return F.pad(back, [p for i in reversed(range(n)) for p in (0, extra[i])])


def _pool_windows(pool: nn.Module, in_shape, out_shape) -> list[list[tuple[int, int]]]:
    n = len(in_shape) - 2
    k, pad = _tuple(pool.kernel_size, n), _tuple(pool.padding, n)
    stride = _tuple(pool.stride or pool.kernel_size, n)
    return [[(o * stride[d] - pad[d], o * stride[d] - pad[d] + k[d]) for o in range(out_shape[2 + d])]
            for d in range(n)]


def _adaptive_windows(in_shape, out_shape) -> list[list[tuple[int, int]]]:
    windows = []
    for size_in, size_out in zip(in_shape[2:], out_shape[2:], strict=True):
        windows.append([(o * size_in // size_out, -(-(o + 1) * size_in // size_out)) for o in range(size_out)])
    return windows


def _avg_pool_rule(v: torch.Tensor, in_shape, windows) -> torch.Tensor:
    """Distribute: each output entry, divided by its window size (padding counted), over its window."""
    w = v.new_zeros(in_shape)
    for index in itertools.product(*[range(len(d)) for d in windows]):
        bounds = [windows[d][i] for d, i in enumerate(index)]
        size = 1
        for lo, hi in bounds:
            size *= hi - lo
        region = tuple(slice(max(lo, 0), min(hi, in_shape[2 + d])) for d, (lo, hi) in enumerate(bounds))
        share = v[(slice(None), slice(None), *index)] / size  # (B, C)
        w[(slice(None), slice(None), *region)] += share[..., *[None] * len(index)]
    return w


def _max_pool_rule(pool: nn.Module, v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Relocate: each output entry moves to the position of its window's maximum."""
    assert _tuple(pool.dilation, a.ndim - 2) == (1,) * (a.ndim - 2)
    windows = _pool_windows(pool, a.shape, v.shape)
    w = torch.zeros_like(a)
    b, c = a.shape[:2]
    for index in itertools.product(*[range(len(d)) for d in windows]):
        region = tuple(slice(max(lo, 0), min(hi, a.shape[2 + d])) for d, (lo, hi) in enumerate(
            windows[d][i] for d, i in enumerate(index)))
        patch = a[(slice(None), slice(None), *region)]
        flat = patch.reshape(b, c, -1).argmax(-1)  # first maximum, (B, C)
        offsets = torch.unravel_index(flat, patch.shape[2:])
        for bi in range(b):
            for ci in range(c):
                pos = tuple(int(off[bi, ci]) + r.start for off, r in zip(offsets, region, strict=True))
                w[(bi, ci, *pos)] += v[(bi, ci, *index)]
    return w
