# SPDX-License-Identifier: MIT
"""One training step's gradients: the plain classification step or the PPI step (paper section 3).

The PPI step, arranged so nothing is computed twice and little is held at once:

1. clean forward → L_cls → backward at once (its activations are freed before the PPI part);
   under DDP inside `no_sync`, so gradients are reduced once, at the end;
2. saliency of the clean batch (graph kept when `create_graph`): for binary image models with
   WBP (`ppi.map_from: auto`) from step 1's forward, and for networks without layers that need
   a WBP rule from step 1's backward itself (autograd/shared_map.py); otherwise from the saliency
   engine's own pass (the recipe's method). When the map's graph keeps step 1's forward alive
   anyway (create_graph with batch norm), L_cls joins the last backward instead;
3. with `create_graph` (the map's graph alive meanwhile): x* (rows L_con applies to) forward →
   α·L_con backward, the gradient reaching the mask kept on a stand-in leaf, then the first half
   of x' the same way; batch norm on the running statistics of clean images
   (`ppi.intervened_norm: running`; `clean`: the statistics step 1's clean batch was normalised with),
   so x* and x' need not share a forward;
4. the rest of x' forward → γ·L_ad + β·L_reg + ⟨T, ∂(α·L_con)/∂T⟩ backward: the saliency graph is
   traversed once, and under DDP this is the one synchronised backward.

Without `create_graph`, and with `intervened_norm: batch` (x* and x' must share batch
statistics), steps 3-4 are one forward of x* and x' together and one backward.

Each pass is a named span (`autograd/phases.py`), which `ppi bench train --profile` times.
The optimiser update is the caller's (`fit`, `ppi bench train`). AMP: forwards and the saliency
run under autocast on CUDA, losses in float32, float16 gradients scaled by a `GradScaler`.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ppi_cli.autograd.phases import phase
from ppi_cli.autograd.shared_map import classification_with_map, shares_clean_pass
from ppi_cli.config.recipe import SELECT_CHOICES, PPIConfig
from ppi_cli.engine.evaluate import autocast
from ppi_cli.ppi.intervention import (
    Intervention,
    intervention_from_saliency,
    mask_model_saliency,
    pseudo_intervention,
    true_class_map,
)
from ppi_cli.ppi.losses import (
    LossWeights,
    adversarial_loss,
    classification_loss,
    consistency_loss,
    contrast_loss,
    counterfactual_hinge,
    full_precision,
    outside_evidence,
    saliency_regulariser,
    true_label_probability,
)
from ppi_cli.ppi.masks import blurred, evidence_mask
from ppi_cli.ppi.train_modes import BatchStatistics, intervened_normalisation, recorded_batch_statistics

__all__ = ["TrainStep", "forward"]


def forward(net: nn.Module, x: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    """Logits of an image model `net(x)` or a volume model `net(x, positions)`."""
    return net(x) if positions is None else net(x, positions)


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
        mask_model: The frozen model of `ppi.mask_model` whose maps give the masks, or None.
    """

    model: nn.Module
    net: nn.Module
    cfg: PPIConfig
    weights: LossWeights
    binary: bool
    device: torch.device
    amp: bool = False
    scaler: torch.amp.GradScaler | None = None
    mask_model: nn.Module | None = None
    _seen: dict[str, list[torch.Tensor]] = field(default_factory=dict, init=False, repr=False)
    _clean_stats: BatchStatistics | None = field(default=None, init=False, repr=False)
    _reference: torch.Tensor | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        for name in SELECT_CHOICES:
            if self.cfg.enabled and getattr(self.cfg, name) == "select":
                # a choice between whole runs (engine.trainer.fit trains each); a step has to be one of them
                raise ValueError(f"ppi.{name}: select reached a training step: give it one of its choices")

    def _recording(self) -> contextlib.AbstractContextManager[BatchStatistics | None]:
        """Record the clean batch's batch-norm statistics when `ppi.intervened_norm: clean` or `clean-grad` needs
        them (`clean-grad`: in the clean forward's graph)."""
        if self.cfg.intervened_norm in ("clean", "clean-grad"):
            return recorded_batch_statistics(self.model, live=self.cfg.intervened_norm == "clean-grad")
        return contextlib.nullcontext()

    def uses_ppi(self, epoch: int, batch_size: int) -> bool:
        """PPI is on, past its warm-up, and the batch has another image for L_ad's masks."""
        return self.cfg.enabled and epoch >= self.cfg.start_epoch and batch_size >= 2

    def __call__(self, x: torch.Tensor, labels: torch.Tensor, positions: torch.Tensor | None = None, *,
                 epoch: int, generator: torch.Generator | None = None,
                 lesion: torch.Tensor | None = None, cue: torch.Tensor | None = None) -> dict[str, float]:
        """Gradients of one batch; `{"cls", "con", "reg", "ad", "loss"}` values (the PPI terms only with PPI)."""
        if self.uses_ppi(epoch, x.shape[0]):
            return self._ppi(x, labels, positions, epoch, generator, lesion, cue)
        return self._plain(x, labels, positions)

    def _backward(self, loss: torch.Tensor, last: bool = True) -> None:
        # `clean-grad`: every intervened term's backward passes through the clean forward's statistics, so a PPI
        # step keeps that graph alive until its last backward
        keep = not last and self.cfg.intervened_norm == "clean-grad"
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward(retain_graph=keep)

    def _plain(self, x: torch.Tensor, labels: torch.Tensor, positions: torch.Tensor | None) -> dict[str, float]:
        with phase("forward"), autocast(self.device, self.amp):
            logits = forward(self.net, x, positions)
        loss = classification_loss(full_precision(logits), labels)
        with phase("backward"):
            self._backward(loss)
        value = float(loss.detach())
        return {"cls": value, "loss": value}

    def _ppi(self, x: torch.Tensor, labels: torch.Tensor, positions: torch.Tensor | None, epoch: int,
             generator: torch.Generator | None, lesion: torch.Tensor | None = None,
             cue: torch.Tensor | None = None) -> dict[str, float]:
        sync_off = self.net.no_sync if hasattr(self.net, "no_sync") else contextlib.nullcontext
        l_cls, iv, deferred = self._clean_pass(x, labels, positions, generator, sync_off, lesion)
        alpha, beta, gamma, keep, invariance, delta = (
            self.weights.weight(t, epoch) for t in ("con", "reg", "ad", "keep", "invariance", "delta"))
        l_reg = saliency_regulariser(full_precision(iv.saliency), self.cfg.reg_form)
        self._seen = {"con": [], "ad": [], "keep": []}
        self._reference = self._clean_reference(iv, positions)
        l_keep = self._kept_pass(iv, labels, positions, sync_off, keep) if self.cfg.keep > 0 else None
        l_inv = self._invariance_pass(iv, positions, sync_off, invariance) if self.cfg.invariance > 0 else None
        l_con, l_ad, total = self._intervened_pass(iv, labels, alpha, gamma, sync_off)
        if l_reg.requires_grad:  # without create_graph the map is a constant: L_reg is reported, not trained
            total = total + beta * l_reg
        l_out = (outside_evidence(full_precision(iv.saliency), self._out_mask(iv), self.cfg.out_form)
                 if self.cfg.delta > 0 else None)
        if l_out is not None and l_out.requires_grad:
            total = total + delta * l_out
        if deferred is not None:  # L_cls's gradient, from the traversal of the clean graph this backward makes anyway
            total = total + deferred
        with phase("last backward"):
            self._backward(total)
        values = {"cls": float(l_cls.detach()), "con": float(l_con.detach()), "reg": float(l_reg.detach()),
                  "ad": float(l_ad.detach())}
        self.weights.update(values)
        values["loss"] = values["cls"] + alpha * values["con"] + beta * values["reg"] + gamma * values["ad"]
        if l_out is not None:
            values["out"] = float(l_out.detach())
            values["loss"] += delta * values["out"]
        if l_keep is not None:
            values["keep"] = float(l_keep)  # NaN where the batch had no x^k: left out of the epoch's mean
            if math.isfinite(l_keep):
                values["loss"] += keep * values["keep"]
        if l_inv is not None:
            values["inv"] = l_inv
            values["loss"] += invariance * l_inv
        return values | self._diagnostics(iv, lesion, cue)

    def _clean_reference(self, iv: Intervention, positions: torch.Tensor | None) -> torch.Tensor | None:
        """The clean batch's logits under the batch-norm treatment the intervened images get, no gradient: what
        each image scores as it is, for `ppi.counterfactual_loss: hinge`, `ppi.counterfactual_gate` and L_inv's
        target (one forward for all three). Else None."""
        cfg = self.cfg
        if cfg.counterfactual_loss != "hinge" and cfg.counterfactual_gate <= 0 and cfg.invariance <= 0:
            return None
        with torch.no_grad():
            return self._intervened(iv.x, positions, "x forward (the clean reference)")

    def _counterfactual_term(self, out: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor,
                             content: torch.Tensor, flipped: bool) -> torch.Tensor:
        """L_con (`flipped`: x* of `rows`, the flipped label, eq. 3) or L_keep (x^k, the true label) as a mean over
        `rows`, each counterfactual made from batch row `rows[i]` with the content of batch row `content[i]`.

        With the hinge each is held to its content's clean log-odds instead; with the gate a row counts (0 for
        the others, still in the mean) only while the model gives its own image's label at least that
        probability on the clean image.
        """
        share = None
        if self.cfg.counterfactual_gate > 0 and self._reference is not None and rows.numel():
            passing = true_label_probability(self._reference[rows], labels[rows]) >= self.cfg.counterfactual_gate
            passing = passing.to(out.device)
            share = passing.float().mean()
            out, rows, content = out[passing], rows[passing], content[passing]
        if self.cfg.counterfactual_loss == "hinge" and self._reference is not None:
            loss = counterfactual_hinge(out, labels[content], self._reference[content])
        else:
            term = contrast_loss if flipped else classification_loss
            loss = term(out, labels[rows]) if out.shape[0] else out.sum() * 0.0  # every row gated off: 0
        return loss if share is None else loss * share

    def _contrast_term(self, out: torch.Tensor, iv: Intervention, labels: torch.Tensor) -> torch.Tensor:
        """L_con on x* of `iv.rows`: the flipped label (eq. 3), or held to its content's own score (hinge); gated
        by `ppi.counterfactual_gate` when it is on."""
        content = iv.fill_from[iv.rows] if iv.fill_from is not None else iv.rows  # x*: the donor in x's look
        return self._counterfactual_term(out, labels, iv.rows, content, flipped=True)

    def _out_mask(self, iv: Intervention) -> torch.Tensor:
        """The mask L_out holds each map to: the intervention's, or with `ppi.out_coverage` the map's own top share
        of evidence for its class (smoothed by `ppi.map_smooth`), a lesion-sized region apart from the swap's mask."""
        if self.cfg.out_coverage <= 0:
            return iv.mask
        return evidence_mask(iv.saliency, self.cfg.out_coverage, self.cfg.map_smooth)

    def _kept_pass(self, iv: Intervention, labels: torch.Tensor, positions: torch.Tensor | None,
                   sync_off: Any, weight: float) -> float:
        """L_keep on x^k (salient region kept, the rest blurred), back-propagated at once; the mask is a constant.

        With `ppi.fill: swap` the rest comes from an image of the other class, and x^k is made for the
        L_con rows only (binary: a positive's salient region over a negative): a negative's region over a
        positive would keep whatever of the positive's lesion lies outside it, under the label "no lesion".
        """
        fill = iv.keep_fill if iv.keep_fill is not None else iv.fill
        if fill is None:
            images = iv.x.flatten(0, 1) if positions is not None else iv.x
            fill = blurred(images.detach(), self.cfg.fill_sigma).view_as(iv.x)
        rows = iv.rows if self.cfg.fill == "swap" else None
        if rows is not None and rows.numel() == 0:
            return math.nan  # no L_con row in this batch: nothing to paste
        with sync_off():
            kept_labels = labels if rows is None else labels[rows]
            kept_positions = positions[rows] if rows is not None and positions is not None else positions
            out = self._intervened(iv.kept_images(fill, rows), kept_positions, "x^k forward")
            self._record("keep", out, kept_labels)
            every = rows if rows is not None else torch.arange(labels.shape[0], device=labels.device)
            l_keep = self._counterfactual_term(out, labels, every, every, flipped=False)  # x^k: x's own content
            with phase("x^k backward"):
                self._backward(weight * l_keep, last=False)
        return float(l_keep.detach())

    def _invariance_pass(self, iv: Intervention, positions: torch.Tensor | None, sync_off: Any,
                         weight: float) -> float:
        """L_inv on every row, back-propagated at once: the prediction on x with the pixels outside its mask (or
        all) in another class's look, against the prediction on x itself, taken without a gradient and under the
        same batch-norm treatment, so the two differ only by the look."""
        assert self._reference is not None  # _clean_reference computes it whenever L_inv is on
        with sync_off():
            out = self._intervened(iv.invariant_images(self.cfg.invariance_region), positions, "x^inv forward")
            l_inv = consistency_loss(out, self._reference)
            with phase("x^inv backward"):
                self._backward(weight * l_inv, last=False)
        return float(l_inv.detach())

    def _diagnostics(self, iv: Intervention, lesion: torch.Tensor | None = None,
                     cue: torch.Tensor | None = None) -> dict[str, float]:
        """What the intervention did: mask coverage, p(y | x*) on the L_con rows, p(y | x') on the L_ad rows.

        Each is a batch mean, NaN where the batch had no such row (no positive: no x*); the trainer
        averages the finite ones over the epoch. With the batch's lesion masks, `lesion_removed` is
        the share of lesion pixels the masks remove, Σ T·lesion / Σ lesion over the batch's maps; with
        the planted cue's pixels, `mask_on_cue` is the share of the mask on the cue, Σ T·cue / Σ T over
        the maps of images that carry it.
        """
        seen = {k: torch.cat(v) if v else torch.zeros(0) for k, v in self._seen.items()}
        mean = {k: float(v.mean()) if v.numel() else float("nan") for k, v in seen.items()}
        found = {"coverage": float(iv.mask.detach().float().mean()), "p_con": mean["con"], "p_ad": mean["ad"]}
        if seen["keep"].numel():
            found["p_keep"] = mean["keep"]
        if lesion is not None:  # the lesion masks of the batch, shaped like x with one channel
            region = lesion.reshape(iv.mask.shape).to(iv.mask.device, torch.float32)
            area = float(region.sum())
            found["lesion_removed"] = float((iv.mask.detach().float() * region).sum()) / area if area else math.nan
        if cue is not None:  # the planted cue's pixels (synthetic data): how much of the mask falls on it
            on_cue = cue.reshape(iv.mask.shape).to(iv.mask.device, torch.float32)
            marked = on_cue.flatten(1).amax(dim=1) > 0  # maps whose image carries the cue
            t = iv.mask.detach().float()[marked]
            found["mask_on_cue"] = float((t * on_cue[marked]).sum() / t.sum()) if float(t.sum()) > 0 else math.nan
        return found

    def _clean_pass(self, x: torch.Tensor, labels: torch.Tensor, positions: torch.Tensor | None,
                    generator: torch.Generator | None, sync_off: Any,
                    lesion: torch.Tensor | None = None) -> tuple[torch.Tensor, Intervention, torch.Tensor | None]:
        """L_cls, the intervention, and what of L_cls is left to back-propagate with the last backward.

        L_cls is back-propagated here (its activations freed) unless the map's graph keeps the clean
        forward alive anyway (`ClassificationWithMap.deferred`).
        """
        cfg = self.cfg
        # `clean-grad` keeps the clean forward's graph for the intervened terms: the map takes its own forward
        if cfg.saliency_space == "input" and cfg.intervened_norm != "clean-grad" and shares_clean_pass(
                self.model, map_from=cfg.map_from, saliency=cfg.saliency, binary=self.binary,
                volume=positions is not None, scaled=self.scaler is not None):
            with sync_off(), autocast(self.device, self.amp), self._recording() as self._clean_stats:
                shared = classification_with_map(self.net, x, labels, create_graph=cfg.create_graph)
            l_cls = shared.loss
            if shared.saliency is not None:
                s = true_class_map(shared.saliency, labels)
                with phase("masks"):
                    teacher = mask_model_saliency(self.mask_model, x, labels, cfg, binary=True, positions=None)
                    iv = intervention_from_saliency(x, labels, s, cfg, binary=True, generator=generator, lesion=lesion,
                                                    mask_saliency=teacher)
                return l_cls, iv, shared.deferred
        else:
            with sync_off():
                with phase("clean forward"), autocast(self.device, self.amp), \
                        self._recording() as self._clean_stats:
                    logits = forward(self.net, x, positions)
                l_cls = classification_loss(full_precision(logits), labels)
                with phase("L_cls backward"):
                    self._backward(l_cls, last=False)
            del logits
        with phase("saliency and masks"), autocast(self.device, self.amp):
            iv = pseudo_intervention(self.model, x, labels, self.cfg, binary=self.binary, positions=positions,
                                     generator=generator, lesion=lesion, mask_model=self.mask_model)
        return l_cls, iv, None

    def _intervened_pass(self, iv: Intervention, labels: torch.Tensor, alpha: float, gamma: float,
                         sync_off: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """L_con, L_ad and what remains to back-propagate (x* and part of x' are back-propagated here when staged)."""
        # With the map's graph alive (create_graph) memory is what counts: x* and x' are classified
        # with running statistics (no batch coupling), so they can go through one set at a time, x'
        # in two halves, and only one part's activations are alive at once. Gradients reaching the mask
        # from all but the last part are collected on a stand-in leaf and handed to the mask's graph
        # with the last part (one pass through the saliency graph, one DDP reduction). Without a graph
        # x* and x' share one forward and one backward (one gradient accumulation fewer).
        l_con = torch.zeros((), device=iv.x.device)
        if self.cfg.intervened_norm in ("running", "clean", "clean-grad") and iv.rows.numel() > 0 \
                and iv.mask.requires_grad:
            stand_in = iv.mask.detach().requires_grad_(True)
            with sync_off():
                images, pos = iv.contrast_images(stand_in)
                out = self._intervened(images, pos, "x* forward")
                self._record("con", out, labels[iv.rows])
                l_con = self._contrast_term(out, iv, labels)
                with phase("x* backward"):
                    self._backward(alpha * l_con, last=False)
            n_ad = int(iv.ad_rows.numel())
            cut = n_ad // 2
            l_ad = torch.zeros((), device=iv.x.device)
            if cut:
                with sync_off():
                    images, pos = iv.adversarial_images(stand_in, slice(0, cut))
                    out = self._intervened(images, pos, "x' forward")
                    self._record("ad", out, labels[iv.ad_rows[:cut]])
                    l_ad = adversarial_loss(out, labels[iv.ad_rows[:cut]]) * (cut / n_ad)
                    with phase("x' backward"):
                        self._backward(gamma * l_ad, last=False)
            images, pos = iv.adversarial_images(part=slice(cut, n_ad))
            out = self._intervened(images, pos, "x' forward")
            self._record("ad", out, labels[iv.ad_rows[cut:]])
            last = adversarial_loss(out, labels[iv.ad_rows[cut:]]) * ((n_ad - cut) / n_ad)
            l_ad = l_ad.detach() + last  # the mean over every L_ad row
            total = gamma * last
            if stand_in.grad is not None:
                grad = stand_in.grad / self.scaler.get_scale() if self.scaler is not None else stand_in.grad
                total = total + (iv.mask * grad).sum()  # ∂(α·L_con + γ·L_ad of the first part)/∂T
            return l_con, l_ad, total
        positions = None if iv.positions is None else torch.cat([iv.contrast_images()[1], iv.adversarial_images()[1]])
        out = self._intervened(iv.inputs, positions, "x*, x' forward")
        n_con = int(iv.rows.numel())
        self._record("con", out[:n_con], labels[iv.rows])
        self._record("ad", out[n_con:], labels[iv.ad_rows])
        if n_con:
            l_con = self._contrast_term(out[:n_con], iv, labels)
        l_ad = adversarial_loss(out[n_con:], labels[iv.ad_rows])
        return l_con, l_ad, alpha * l_con + gamma * l_ad

    def _record(self, term: str, logits: torch.Tensor, labels: torch.Tensor) -> None:
        if logits.shape[0]:
            self._seen[term].append(true_label_probability(logits, labels).cpu())

    def _intervened(self, images: torch.Tensor, positions: torch.Tensor | None, name: str) -> torch.Tensor:
        norm = intervened_normalisation(self.model, self.cfg.intervened_norm, self._clean_stats)
        with phase(name), autocast(self.device, self.amp), norm:
            return full_precision(forward(self.net, images, positions))
