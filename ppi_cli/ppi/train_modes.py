# SPDX-License-Identifier: MIT
"""How the PPI step's extra passes treat the layers whose train mode depends on the batch: dropout and batch norm.

`dropout_off` switches dropout off while a saliency map is taken. `recorded_batch_statistics` records the
clean batch's batch-norm statistics, and `intervened_normalisation` normalises the intervened images with
them (`ppi.intervened_norm: clean`, or `clean-grad` with their gradient), with the running statistics
(`running`) or with the intervened batch's own (`batch`). `freeze_batch_norm` puts every batch-norm layer
on its running statistics (`frozen`). See docs/ppi.md, "Batch norm on intervened images".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import cast

import torch
from torch import nn

from ppi_cli.autograd.tensors import full_precision

__all__ = ["dropout_off", "BatchStatistics", "recorded_batch_statistics", "intervened_normalisation",
           "freeze_batch_norm"]


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


BatchStatistics = dict[nn.Module, tuple[torch.Tensor, torch.Tensor]]


@contextmanager
def recorded_batch_statistics(model: nn.Module, live: bool = False) -> Iterator[BatchStatistics]:
    """Record, for each train-mode batch-norm layer, the batch mean and (biased) variance its first call in
    the block normalises with: the clean batch's statistics, for `intervened_normalisation(..., "clean")`.
    With `live` (`ppi.intervened_norm: clean-grad`) they stay in the clean forward's graph, functions of the
    weights as the clean batch's own normalisation is, instead of constants."""
    stats: BatchStatistics = {}

    def record(layer: nn.Module, args: tuple) -> None:
        if layer not in stats:
            x = full_precision(args[0] if live else args[0].detach())  # autocast: statistics in float32
            var, mean = torch.var_mean(x, dim=[d for d in range(x.ndim) if d != 1], correction=0)
            stats[layer] = (mean, var)

    handles = [m.register_forward_pre_hook(record) for m in model.modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    try:
        yield stats
    finally:
        for handle in handles:
            handle.remove()


def _normalised_with(mean: torch.Tensor, var: torch.Tensor) -> Callable[[nn.Module, tuple, torch.Tensor], torch.Tensor]:
    """A forward hook that replaces a batch-norm layer's output with its input normalised by `mean` and `var`
    (tensors in a graph, which the layer's own kernel does not differentiate through), then its affine map."""

    def hook(layer: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        norm = cast(nn.modules.batchnorm._BatchNorm, layer)
        x = full_precision(args[0])  # autocast: normalised in float32
        shape = (1, -1) + (1,) * (x.ndim - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + norm.eps)
        if norm.weight is not None and norm.bias is not None:
            y = y * norm.weight.view(shape) + norm.bias.view(shape)
        return y.to(output.dtype)

    return hook


@contextmanager
def intervened_normalisation(model: nn.Module, mode: str = "running",
                             clean: BatchStatistics | None = None) -> Iterator[None]:
    """How train-mode batch norm treats the intervened images; running statistics never move.

    `running` (default) normalises x* and x' with the running statistics of clean images, as the
    model would classify them at test time; `batch` uses the statistics of the intervened batch
    itself (without updating the running ones); `clean` the statistics of the clean batch that L_cls
    was normalised with (`clean`, from `recorded_batch_statistics`; a layer without them uses the
    running ones), so L_cls and the intervened terms train one function of the image; `clean-grad` the
    same statistics recorded `live`, so the intervened terms' gradient also passes through them, as L_cls's
    passes through its batch's (as constants, the statistics let those terms push on the weights' scale,
    which the clean batch's normalisation then removes: the weights grow and learning slows). See docs/ppi.md.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None)
             for m in norms]
    swapped: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []  # layers and their own running buffers
    hooks = []
    for m in norms:
        m.momentum = 0.0  # running = (1 − 0)·running + 0·batch
        if mode in ("running", "clean", "clean-grad"):
            m.eval()
        if mode == "clean-grad" and clean is not None and m in clean:
            hooks.append(m.register_forward_hook(_normalised_with(*clean[m])))
        elif mode == "clean" and clean is not None and m in clean and m.running_mean is not None \
                and m.running_var is not None:
            # new tensors in the buffers' place, not copies into them: the backward of the intervened
            # forward holds the statistics it normalised with, and the layer's own buffers stay untouched
            swapped.append((m, m.running_mean, m.running_var))
            mean, var = clean[m]
            m.running_mean, m.running_var = mean.to(m.running_mean.dtype), var.to(m.running_var.dtype)
    try:
        yield
    finally:
        for handle in hooks:
            handle.remove()
        for layer, running_mean, running_var in swapped:
            layer.running_mean, layer.running_var = running_mean, running_var
        for m, (momentum, tracked) in zip(norms, saved, strict=True):
            m.momentum = momentum
            m.train()
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def freeze_batch_norm(model: nn.Module) -> None:
    """Batch norm layers to eval mode: running statistics normalise every image and are not updated.

    `ppi.intervened_norm: frozen` calls it after `model.train()` in every PPI epoch, so clean, x*
    and x' images go through the one function the model computes at test time.
    """
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
