# SPDX-License-Identifier: MIT
"""One training step's gradients: the plain classification step or the PPI step (paper section 3).

The PPI step, arranged so nothing is computed twice and little is held at once:

1. clean forward → L_cls → backward at once (its activations are freed before the PPI part);
   under DDP inside `no_sync`, so gradients are reduced once, at the end;
2. saliency of the clean batch (the recipe's method; graph kept when `create_graph`);
3. x* (rows L_con applies to) forward → α·L_con backward, the gradient reaching the mask kept on
   a stand-in leaf; batch norm on the running statistics of clean images
   (`ppi.intervened_norm: running`), so x* and x' need not share a forward;
4. x' forward → γ·L_ad + β·L_reg + ⟨T, ∂(α·L_con)/∂T⟩ backward: the saliency graph is traversed
   once, and under DDP this is the one synchronised backward.

With `intervened_norm: batch` steps 3-4 are one forward of x* and x' together (they must share
batch statistics).

The optimiser update is the caller's (`fit`, `ppi bench train`). AMP: forwards and the saliency
run under autocast on CUDA, losses in float32, float16 gradients scaled by a `GradScaler`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from ppi_cli.config.recipe import PPIConfig
from ppi_cli.engine.evaluate import autocast
from ppi_cli.ppi.intervention import intervened_normalisation, pseudo_intervention
from ppi_cli.ppi.losses import (
    LossWeights,
    adversarial_loss,
    classification_loss,
    contrast_loss,
    saliency_regulariser,
)

__all__ = ["TrainStep", "forward", "sample_slices"]


def forward(net: nn.Module, x: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    """Logits of an image model `net(x)` or a volume model `net(x, positions)`."""
    return net(x) if positions is None else net(x, positions)


def _full(t: torch.Tensor) -> torch.Tensor:
    """Half-precision autocast outputs in float32 for the losses; float32/float64 left as they are."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def sample_slices(x: torch.Tensor, positions: torch.Tensor, k: int,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """K random B-scans per volume, kept in B-scan order: `(B, S, ...)` → `(B, K, ...)` (appendix E.2)."""
    b, s = positions.shape
    if s <= k:
        return x, positions
    keys = torch.rand(b, s, generator=generator)
    keep = keys.argsort(dim=1)[:, :k].sort(dim=1).values.to(x.device)  # (B, K) indices in order
    picked = keep.view(b, k, *([1] * (x.ndim - 2))).expand(b, k, *x.shape[2:])
    return x.gather(1, picked), positions.gather(1, keep)


@dataclass
class TrainStep:
    """Computes one batch's gradients (accumulated into `.grad`) and returns the loss values.

    Attributes:
        model: The unwrapped model (saliency is taken on it).
        net: What forwards go through: the DDP wrapper under torchrun, else `model`.
        cfg: The recipe's `ppi` section.
        weights: α, β, γ (fixed or `auto`).
        binary: One logit per sample.
        device: Where tensors live (for autocast).
        amp: Mixed precision on CUDA.
        scaler: float16 gradient scaler, or None.
    """

    model: nn.Module
    net: nn.Module
    cfg: PPIConfig
    weights: LossWeights
    binary: bool
    device: torch.device
    amp: bool = False
    scaler: torch.amp.GradScaler | None = None

    def uses_ppi(self, epoch: int, batch_size: int) -> bool:
        """PPI is on, past its warm-up, and the batch has another image for L_ad's masks."""
        return self.cfg.enabled and epoch >= self.cfg.start_epoch and batch_size >= 2

    def __call__(self, x: torch.Tensor, labels: torch.Tensor, positions: torch.Tensor | None = None, *,
                 epoch: int, generator: torch.Generator | None = None) -> dict[str, float]:
        """Gradients of one batch; `{"cls", "con", "reg", "ad", "loss"}` values (the PPI terms only with PPI)."""
        if self.uses_ppi(epoch, x.shape[0]):
            return self._ppi(x, labels, positions, epoch, generator)
        return self._plain(x, labels, positions)

    def _backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def _plain(self, x: torch.Tensor, labels: torch.Tensor, positions: torch.Tensor | None) -> dict[str, float]:
        with autocast(self.device, self.amp):
            logits = forward(self.net, x, positions)
        loss = classification_loss(_full(logits), labels)
        self._backward(loss)
        value = float(loss.detach())
        return {"cls": value, "loss": value}

    def _ppi(self, x: torch.Tensor, labels: torch.Tensor, positions: torch.Tensor | None, epoch: int,
             generator: torch.Generator | None) -> dict[str, float]:
        sync_off = self.net.no_sync if hasattr(self.net, "no_sync") else contextlib.nullcontext
        with sync_off():
            with autocast(self.device, self.amp):
                logits = forward(self.net, x, positions)
            l_cls = classification_loss(_full(logits), labels)
            self._backward(l_cls)
        del logits
        with autocast(self.device, self.amp):
            iv = pseudo_intervention(self.model, x, labels, self.cfg, binary=self.binary, positions=positions,
                                     generator=generator)
        alpha, beta, gamma = (self.weights.weight(t, epoch) for t in ("con", "reg", "ad"))
        l_reg = saliency_regulariser(_full(iv.saliency))
        reg = beta * l_reg if l_reg.requires_grad else None  # without create_graph the map is a constant
        # x* and x' are classified with running statistics (no batch coupling), so they can go through
        # one at a time: only one set's activations are alive at once. Gradients reaching the mask from
        # x* are collected on a stand-in leaf and handed to the mask's graph with x' (one pass through
        # the saliency graph, one DDP reduction).
        chunked = self.cfg.intervened_norm == "running" and iv.rows.numel() > 0
        stand_in = iv.mask.detach().requires_grad_(iv.mask.requires_grad) if chunked else iv.mask
        l_con = torch.zeros((), device=x.device)
        if chunked:
            with sync_off():
                images, pos = iv.contrast_images(stand_in)
                l_con = contrast_loss(self._intervened(images, pos), labels[iv.rows])
                self._backward(alpha * l_con)
            images, pos = iv.adversarial_images()
            l_ad = adversarial_loss(self._intervened(images, pos), labels[iv.ad_rows])
            total = gamma * l_ad
            if stand_in.grad is not None:
                grad = stand_in.grad / self.scaler.get_scale() if self.scaler is not None else stand_in.grad
                total = total + (iv.mask * grad).sum()  # ∂(α·L_con)/∂T, pushed through the mask's graph
        else:
            out = self._intervened(iv.inputs, None if positions is None else
                                   torch.cat([iv.contrast_images()[1], iv.adversarial_images()[1]]))
            n_con = int(iv.rows.numel())
            if n_con:
                l_con = contrast_loss(out[:n_con], labels[iv.rows])
            l_ad = adversarial_loss(out[n_con:], labels[iv.ad_rows])
            total = alpha * l_con + gamma * l_ad
        if reg is not None:
            total = total + reg
        self._backward(total)
        values = {"cls": float(l_cls.detach()), "con": float(l_con.detach()), "reg": float(l_reg.detach()),
                  "ad": float(l_ad.detach())}
        self.weights.update(values)
        values["loss"] = values["cls"] + alpha * values["con"] + beta * values["reg"] + gamma * values["ad"]
        return values

    def _intervened(self, images: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
        with autocast(self.device, self.amp), intervened_normalisation(self.model, self.cfg.intervened_norm):
            return _full(forward(self.net, images, positions))
