# SPDX-License-Identifier: MIT
"""Optimiser, learning-rate schedule and the attention-bias schedule, all from the recipe.

The paper's settings: SGD, lr 0.01, ×0.1 every 30 epochs for VGG11 (CUB, CIFAR-10); Adam with
separate groups for the CNN backbone and the other layers for the GA model (appendix E.2). A
recipe gets the second form by setting `optim.backbone_lr` (and `schedule.backbone_step_size`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.optim import SGD, Adam, AdamW, Optimizer
from torch.optim.lr_scheduler import LambdaLR

from ppi_cli.config.recipe import MultiviewConfig, OptimConfig, ScheduleConfig

__all__ = ["build_optimizer", "build_scheduler", "attention_bias", "parameter_groups", "grad_norm"]


def parameter_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """One group, or `backbone` and `heads` groups when `backbone_lr` is set (names kept in the state)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.backbone_lr is None:
        return [{"params": params, "lr": cfg.lr, "name": "all"}]
    backbone_ids = {id(p) for p in model.backbone_parameters()}  # type: ignore[operator]  # the wrapper's method
    backbone = [p for p in params if id(p) in backbone_ids]
    heads = [p for p in params if id(p) not in backbone_ids]
    return [{"params": backbone, "lr": cfg.backbone_lr, "name": "backbone"},
            {"params": heads, "lr": cfg.lr, "name": "heads"}]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> Optimizer:
    """The recipe's optimiser over the model's parameter groups."""
    groups = parameter_groups(model, cfg)
    if cfg.name == "sgd":
        return SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def grad_norm(optimizer: Optimizer, scaler: torch.amp.GradScaler | None = None) -> float:
    """The total L2 norm of the gradients the optimiser is about to apply (metrics.csv's `train_grad_norm`).

    Under mixed precision the gradients are unscaled first (the scaler's step then skips its own unscaling), so
    the norm is in the loss's units; an overflowed float16 step, which the scaler skips, reads inf or NaN.
    """
    if scaler is not None:
        scaler.unscale_(optimizer)
    norms = [torch.linalg.vector_norm(p.grad.detach()) for group in optimizer.param_groups for p in group["params"]
             if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


def build_scheduler(optimizer: Optimizer, cfg: ScheduleConfig) -> LambdaLR:
    """Step decay per epoch: lr × factor^(epoch // step_size), the backbone group on its own step size."""
    lambdas: list[Callable[[int], float]] = []
    for group in optimizer.param_groups:
        step = cfg.backbone_step_size if group.get("name") == "backbone" and cfg.backbone_step_size else cfg.step_size
        lambdas.append(lambda epoch, step=step: cfg.factor ** (epoch // step))  # type: ignore[misc]
    return LambdaLR(optimizer, lambdas)


def attention_bias(epoch: int, cfg: MultiviewConfig) -> float:
    """b of eq. 12 at `epoch`: linear from `bias_start` to `bias_end` over `bias_epochs`, then constant.

    The paper says only that b starts high "to stabilise training" and is "gradually attenuated to a
    small number"; the linear ramp is our choice (docs/ppi.md).
    """
    if cfg.bias_epochs <= 0 or epoch >= cfg.bias_epochs:
        return cfg.bias_end
    return cfg.bias_start + (cfg.bias_end - cfg.bias_start) * epoch / cfg.bias_epochs
