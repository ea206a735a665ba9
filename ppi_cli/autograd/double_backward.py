# SPDX-License-Identifier: MIT
"""Cheaper double back-propagation for PPI with `create_graph: true`, exactly.

A saliency map kept in the graph is a chain of backward operations. For ReLU, max-pool and
average-pool layers autograd's own backward takes the layer's input (or output) as an argument,
so differentiating the map again sends a gradient into the forward graph through it, even
though that gradient is zero: the ReLU mask and the max-pool routing are piecewise constant,
and average pooling does not depend on its input at all. Autograd cannot know this and runs a
full backward pass of zeros through every earlier layer (profiled: about a quarter of the VGG11
PPI step on CPU, docs/benchmarks.md).

`piecewise_linear_backward()` is a `TorchFunctionMode` that runs these layers (ReLU in place or
not) through autograd Functions whose backward uses the saved mask, indices or shape as
constants. Values and first derivatives are unchanged; the second derivative loses only the zero
terms. 2-D convolutions get a double backward that computes the weight term as an ordinary
weight gradient instead of autograd's convolution over transposed tensors (`_ConvInputGrad`).
Other layers (batch norm, whose statistics do depend on the input) keep their exact double
backward.

The mode is for taking maps with `create_graph=True` (input gradients); a graph-building
backward inside it skips convolution weight gradients, which such a pass never asks for, unless
the mode is entered with `weight_grads=True` (the trainer's map taken from L_cls's own backward,
which needs both; the weight gradients are then computed outside the graph).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ppi_cli.autograd.torch_calls import avg_pool2d_args, call_arg, pair

__all__ = ["piecewise_linear_backward"]

aten = torch.ops.aten


class _Relu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        y = x.clamp_min(0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        (y,) = ctx.saved_tensors
        return aten.threshold_backward(grad, y.detach(), 0)  # the mask is a constant of the map's graph


class _ReluInplace(torch.autograd.Function):
    """`relu_` (torchvision's Inception_v3, ResNets: `F.relu(x, inplace=True)`) with the same constant mask."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x.clamp_min_(0)
        ctx.mark_dirty(x)
        ctx.save_for_backward(x)
        return x

    backward = _Relu.backward


class _MaxPool2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kernel, stride, padding, dilation, ceil_mode):  # noqa: D102
        y, indices = aten.max_pool2d_with_indices(x, kernel, stride, padding, dilation, ceil_mode)
        ctx.save_for_backward(x, indices)
        ctx.args = (kernel, stride, padding, dilation, ceil_mode)
        ctx.mark_non_differentiable(indices)
        return y

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        x, indices = ctx.saved_tensors
        return aten.max_pool2d_with_indices_backward(grad, x.detach(), *ctx.args, indices), None, None, None, None, None


class _AvgPool2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kernel, stride, padding, ceil_mode, count_include_pad, divisor):  # noqa: D102
        ctx.save_for_backward(x)
        ctx.args = (kernel, stride, padding, ceil_mode, count_include_pad, divisor)
        return aten.avg_pool2d(x, *ctx.args)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        (x,) = ctx.saved_tensors
        return (aten.avg_pool2d_backward(grad, x.detach(), *ctx.args), *([None] * 6))


class _AdaptiveAvgPool2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, size):  # noqa: D102
        ctx.save_for_backward(x)
        return aten._adaptive_avg_pool2d(x, size)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        (x,) = ctx.saved_tensors
        return aten._adaptive_avg_pool2d_backward(grad, x.detach()), None


class _Conv2d(torch.autograd.Function):
    """A 2-D convolution whose backward builds the map's graph from `_ConvInputGrad`.

    In a backward that builds a graph (the saliency pass, create_graph) only the input gradient
    lies on the map's path, so the weight and bias gradients are skipped there, as autograd's own
    convolution skips outputs nobody asked for, unless `weight_grads` asks for them (computed
    outside the graph: nothing differentiates them again). In a backward without graph (the final
    pass, where batch-norm statistics can lead back through this layer) they are computed as usual.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, mode):  # noqa: D102
        ctx.save_for_backward(x, weight)
        ctx.args = (stride, padding, dilation, groups)
        ctx.bias_shape = None if bias is None else list(bias.shape)
        ctx.mode = mode  # its `weight_grads` is read when the backward runs
        return aten.convolution(x, weight, bias, stride, padding, dilation, False, [0, 0], groups)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.args
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        if not torch.is_grad_enabled():  # no graph to build: one native call for every gradient wanted
            grad_x, grad_w, grad_b = aten.convolution_backward(grad, x, weight, ctx.bias_shape, stride, padding,
                                                               dilation, False, [0, 0], groups,
                                                               (need_x, need_w, need_b))
            return grad_x, grad_w, grad_b, None, None, None, None, None
        grad_x = _ConvInputGrad.apply(grad, weight, x.detach(), *ctx.args) if need_x else None
        grad_w = grad_b = None
        if ctx.mode.weight_grads and (need_w or need_b):
            with torch.no_grad():
                _, grad_w, grad_b = aten.convolution_backward(grad, x, weight, ctx.bias_shape, stride, padding,
                                                              dilation, False, [0, 0], groups, (False, need_w, need_b))
        return grad_x, grad_w, grad_b, None, None, None, None, None


class _ConvInputGrad(torch.autograd.Function):
    """`grad_x = Aᵀ g` of a convolution `A`, differentiable once in `g` (by `A h`) and in the weight.

    Autograd's generic double backward of a convolution computes the weight term as a second
    convolution over transposed tensors; here it is the ordinary weight gradient of `A h` against
    `g` (profiled: half the double back-propagation of VGG11 on CPU, docs/benchmarks.md).
    """

    @staticmethod
    def forward(ctx, grad, weight, x, stride, padding, dilation, groups):  # noqa: D102
        ctx.save_for_backward(grad, weight)
        ctx.args = (stride, padding, dilation, groups)
        # x gives only its shape and layout (torch.nn.grad.conv2d_input would materialise an expanded stand-in)
        return aten.convolution_backward(grad, x, weight, None, stride, padding, dilation, False, [0, 0], groups,
                                         (True, False, False))[0]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, h):  # noqa: D102
        grad, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.args
        grad_grad = grad_w = None
        if ctx.needs_input_grad[0]:  # ∂⟨h, Aᵀg⟩/∂g = A h
            grad_grad = aten.convolution(h, weight, None, stride, padding, dilation, False, [0, 0], groups)
        if ctx.needs_input_grad[1]:  # ∂⟨A h, g⟩/∂W: the weight gradient of input h at upstream g
            grad_w = aten.convolution_backward(grad, h, weight, None, stride, padding, dilation, False, [0, 0],
                                               groups, (False, True, False))[1]
        return grad_grad, grad_w, None, None, None, None, None


def _relu(args: tuple, kwargs: dict, mode: piecewise_linear_backward) -> torch.Tensor | None:
    return (_ReluInplace if call_arg(args, kwargs, 1, "inplace", False) else _Relu).apply(args[0])


def _relu_(args: tuple, kwargs: dict, mode: piecewise_linear_backward) -> torch.Tensor | None:
    return _ReluInplace.apply(args[0])


def _max_pool(args: tuple, kwargs: dict, mode: piecewise_linear_backward) -> torch.Tensor | None:
    x = args[0]
    if x.ndim != 4 or call_arg(args, kwargs, 6, "return_indices", False):
        return None
    kernel = pair(call_arg(args, kwargs, 1, "kernel_size", None))
    stride = pair(call_arg(args, kwargs, 2, "stride", None) or kernel)
    padding = pair(call_arg(args, kwargs, 3, "padding", 0))
    dilation = pair(call_arg(args, kwargs, 4, "dilation", 1))
    return _MaxPool2d.apply(x, kernel, stride, padding, dilation, bool(call_arg(args, kwargs, 5, "ceil_mode", False)))


def _avg_pool(args: tuple, kwargs: dict, mode: piecewise_linear_backward) -> torch.Tensor | None:
    x = args[0]
    if x.ndim != 4:
        return None
    return _AvgPool2d.apply(x, *avg_pool2d_args(args, kwargs))


def _adaptive_avg_pool(args: tuple, kwargs: dict, mode: piecewise_linear_backward) -> torch.Tensor | None:
    x = args[0]
    if x.ndim != 4:
        return None
    size = pair(call_arg(args, kwargs, 1, "output_size", None))
    size = [x.shape[2 + i] if s is None else s for i, s in enumerate(size)]
    return _AdaptiveAvgPool2d.apply(x, size)


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast runs a convolution in on `device_type`, or None when autocast is off there."""
    if hasattr(torch, "get_autocast_dtype"):  # torch >= 2.4: one query for every device type
        return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
    legacy = {"cuda": ("is_autocast_enabled", "get_autocast_gpu_dtype"),  # torch 2.2-2.3: one pair per device
              "cpu": ("is_autocast_cpu_enabled", "get_autocast_cpu_dtype")}.get(device_type)
    if legacy is None:
        return None
    enabled, dtype = (getattr(torch, name) for name in legacy)
    return dtype() if enabled() else None


def _conv2d(args: tuple, kwargs: dict, mode: piecewise_linear_backward) -> torch.Tensor | None:
    x, weight = args[0], call_arg(args, kwargs, 1, "weight", None)
    bias = call_arg(args, kwargs, 2, "bias", None)
    padding = call_arg(args, kwargs, 4, "padding", 0)
    if x.ndim != 4 or not isinstance(weight, torch.Tensor) or isinstance(padding, str):
        return None  # 'same'/'valid' padding and unbatched input: autograd's own convolution
    dtype = _autocast_dtype(x.device.type)
    if dtype is not None:  # autocast's cast, made here so the Function saves and differentiates one dtype
        x, weight = x.to(dtype), weight.to(dtype)  # (CUDA refuses a backward over mixed input and weight types)
        bias = None if bias is None else bias.to(dtype)
    return _Conv2d.apply(x, weight, bias,
                         pair(call_arg(args, kwargs, 3, "stride", 1)), pair(padding),
                         pair(call_arg(args, kwargs, 5, "dilation", 1)), int(call_arg(args, kwargs, 6, "groups", 1)),
                         mode)


_RULES = {F.conv2d: _conv2d, F.relu: _relu, torch.relu: _relu, torch.Tensor.relu: _relu, F.relu_: _relu_,
          torch.relu_: _relu_, torch.Tensor.relu_: _relu_, F.max_pool2d: _max_pool,
          F.avg_pool2d: _avg_pool, F.adaptive_avg_pool2d: _adaptive_avg_pool}


class piecewise_linear_backward(TorchFunctionMode):  # noqa: N801  (used like a function: `with ...():`)
    """While active, ReLU and 2-D pooling calls get a backward whose own derivative stays out of the forward graph.

    Example:
        >>> with piecewise_linear_backward():
        ...     s = saliency_map(model, x, y, create_graph=True)   # same map, cheaper to differentiate
    """

    def __init__(self, weight_grads: bool = False) -> None:
        super().__init__()
        self.weight_grads = weight_grads

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: D105
        kwargs = kwargs or {}
        rule = _RULES.get(func)
        if rule is not None and args and isinstance(args[0], torch.Tensor) and args[0].is_floating_point():
            result = rule(args, kwargs, self)
            if result is not None:
                return result
        return func(*args, **kwargs)
