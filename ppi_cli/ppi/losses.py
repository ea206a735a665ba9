# SPDX-License-Identifier: MIT
"""The four PPI loss terms and their weights: L = L_cls + α·L_con + β·L_reg + γ·L_ad (paper eqs. 3-5).

Binary tasks have one logit per sample and float labels in {0, 1}; multi-class tasks have K logits
and int64 labels. Every term is a mean over the samples it applies to (a batch-size-free scale,
so α, β and γ mean the same at any batch size).

- L_cls: cross-entropy of the clean images (binary: with logits);
- L_con: the flipped label on the intervened images x*: binary BCE(f(x*), 1 − y), multi-class the
  one-vs-others −log(1 − p_y(x*)) (eq. 3, paper-math ambiguity 3);
- L_reg: mean |s| over pixels and samples, keeping saliency sparse;
- L_ad: the true label on x' = (1 − T(s_j)) ⊙ x, the mask of another image j ≠ i (eqs. 4-5).

With whole images swapped (`ppi.swap_region: image`), `counterfactual_hinge` may replace the cross-entropy
of x* and x^k (`ppi.counterfactual_loss: hinge`, ours).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import torch
import torch.nn.functional as F

from ppi_cli.autograd.tensors import full_precision
from ppi_cli.config.recipe import PPIConfig

__all__ = ["classification_loss", "consistency_loss", "contrast_loss", "saliency_regulariser", "adversarial_loss",
           "derangement", "mask_donors", "full_precision", "true_label_probability", "outside_evidence",
           "LossWeights", "TERMS", "log_odds", "counterfactual_hinge"]

TERMS = ("cls", "con", "reg", "ad")


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_cls: mean cross-entropy; `(B, 1)` logits with float {0, 1} labels, or `(B, K)` with int64 labels."""
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits.squeeze(1), labels.to(logits.dtype))
    return F.cross_entropy(logits, labels.long())


def consistency_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_inv: mean KL divergence from the prediction `target` (logits, no gradient) to the prediction `logits`.

    `(B, 1)` logits are read as Bernoulli, `(B, K)` as categorical; 0 where the two predictions agree.
    """
    target = target.detach()
    if logits.shape[1] == 1:
        z, t = logits.squeeze(1), target.squeeze(1)
        p = torch.sigmoid(t)
        return F.binary_cross_entropy_with_logits(z, p) - F.binary_cross_entropy_with_logits(t, p)
    return F.kl_div(F.log_softmax(logits, dim=1), F.log_softmax(target, dim=1), reduction="batchmean",
                    log_target=True)


def true_label_probability(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """p(y | x) per row, no graph: σ(z) for positives and 1 − σ(z) for negatives, or softmax(z)_y.

    The training diagnostics read it on x* (L_con wants it low) and on x' (L_ad wants it high).
    """
    with torch.no_grad():
        z = logits.detach().float()
        if z.shape[1] == 1:
            positive = labels.to(z.dtype) > 0.5
            return torch.where(positive, torch.sigmoid(z[:, 0]), torch.sigmoid(-z[:, 0]))
        return z.softmax(dim=1).gather(1, labels.long()[:, None])[:, 0]


def log_odds(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(y | x) − log(1 − p(y | x)) per row: (2y − 1)·z for `(B, 1)` logits, z_y − logsumexp(z without z_y)
    for `(B, K)`, finite however sure the model is."""
    if logits.shape[1] == 1:
        return (2 * labels.to(logits.dtype) - 1) * logits[:, 0]
    index = labels.long()[:, None]
    return logits.gather(1, index)[:, 0] - torch.logsumexp(logits.scatter(1, index, float("-inf")), dim=1)


def counterfactual_hinge(logits: torch.Tensor, labels: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """A counterfactual held to its content's own score (ours, `ppi.counterfactual_loss: hinge`).

    Mean over rows of max(0, m(reference) − m(logits)), m the log-odds of `labels`: a counterfactual (an image
    in another image's look) costs only where the look makes the model less sure of the content's label than it
    is on the content as it is (`reference`, the clean image's logits, no gradient). Where the look moves nothing
    the term is 0, so unlike cross-entropy it never pushes the model to read the look against the label (the
    shortcut learnt in reverse). An empty batch gives 0 (still attached to the graph).
    """
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    return F.relu(log_odds(reference.detach(), labels) - log_odds(logits, labels)).mean()


def contrast_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_con: the label flipped on intervened images (eq. 3), mean over the given rows.

    Binary: BCE(f(x*), 1 − y). Multi-class: −log(1 − softmax(f(x*))_y), computed as softplus of the
    log-odds of y (`log_odds`) so it stays finite when p_y → 1.
    An empty batch gives 0 (still attached to the graph).
    """
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits.squeeze(1), 1 - labels.to(logits.dtype))
    return F.softplus(log_odds(logits, labels)).mean()


def saliency_regulariser(saliency: torch.Tensor,
                         form: Literal["l1", "spread", "positive-spread"] = "l1") -> torch.Tensor:
    """L_reg: how sparse each map is, in one of three forms.

    - ``l1``: mean |s| over every pixel of every map (the paper's ‖s‖₁, per pixel): every piece of
      evidence is charged by its size.
    - ``spread``: mean over maps of ‖s‖₁ / (√N · ‖s‖₂), N the map's pixels (ours): 1 for a map of equal
      magnitude everywhere, 1/√N for a single pixel. Scale-free (a map cannot meet it by shrinking),
      it charges a map for being spread, not for being strong, so evidence spread over the whole
      image (a diffuse cue) costs more than evidence in one place. A map of zeros is left out of the
      mean.
    - ``positive-spread``: the same of the map's positive part (the evidence for the true class, what
      the energy pointing game reads); a map without one is left out.

    Example:
        >>> s = torch.tensor([[[[3.0, -4.0], [0.0, 0.0]]]])
        >>> [round(float(saliency_regulariser(s, f)), 3) for f in ("l1", "spread", "positive-spread")]
        [1.75, 0.7, 0.5]
    """
    if form == "l1":
        return saliency.abs().mean()
    flat = _map_part(saliency, positive=form == "positive-spread").flatten(1)
    squares = flat.pow(2).sum(dim=1)
    counted = (squares > 0).to(flat.dtype)
    l2 = squares.clamp(min=torch.finfo(flat.dtype).tiny).sqrt()  # clamped before the root: a map of zeros gets no NaN
    ratio = flat.sum(dim=1) / (l2 * math.sqrt(flat.shape[1]))
    return _mean_of_counted(ratio, counted)


def outside_evidence(saliency: torch.Tensor, mask: torch.Tensor,
                     form: Literal["evidence", "magnitude", "positive"] = "evidence") -> torch.Tensor:
    """L_out: what a map puts outside its own mask (ours), in one of three forms.

    s is the true-class map (signed), T the mask (a constant here: the term moves the evidence, not
    the mask). A cue spread over the whole image (a site's brightness ramp, a texture) cannot fit
    in a sparse mask, so whatever weight the model gives it shows up outside the mask and is
    penalised; what lies inside the mask, where the lesion should be, is not.

    - ``evidence``: mean over maps of (Σ (1 − T) ⊙ s)², the net evidence outside; positive and
      negative evidence outside may cancel.
    - ``magnitude``: mean over maps of Σ (1 − T) ⊙ |s| / Σ |s|, the share of the map's magnitude
      outside; scale-free (a map cannot meet it by shrinking) and no sign cancels another.
    - ``positive``: the same share of the map's positive part (the evidence for the true class),
      the quantity the energy pointing game reads inside the expert's mask.

    Example:
        >>> s = torch.tensor([[[[2.0, -1.0], [1.0, 0.0]]]]); t = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
        >>> [round(float(outside_evidence(s, t, f)), 3) for f in ("evidence", "magnitude", "positive")]
        [0.0, 0.5, 0.333]
    """
    outside = 1 - mask.detach().to(saliency.dtype)
    if form == "evidence":
        return (outside * saliency).flatten(1).sum(dim=1).pow(2).mean()
    part = _map_part(saliency, positive=form == "positive")
    total = part.flatten(1).sum(dim=1)
    share = (outside * part).flatten(1).sum(dim=1) / total.clamp(min=torch.finfo(part.dtype).tiny)
    counted = (total > 0).to(share.dtype)  # a map with no such part is left out of the mean; none at all: 0
    return _mean_of_counted(share, counted)


def _map_part(saliency: torch.Tensor, *, positive: bool) -> torch.Tensor:
    """The part of a signed map a scale-free form reads: its magnitude |s|, or its positive part max(s, 0)
    (the evidence for the true class), both non-negative."""
    return saliency.clamp(min=0) if positive else saliency.abs()


def _mean_of_counted(values: torch.Tensor, counted: torch.Tensor) -> torch.Tensor:
    """The mean of per-map `values` over the maps `counted` (1.0) marks; 0 when none is, still on the graph.

    Computed without a host sync (no boolean indexing), so it stays off the training step's critical path.
    """
    return (values * counted).sum() / counted.sum().clamp(min=1)


def adversarial_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_ad: the true label kept on x' (eq. 5); the same cross-entropy as L_cls."""
    return classification_loss(logits, labels)


def derangement(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random permutation with no fixed point (j ≠ i for every i): one random cycle through all n.

    Returns the identity for n < 2 (no other image exists; L_ad is then skipped).
    """
    if n < 2:
        return torch.arange(n)
    order = torch.randperm(n, generator=generator)
    perm = torch.empty(n, dtype=torch.long)
    perm[order] = order.roll(-1)  # each image takes the mask of the next one in a random cycle
    return perm


def mask_donors(n: int, pool: torch.Tensor, generator: torch.Generator | None = None, *,
                receivers: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """For L_ad: each receiving row i gets the mask of another image j ≠ i drawn from `pool` (paper eq. 4).

    Args:
        n: Batch size.
        pool: Sorted int64 rows that may lend their mask.
        generator: CPU generator for the draw.
        receivers: Sorted int64 rows L_ad applies to (default: every row).

    When the receivers are the pool (for example every row) the assignment is a derangement of the
    pool (a random permutation without fixed points, so each mask is used once); otherwise each
    receiver draws uniformly from the pool minus itself. Receivers without any other image in the
    pool are left out.

    Returns:
        `(rows, donors)`: int64 tensors of equal length, `donors[k] ≠ rows[k]`.
    """
    pool = pool.cpu()
    receivers = torch.arange(n) if receivers is None else receivers.cpu()
    if pool.numel() >= 2 and torch.equal(pool, receivers):
        return pool.clone(), pool[derangement(pool.numel(), generator)]
    member = torch.zeros(n, dtype=torch.bool)
    member[pool] = True
    choices = pool.numel() - member[receivers].long()  # donors available to each receiver
    served = choices > 0
    rows, choices = receivers[served], choices[served]
    if rows.numel() == 0:
        return rows, rows.clone()
    draw = (torch.rand(rows.numel(), generator=generator) * choices).long()  # index into pool minus self
    place = torch.searchsorted(pool, rows)  # where each row sits (or would sit) in the sorted pool
    skip = member[rows] & (draw >= place)  # step over the row itself
    return rows, pool[draw + skip.long()]


class LossWeights:
    """α, β, γ as fixed numbers or `auto`, plus the CUB-style boost of β (paper section 4.1).

    `auto` scales a term to L_cls's magnitude: its weight is EMA(L_cls) / EMA(L_term), with
    exponential moving averages (momentum `ppi.auto_momentum`) of the detached losses, so every
    auxiliary term contributes about as much as L_cls, which is what the paper describes. The
    ratio is capped at `ppi.auto_max`: L_reg shrinks as training suppresses saliency, and an
    uncapped ratio feeds on that (weights of several thousand were seen on the demo data).

    Args:
        cfg: The recipe's `ppi` section.
    """

    def __init__(self, cfg: PPIConfig) -> None:
        self.cfg = cfg
        self.fixed = {"con": cfg.alpha, "reg": cfg.beta, "ad": cfg.gamma, "keep": cfg.keep,
                      "invariance": cfg.invariance, "delta": cfg.delta}
        self.momentum = cfg.auto_momentum
        self.running: dict[str, float] = {}

    def update(self, losses: Mapping[str, float]) -> None:
        """Fold this step's detached loss values into the running magnitudes."""
        for name, value in losses.items():
            value = abs(float(value))
            if not math.isfinite(value):
                continue
            old = self.running.get(name)
            self.running[name] = value if old is None else self.momentum * old + (1 - self.momentum) * value

    def fade(self, epoch: int) -> float:
        """The share of every PPI term's weight at `epoch` under `ppi.fade_in`: 1/fade_in in the first PPI
        epoch (`ppi.start_epoch`), growing by as much each epoch, 1 from the fade_in-th PPI epoch on."""
        if self.cfg.fade_in <= 1:
            return 1.0
        return min(1.0, max(epoch - self.cfg.start_epoch + 1, 1) / self.cfg.fade_in)

    def weight(self, term: str, epoch: int) -> float:
        """The weight of `con`, `reg`, `ad`, `keep`, `invariance` or `delta` at `epoch`, faded in by `fade`."""
        fixed = self.fixed[term]
        if fixed == "auto":
            cls, own = self.running.get("cls"), self.running.get(term)
            value = 1.0 if cls is None or not own else min(cls / own, self.cfg.auto_max)
        else:
            value = float(fixed)
        return value * self.scale(term, epoch)

    def scale(self, term: str, epoch: int) -> float:
        """What `weight` multiplies a term's own value (fixed or `auto`) by at `epoch`: `ppi.reg_boost` for
        `reg` from `ppi.reg_boost_epoch` on, times `fade`."""
        boost = self.cfg.reg_boost if term == "reg" and epoch >= self.cfg.reg_boost_epoch else 1.0
        return boost * self.fade(epoch)

    def state_dict(self) -> dict[str, float]:
        """The running magnitudes (saved in checkpoints so a resumed run continues exactly)."""
        return dict(self.running)

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        """Restore running magnitudes saved by `state_dict`."""
        self.running = {str(k): float(v) for k, v in state.items()}
