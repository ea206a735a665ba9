# SPDX-License-Identifier: MIT
"""The saliency registry and the one entry point every method goes through.

`saliency_map` owns the rules every method shares, so no method can break them: the target is
explicit and checked against the logits, train/eval mode is never touched, parameters never get
a `.grad` (only `torch.autograd.grad` is used, with the input as the only requested leaf),
batch-norm running statistics are restored after a train-mode forward, and the result is
`(B, 1, *spatial)`, detached unless `create_graph=True`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ppi_cli.errors import ConfigError, ModelError

__all__ = [
    "SaliencyMethod", "register_saliency", "saliency_method", "method_names", "saliency_map",
    "class_logits", "resolve_target", "target_score", "as_input",
]

Target = torch.Tensor | int


@dataclass(frozen=True)
class SaliencyMethod:
    """A registered saliency method.

    Attributes:
        name: Registry key, e.g. ``"wbp"``.
        compute: ``compute(model, x, target, *, create_graph, **options) -> (B, 1, *spatial)``.
        differentiable: Whether ``create_graph=True`` gives a map differentiable w.r.t. the parameters.
        options: Names of the extra keyword options `compute` accepts (e.g. ``("layer",)``).
        summary: One line saying what the map is.
    """

    name: str
    compute: Callable[..., torch.Tensor]
    differentiable: bool
    options: tuple[str, ...]
    summary: str


_REGISTRY: dict[str, SaliencyMethod] = {}


def register_saliency(name: str, *, differentiable: bool = True, summary: str = "") -> Callable:
    """Function decorator adding a saliency method to the registry; a duplicate name is an error.

    The decorated function is called as ``fn(model, x, target, *, create_graph, **options)`` and
    returns the map ``(B, 1, *spatial)``. Its keyword-only parameters other than `create_graph`
    become the options `saliency_map` accepts for it.

    Example:
        >>> @register_saliency("input", summary="the input itself")
        ... def _input(model, x, target, *, create_graph): return x.sum(1, keepdim=True)
    """

    def wrap(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        if name in _REGISTRY:
            raise ValueError(f"saliency method '{name}' is registered twice")
        params = inspect.signature(fn).parameters.values()
        options = tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name != "create_graph")
        first_line = (fn.__doc__ or "").split("\n")[0]
        _REGISTRY[name] = SaliencyMethod(name, fn, differentiable, options, summary or first_line)
        return fn

    return wrap


def method_names() -> list[str]:
    """The registered method names, sorted."""
    return sorted(_REGISTRY)


def saliency_method(name: str) -> SaliencyMethod:
    """Look up a registered method.

    Raises:
        ConfigError: No method has that name; the message lists the valid names.
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(f"saliency method '{name}' is unknown",
                          hint=f"use one of: {', '.join(method_names())}") from None


def saliency_map(model: nn.Module, x: torch.Tensor, target: Target, *, method: str = "wbp",
                 create_graph: bool = False, **options: object) -> torch.Tensor:
    """Saliency of `target` for input `x`, one map per sample (paper Sec. 3.2, Eq. 7 for WBP).

    Args:
        model: Any module whose forward takes `x` and returns logits ``(B, K)`` (K = 1 for a binary
            head with one logit). Models normalise their input themselves.
        x: The model input ``(B, C, *spatial)``, float, usually [0, 1] intensities; 2D images and
            3D volumes share this path.
        target: Class index per sample, a LongTensor ``(B,)``, or one int for every sample. A binary
            head with one logit only accepts 0.
        method: A registered name: ``wbp``, ``gradient``, ``gradcam``, ``lrp-epsilon``, ``lrp-gamma``,
            ``lrp-alphabeta``, ``lrp-flat``, ``lrp-zplus``.
        create_graph: Keep the graph so a loss on the map trains the parameters (double backprop).
        **options: Method options, e.g. ``layer=`` for ``gradcam``.

    Returns:
        ``(B, 1, *spatial)`` in `x`'s dtype: signed for ``wbp`` and LRP, non-negative for ``gradient``
        and ``gradcam``. Detached unless `create_graph`.

    Raises:
        ConfigError: Unknown method or option, bad target, bad input, or `create_graph` for a method
            that is not differentiable.
        ModelError: The model's output is not ``(B, K)`` logits.

    Example:
        >>> s = saliency_map(model, images, labels, method="wbp")   # (B, 1, H, W)
        >>> loss = s.abs().sum()  # with create_graph=True this trains the model
    """
    spec = saliency_method(method)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        valid = ", ".join(spec.options) or "none"
        raise ConfigError(f"saliency method '{method}' has no option {', '.join(unknown)}",
                          hint=f"options of '{method}': {valid}")
    _check_input(x)
    if create_graph and not spec.differentiable:
        raise ConfigError(f"saliency method '{method}' cannot keep a graph (create_graph=True)",
                          hint="use wbp, gradient or gradcam, or set create_graph=False")
    with torch.enable_grad(), _norm_statistics_kept(model):
        result = spec.compute(model, x, target, create_graph=create_graph, **options)
    expected = (x.shape[0], 1, *x.shape[2:])
    if tuple(result.shape) != expected:
        raise ModelError(f"saliency method '{method}' returned shape {tuple(result.shape)}, expected {expected}")
    return result if create_graph else result.detach()


def as_input(x: torch.Tensor) -> torch.Tensor:
    """`x` as a tensor autograd can differentiate to, without copying it or cutting an existing graph."""
    return x if x.requires_grad else x.detach().requires_grad_(True)


def class_logits(output: object, batch: int) -> torch.Tensor:
    """The ``(B, K)`` logits of a forward output.

    Torchvision's Inception and GoogLeNet return a named tuple with a ``logits`` field in train
    mode; that field is taken. Anything else must already be a ``(B, K)`` tensor.

    Raises:
        ModelError: The output is not ``(B, K)`` logits.
    """
    logits = getattr(output, "logits", output)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != batch:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ModelError(f"saliency needs the model to return logits (B={batch}, K); it returned {shape}",
                         hint="wrap the model so forward returns (B, K) logits, e.g. the per-slice head of a "
                              "multi-view model")
    return logits


def resolve_target(target: Target, logits: torch.Tensor) -> torch.Tensor:
    """The target as a LongTensor ``(B,)`` on the logits' device, checked against K.

    Raises:
        ConfigError: Not an int or an integer tensor of shape ``(B,)``, out of range, or not 0 for a
            one-logit binary head.
    """
    batch, classes = logits.shape
    if isinstance(target, bool) or not isinstance(target, int | torch.Tensor):
        raise ConfigError(f"saliency target must be an int or a LongTensor (B,), got {type(target).__name__}",
                          hint="pass the class index of each sample")
    if isinstance(target, torch.Tensor):
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise ConfigError(f"saliency target has dtype {target.dtype}; class indices must be integers",
                              hint="pass labels.long(); for a binary head with one logit pass target=0")
        if target.ndim == 0:
            target = target.reshape(1).expand(batch)
        if tuple(target.shape) != (batch,):
            raise ConfigError(f"saliency target has shape {tuple(target.shape)}, expected ({batch},)",
                              hint="one class index per sample")
        index = target.to(device=logits.device, dtype=torch.long)
    else:
        index = torch.full((batch,), target, dtype=torch.long, device=logits.device)
    low, high = int(index.min()), int(index.max())
    if classes == 1 and (low, high) != (0, 0):
        raise ConfigError(f"saliency target {high if high else low} is invalid for a binary head with one logit",
                          hint="pass target=0: the single logit is the positive class")
    if low < 0 or high >= classes:
        raise ConfigError(f"saliency target {low if low < 0 else high} is out of range for {classes} classes",
                          hint=f"use class indices 0..{classes - 1}")
    return index


def target_score(output: object, target: Target, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum over the batch of each sample's target logit, and the logits.

    Samples do not interact in the backward pass of a saliency method (batch statistics are held
    constant where they would couple them), so the gradient of this sum gives every sample's own row.
    """
    logits = class_logits(output, batch)
    index = resolve_target(target, logits)
    return logits.gather(1, index[:, None]).sum(), logits  # (B, 1) summed


def _check_input(x: object) -> None:
    if not isinstance(x, torch.Tensor):
        raise ConfigError(f"saliency input must be a tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ConfigError(f"saliency input has dtype {x.dtype}; it must be floating point",
                          hint="convert the batch with x.float()")
    if x.ndim < 3:
        raise ConfigError(f"saliency input has shape {tuple(x.shape)}; expected (B, C, *spatial)",
                          hint="add the channel axis, e.g. x[:, None]")


_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


@contextmanager
def _norm_statistics_kept(model: nn.Module) -> Iterator[None]:
    """Restore the running statistics that a train-mode forward updates, so the call leaves no trace."""
    saved = []
    for module in model.modules():
        if module.training and isinstance(module, nn.modules.batchnorm._NormBase):
            for name in _STATISTICS:
                buffer = getattr(module, name, None)
                if isinstance(buffer, torch.Tensor):
                    saved.append((buffer, buffer.detach().clone()))
    try:
        yield
    finally:
        # through .data: the version counter stays, so a graph kept with create_graph=True (batch
        # norm saves the running statistics, though train mode never reads them back) stays valid
        for buffer, value in saved:
            buffer.data.copy_(value)
