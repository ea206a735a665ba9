# SPDX-License-Identifier: MIT
"""`multiview`: the GA multi-view OCT model (paper appendix E.2, eqs. 11-12; design.md).

Every B-scan goes through one shared backbone to a feature h_k; a slice head (FC, then sigmoid)
gives the slice probability p_k; a 6-d embedding e_k of the B-scan's position is concatenated to
h_k and an FC gives the attention logit a_k. The weights are

    w = softmax(a / (τ + b))                                          (eq. 12, option (a))

with the bias b high at first (near-uniform weights) and attenuated on the recipe's schedule
(`model.multiview.bias_*`, set by the trainer through `set_attention_bias`); b is a buffer, not a
trained parameter (docs/ppi.md says why). The volume probability is Σ_k w_k p_k over the slices
given: K sampled B-scans in training, all of them at inference.

Saliency is per B-scan with respect to the slice logit: take it on `slice_classifier`, which maps
`(N, C, H, W)` B-scans to `(N, 1)` slice logits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ppi_cli.config.recipe import ModelConfig, MultiviewConfig
from ppi_cli.errors import ConfigError
from ppi_cli.models.registry import build_model, register_model
from ppi_cli.models.weights import is_wrapper_state, read_state_dict

__all__ = ["MultiViewModel", "MultiviewOutput", "multiview"]


@dataclass
class MultiviewOutput:
    """What the multi-view model computes for a batch of volumes.

    Attributes:
        slice_logits: `(B, S)` logit of each B-scan (before the slice sigmoid).
        attention: `(B, S)` weights w_k, summing to 1 over each volume's slices.
        probability: `(B,)` volume probability Σ_k w_k p_k.
        logit: `(B, 1)` the same probability as a logit (what `forward` returns).
    """

    slice_logits: torch.Tensor
    attention: torch.Tensor
    probability: torch.Tensor
    logit: torch.Tensor


class MultiViewModel(nn.Module):
    """Shared slice classifier + position-aware attention pooling over B-scans.

    Args:
        slice_classifier: An `ImageClassifier` with one output (the slice logit).
        cfg: The recipe's `model.multiview` section.

    Attributes:
        gradcam_layer: The backbone's last convolutional block, as a name inside this model.
        input_adapt: How a one-channel B-scan meets the backbone's stem.
    """

    kind = "volume"

    def __init__(self, slice_classifier: nn.Module, cfg: MultiviewConfig) -> None:
        super().__init__()
        self.slice_classifier = slice_classifier
        self.position = nn.Embedding(cfg.num_positions, cfg.position_dim)
        self.attention = nn.Linear(slice_classifier.feature_dim + cfg.position_dim, 1)
        self.tau = cfg.tau
        self.num_positions = cfg.num_positions
        self.register_buffer("attention_bias", torch.tensor(float(cfg.bias_start)))
        self.gradcam_layer = f"slice_classifier.{slice_classifier.gradcam_layer}"
        self.first_conv = f"slice_classifier.{slice_classifier.first_conv}"
        self.input_adapt = slice_classifier.input_adapt

    def set_attention_bias(self, value: float) -> None:
        """Set b of eq. 12 (the trainer follows the recipe's schedule)."""
        self.attention_bias.fill_(float(value))

    def views(self, x: torch.Tensor, positions: torch.Tensor) -> MultiviewOutput:
        """Per-slice logits, attention weights and the volume probability.

        Args:
            x: `(B, S, C, H, W)` B-scans, [0, 1] intensities.
            positions: `(B, S)` int64 position ids in `[0, num_positions)`.
        """
        b, s = x.shape[:2]
        if positions.shape != (b, s):
            raise ValueError(f"positions {tuple(positions.shape)} do not match the volumes {tuple(x.shape[:2])}")
        if positions.numel() and int(positions.max()) >= self.num_positions:
            raise ConfigError(f"model.multiview.num_positions: B-scan position {int(positions.max())} is out of "
                              f"range for {self.num_positions} positions",
                              hint="set model.multiview.num_positions to the number of B-scans per volume")
        h = self.slice_classifier.features(x.flatten(0, 1))  # (B*S, F)
        slice_logits = self.slice_classifier.head(h).view(b, s)  # (B, S)
        e = self.position(positions).flatten(0, 1)  # (B*S, 6)
        a = self.attention(torch.cat([h, e.to(h.dtype)], dim=1)).view(b, s)  # (B, S)
        log_w = F.log_softmax(a / (self.tau + self.attention_bias), dim=1)  # (B, S)
        # p = Σ w_k σ(l_k) and 1 - p = Σ w_k σ(-l_k): both in log space, so the logit is exact and finite.
        log_p = torch.logsumexp(log_w + F.logsigmoid(slice_logits), dim=1)  # (B,)
        log_q = torch.logsumexp(log_w + F.logsigmoid(-slice_logits), dim=1)  # (B,)
        return MultiviewOutput(slice_logits=slice_logits, attention=log_w.exp(), probability=log_p.exp(),
                               logit=(log_p - log_q).unsqueeze(1))

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Volume logits `(B, 1)` of `(B, S, C, H, W)` B-scans at `(B, S)` positions."""
        return self.views(x, positions).logit

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the shared CNN (the optimiser's `backbone_lr` group)."""
        return self.slice_classifier.body.parameters()


@register_model("multiview", "GA multi-view OCT model: shared backbone per B-scan, position-aware attention")
def multiview(cfg: ModelConfig) -> nn.Module:
    """The multi-view model on `cfg.backbone` (tiny or inception_v3); `weights` apply to the backbone."""
    if cfg.backbone == "multiview":
        raise ConfigError("model.backbone: multiview cannot be its own backbone", hint="use tiny or inception_v3")
    if cfg.num_classes != 1:
        raise ConfigError(f"model.num_classes: the multiview model is binary (1 logit), got {cfg.num_classes}",
                          hint="set model.num_classes: 1")
    # A wrapper-format weights file is for the whole multiview model: build_model loads it afterwards.

    weights = cfg.weights
    if weights not in ("none", "imagenet") and is_wrapper_state(read_state_dict(weights)):
        weights = "none"
    slice_cfg = dataclasses.replace(cfg, name=cfg.backbone, num_classes=1, weights=weights)
    return MultiViewModel(build_model(slice_cfg), cfg.multiview)
