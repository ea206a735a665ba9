# SPDX-License-Identifier: MIT
"""The WBP backward rules that differ from autograd's derivative (paper Sec. 3.2, Table 1).

For linear, convolution and pooling layers the WBP update W^l = G(W^{l+1}) is the transposed
Jacobian of the layer (biases drop out), so autograd already applies it: conv backward is the
"full convolution with the flipped, transposed kernel, the upstream map dilated by stride - 1",
max-pool backward routes to the arg-max, average pools distribute. Two kinds of layer differ:

- activations h: WBP scales by the secant h(x)/x, autograd by h'(x). They agree for the ReLU
  family (relu, leaky_relu, prelu, rrelu), which therefore run untouched;
- normalisation: WBP treats the statistics as constants, W^l = W^{l+1} * gamma/sqrt(var + eps).
  In eval mode batch norm already is that affine map and runs untouched; in train mode (and for
  group, layer and instance norm, which always use the current statistics) autograd would also
  differentiate through the statistics.

`WeightBackpropMode` is a `TorchFunctionMode` active only while the model runs forward. It sends
the calls above, whether made by modules (`nn.SiLU` calls `F.silu`) or directly in a forward
(`F.gelu(x)`, `torch.tanh(x)`, `x.tanh()`), to autograd Functions whose backward applies the WBP
rule during the pass to the input and the true derivative during any other pass (`_Phase`). The
forward values are unchanged. Every backward is written in differentiable torch ops, so with
`create_graph=True` the map stays an exact function of the parameters, including through the
batch statistics (a loss on the map sees how they move with the parameters).

Functions with h(0) != 0 (sigmoid, softplus, ...) are not activations in the sense of the rule
table (h(x) = h~(x) x has no solution at 0); they keep their derivative, as does every other call,
with one exception, gating: a product `x * g` whose factor g is a sigmoid or hard-sigmoid output
(squeeze-excitation, `x * torch.sigmoid(x)` swish) treats g as a constant scale in the WBP pass,
like batch norm's statistics: W^l = W^{l+1} * g, nothing flows back through g. For swish that is
exactly the secant x sigmoid(x) / x. Residual sums `x + f(x)` need no rule: the sum's transposed
Jacobian adds the rows of both branches, which is WBP's rule for a sum of linear maps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ppi_cli.autograd.torch_calls import call_arg

__all__ = ["WeightBackpropMode", "secant_of", "SECANTS"]

aten = torch.ops.aten

Secant = Callable[[torch.Tensor], torch.Tensor]
_PASS = object()  # a rule's answer when the call needs no special backward


class _Phase:
    """Whether the backward pass now running is the WBP pass of one saliency call.

    The graph built under `WeightBackpropMode` is traversed twice with `create_graph=True`: first
    from the logit to the input, which must apply the WBP rules, then (later, by a loss on the map)
    from the map to the parameters, which must differentiate the forward values truly: a forward
    value such as an activation output feeds later secants and batch statistics, and its derivative
    is h'(x), not h(x)/x. Each node therefore asks its call's phase which rule applies.
    """

    def __init__(self, update_statistics: bool = False) -> None:
        self.active = False
        self.update_statistics = update_statistics  # train-mode batch norm updates running statistics (forward)


class _SecantActivation(torch.autograd.Function):
    """y = h(x) forward; backward multiplies by the secant h(x)/x (its x -> 0 limit at 0)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, activation: Callable, secant: Secant, phase: _Phase) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.activation, ctx.secant, ctx.phase = activation, secant, phase
        return activation(x)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (x,) = ctx.saved_tensors
        if ctx.phase.active:
            return grad_out * ctx.secant(x), None, None, None
        with torch.enable_grad():  # the true derivative, itself differentiable when a graph is kept
            (grad,) = torch.autograd.grad(ctx.activation(x), x, grad_out, create_graph=torch.is_grad_enabled())
        return grad, None, None, None


class _ConstantStatNormalise(torch.autograd.Function):
    """x_hat = (x - mean) * inv_std forward; the WBP backward scales by inv_std alone.

    mean and inv_std are inputs so that the second traversal (see `_Phase`) still sees how they
    depend on earlier layers; only the WBP pass holds them constant.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, mean: torch.Tensor, inv_std: torch.Tensor, phase: _Phase) -> torch.Tensor:
        ctx.save_for_backward(x, mean, inv_std)
        ctx.phase = phase
        return (x - mean) * inv_std

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, mean, inv_std = ctx.saved_tensors
        grad_x = grad_out * inv_std
        if ctx.phase.active:
            return grad_x, None, None, None
        dims = tuple(i for i, n in enumerate(mean.shape) if n == 1 and x.shape[i] != 1)
        grad_mean = -grad_x.sum(dims, keepdim=True)
        grad_inv_std = (grad_out * (x - mean)).sum(dims, keepdim=True)
        return grad_x, grad_mean, grad_inv_std, None


class _ConstantGate(torch.autograd.Function):
    """g forward; in the WBP pass nothing flows back through g (a constant scale), else the identity."""

    @staticmethod
    def forward(ctx, gate: torch.Tensor, phase: _Phase) -> torch.Tensor:
        ctx.phase = phase
        return gate.view_as(gate)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        if ctx.phase.active:
            return torch.zeros_like(grad_out), None
        return grad_out, None


class _BatchNormOnBatch(torch.autograd.Function):
    """Train-mode batch norm with the native kernels; the WBP backward scales by γ/σ, statistics held constant.

    Outside the WBP pass the backward is batch norm's true derivative (through the statistics),
    itself differentiable when a graph is kept. In the WBP pass with a graph kept, 1/σ enters the
    graph as a function of the saved input (`_InvStd`), so a loss on the map still sees how the
    statistics move (see `_Phase`). Running statistics are updated only when the mode was asked
    to (`update_statistics`).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps, phase):  # noqa: D102
        y, mean, invstd = aten.native_batch_norm(x, weight, bias, running_mean, running_var, True, momentum, eps)[:3]
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps, ctx.phase = eps, phase
        return y

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        x, weight, mean, invstd = ctx.saved_tensors
        if ctx.phase.active:
            if torch.is_grad_enabled():  # the map keeps its graph: 1/σ as the function of x it is
                invstd = _InvStd.apply(x, mean, invstd)
            scale = invstd if weight is None else invstd * weight
            return grad * _per_channel(scale, x.ndim), None, None, None, None, None, None, None
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x, grad_w, grad_b = aten.native_batch_norm_backward(
            grad, x, weight, None, None, mean, invstd, True, ctx.eps, [need_x, need_w, need_b])
        return grad_x, grad_w, grad_b, None, None, None, None, None


class _InvStd(torch.autograd.Function):
    """1/σ of each channel, from the forward's saved statistics, with its derivative in x.

    σ² is the biased variance over batch and space (N values per channel), so
    ∂(1/σ)/∂x_j = −(x_j − μ)/(N σ³); the mean's own derivative cancels.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, mean: torch.Tensor, invstd: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(x, mean, invstd)
        return invstd.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        x, mean, invstd = ctx.saved_tensors
        n = x.numel() // x.shape[1]
        factor = grad * invstd.pow(3) / -n  # (C,)
        # (x − μ)·factor in one pass over x: x·factor − μ·factor
        return torch.addcmul(_per_channel(-mean * factor, x.ndim), x, _per_channel(factor, x.ndim)), None, None


# ---- secants h(x)/x, written so that their own gradient is finite everywhere (create_graph) ----

def _ratio(numerator: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, at_zero: float) -> torch.Tensor:
    """numerator(x)/x with the value `at_zero` (the limit, = h'(0)) where x == 0."""
    zero = x == 0
    safe = torch.where(zero, torch.ones_like(x), x)  # keeps the unused branch finite at 0
    return torch.where(zero, torch.full_like(x, at_zero), numerator(safe) / safe)


def _gelu_secant(approximate: str) -> Secant:
    if approximate == "tanh":
        c = math.sqrt(2.0 / math.pi)
        return lambda x: 0.5 * (1.0 + torch.tanh(c * (x + 0.044715 * x * x * x)))
    return lambda x: 0.5 * (1.0 + torch.erf(x * (1.0 / math.sqrt(2.0))))  # Phi(x)


def _hardtanh_secant(low: float, high: float) -> Secant:
    # at 0 the limit is 1 inside (low, high); relu6 (low = 0) takes ReLU's convention, 0
    return lambda x: _ratio(lambda v: v.clamp(low, high), x, 1.0 if low < 0 < high else 0.0)


def _elu_secant(alpha: float, scale: float = 1.0) -> Secant:
    return lambda x: scale * torch.where(x > 0, torch.ones_like(x), alpha * _ratio(torch.expm1, x, 1.0))


def _celu_secant(alpha: float) -> Secant:
    return lambda x: torch.where(x > 0, torch.ones_like(x), _ratio(torch.expm1, x / alpha, 1.0))


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946

SECANTS: dict[str, Secant] = {
    "silu": torch.sigmoid,                                        # x sigmoid(x) / x
    "gelu": _gelu_secant("none"),                                 # x Phi(x) / x
    "mish": lambda x: torch.tanh(F.softplus(x)),                  # x tanh(softplus(x)) / x
    "hardswish": lambda x: (x + 3.0).clamp(0.0, 6.0) / 6.0,       # x relu6(x + 3)/6 / x
    "tanh": lambda x: _ratio(torch.tanh, x, 1.0),
    "softsign": lambda x: 1.0 / (1.0 + x.abs()),                   # x/(1 + |x|) / x
    "elu": _elu_secant(1.0),
    "selu": _elu_secant(_SELU_ALPHA, _SELU_SCALE),
    "relu6": _hardtanh_secant(0.0, 6.0),
}


def secant_of(name: str) -> Secant:
    """The secant h(x)/x of a named activation (with its default parameters), e.g. ``"silu"``."""
    return SECANTS[name]


# ---- rules: (args, kwargs) of the intercepted call -> its result, or _PASS ----

def _activate(x: object, activation: Callable, secant: Secant, inplace: bool, phase: _Phase) -> object:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        return _PASS
    if not inplace:
        return _SecantActivation.apply(x, activation, secant, phase)
    # keep in-place semantics for code that ignores the return value; the Function saves a copy
    # because the original is about to be overwritten
    y = _SecantActivation.apply(x.clone(), activation, secant, phase)
    return x.copy_(y)


def _unary(name: str, activation: Callable, inplace_at: int | None = 1) -> Callable:
    secant = SECANTS[name]

    def rule(args: tuple, kwargs: dict, phase: _Phase) -> object:
        inplace = bool(call_arg(args, kwargs, inplace_at, "inplace", False)) if inplace_at else False
        return _activate(args[0], activation, secant, inplace, phase)

    return rule


def _tanh(args: tuple, kwargs: dict, phase: _Phase) -> object:
    if kwargs.get("out") is not None:
        return _PASS
    return _activate(args[0], torch.tanh, SECANTS["tanh"], False, phase)


def _gelu(args: tuple, kwargs: dict, phase: _Phase) -> object:
    approximate = str(call_arg(args, kwargs, 1, "approximate", "none"))
    return _activate(args[0], lambda v: F.gelu(v, approximate=approximate), _gelu_secant(approximate), False, phase)


def _hardtanh(args: tuple, kwargs: dict, phase: _Phase) -> object:
    low = float(call_arg(args, kwargs, 1, "min_val", -1.0))
    high = float(call_arg(args, kwargs, 2, "max_val", 1.0))
    if not low <= 0.0 <= high:  # h(0) != 0: not an activation of the rule table
        return _PASS
    inplace = bool(call_arg(args, kwargs, 3, "inplace", False))
    return _activate(args[0], lambda v: F.hardtanh(v, low, high), _hardtanh_secant(low, high), inplace, phase)


def _elu(args: tuple, kwargs: dict, phase: _Phase) -> object:
    alpha = float(call_arg(args, kwargs, 1, "alpha", 1.0))
    inplace = bool(call_arg(args, kwargs, 2, "inplace", False))
    return _activate(args[0], lambda v: F.elu(v, alpha), _elu_secant(alpha), inplace, phase)


def _celu(args: tuple, kwargs: dict, phase: _Phase) -> object:
    alpha = float(call_arg(args, kwargs, 1, "alpha", 1.0))
    inplace = bool(call_arg(args, kwargs, 2, "inplace", False))
    return _activate(args[0], lambda v: F.celu(v, alpha), _celu_secant(alpha), inplace, phase)


def _normalise(x: torch.Tensor, dims: tuple[int, ...], eps: float, phase: _Phase) -> torch.Tensor:
    var, mean = torch.var_mean(x, dim=dims, correction=0, keepdim=True)
    return _ConstantStatNormalise.apply(x, mean, torch.rsqrt(var + eps), phase)


def _per_channel(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """`(C,)` → `(1, C, 1, ..., 1)`, broadcasting over an `ndim`-dimensional `(B, C, *spatial)` tensor."""
    return t.reshape((1, -1) + (1,) * (ndim - 2))


def _channel_affine(y: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
    if weight is not None:
        y = y * _per_channel(weight, y.ndim)
    if bias is not None:
        y = y + _per_channel(bias, y.ndim)
    return y


def _batch_norm(args: tuple, kwargs: dict, phase: _Phase) -> object:
    x = args[0]
    running_mean = call_arg(args, kwargs, 1, "running_mean", None)
    running_var = call_arg(args, kwargs, 2, "running_var", None)
    training = bool(call_arg(args, kwargs, 5, "training", False))
    if not training and running_mean is not None and running_var is not None:
        return _PASS  # eval mode: already the per-channel affine map of the rule table
    weight, bias = call_arg(args, kwargs, 3, "weight", None), call_arg(args, kwargs, 4, "bias", None)
    momentum = float(call_arg(args, kwargs, 6, "momentum", 0.1) or 0.0)
    eps = float(call_arg(args, kwargs, 7, "eps", 1e-5))
    # a saliency call leaves the running statistics as they were; the trainer's shared clean pass updates them
    update = phase.update_statistics and training
    return _BatchNormOnBatch.apply(x, weight, bias, running_mean if update else None,
                                   running_var if update else None, momentum, eps, phase)


def _instance_norm(args: tuple, kwargs: dict, phase: _Phase) -> object:
    x = args[0]
    if not bool(call_arg(args, kwargs, 5, "use_input_stats", True)):
        return _PASS
    weight, bias = call_arg(args, kwargs, 3, "weight", None), call_arg(args, kwargs, 4, "bias", None)
    eps = float(call_arg(args, kwargs, 7, "eps", 1e-5))
    return _channel_affine(_normalise(x, tuple(range(2, x.ndim)), eps, phase), weight, bias)


def _group_norm(args: tuple, kwargs: dict, phase: _Phase) -> object:
    x = args[0]
    groups = int(call_arg(args, kwargs, 1, "num_groups", 1))
    weight, bias = call_arg(args, kwargs, 2, "weight", None), call_arg(args, kwargs, 3, "bias", None)
    eps = float(call_arg(args, kwargs, 4, "eps", 1e-5))
    grouped = x.reshape(x.shape[0], groups, -1)  # (B, G, C/G * prod(spatial))
    y = _normalise(grouped, (2,), eps, phase).reshape(x.shape)
    return _channel_affine(y, weight, bias)


def _layer_norm(args: tuple, kwargs: dict, phase: _Phase) -> object:
    x = args[0]
    shape = call_arg(args, kwargs, 1, "normalized_shape", ())
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    weight, bias = call_arg(args, kwargs, 2, "weight", None), call_arg(args, kwargs, 3, "bias", None)
    eps = float(call_arg(args, kwargs, 4, "eps", 1e-5))
    y = _normalise(x, tuple(range(x.ndim - len(shape), x.ndim)), eps, phase)
    if weight is not None:
        y = y * weight  # broadcasts over the trailing normalized_shape
    if bias is not None:
        y = y + bias
    return y


_GATE = "_ppi_wbp_gate"  # attribute marking a sigmoid output produced under the mode


def _keeps_gate(result: object, args: tuple) -> None:
    if isinstance(result, torch.Tensor) and args and getattr(args[0], _GATE, False):
        setattr(result, _GATE, True)


def _product(args: tuple, kwargs: dict, phase: _Phase) -> object:
    """`x * g` with a marked gate g: g enters as a constant in the WBP pass (see the module doc)."""
    if len(args) < 2 or kwargs.get("out") is not None:
        return _PASS
    a, b = args[0], args[1]
    gated = [getattr(t, _GATE, False) and t.is_floating_point() for t in (a, b)]
    if not any(gated) or all(gated):
        return _PASS
    if gated[0]:
        a = _ConstantGate.apply(a, phase)
    else:
        b = _ConstantGate.apply(b, phase)
    return torch.mul(a, b)


_GATE_SOURCES = {torch.sigmoid, torch.Tensor.sigmoid, F.sigmoid, F.hardsigmoid, torch.special.expit}
_GATE_SHAPES = {torch.Tensor.view, torch.Tensor.reshape, torch.reshape, torch.Tensor.view_as, torch.Tensor.expand,
                torch.Tensor.expand_as, torch.Tensor.unsqueeze, torch.unsqueeze, torch.Tensor.flatten,
                torch.flatten, torch.Tensor.reshape_as, torch.Tensor.squeeze, torch.squeeze}
_PRODUCTS = {torch.mul, torch.Tensor.mul, torch.Tensor.__mul__, torch.Tensor.__rmul__, torch.multiply}

_RULES: dict[object, Callable[[tuple, dict, _Phase], object]] = {
    F.silu: _unary("silu", F.silu),
    F.mish: _unary("mish", F.mish),
    F.hardswish: _unary("hardswish", F.hardswish),
    F.selu: _unary("selu", F.selu),
    F.relu6: _unary("relu6", F.relu6),
    F.softsign: _unary("softsign", F.softsign, inplace_at=None),
    F.gelu: _gelu,
    F.hardtanh: _hardtanh,
    F.elu: _elu,
    F.celu: _celu,
    torch.tanh: _tanh,
    torch.Tensor.tanh: _tanh,
    F.batch_norm: _batch_norm,
    F.instance_norm: _instance_norm,
    F.group_norm: _group_norm,
    F.layer_norm: _layer_norm,
}


class WeightBackpropMode(TorchFunctionMode):
    """While active, forward calls get their WBP backward rule; everything else runs untouched.

    The rules apply only to a backward pass run inside `backward_rules()`; any other pass over the
    same graph (a loss on the map, a loss on these logits) differentiates the forward truly.

    Example:
        >>> mode = WeightBackpropMode()
        >>> with mode:
        ...     logits = model(x)          # same values as model(x)
        >>> with mode.backward_rules():
        ...     w0, = torch.autograd.grad(logits[:, 0].sum(), x)   # W^0 rows of Eq. (6)
    """

    def __init__(self, update_statistics: bool = False) -> None:
        super().__init__()
        self._phase = _Phase(update_statistics)
        self.rewritten = 0  # calls given a WBP backward; 0 means the graph is autograd's own

    @contextmanager
    def backward_rules(self) -> Iterator[None]:
        """Apply the WBP rules in backward passes run inside this block."""
        self._phase.active = True
        try:
            yield
        finally:
            self._phase.active = False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        rule = _RULES.get(func)
        if rule is not None:
            result = rule(args, kwargs, self._phase)
            if result is not _PASS:
                self.rewritten += 1
                return result
        if func in _PRODUCTS:
            result = _product(args, kwargs, self._phase)
            if result is not _PASS:
                self.rewritten += 1
                return result
        result = func(*args, **kwargs)
        if func in _GATE_SOURCES and isinstance(result, torch.Tensor):
            setattr(result, _GATE, True)
        elif func in _GATE_SHAPES:
            _keeps_gate(result, args)
        return result
