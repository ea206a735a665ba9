# SPDX-License-Identifier: MIT
"""The pseudo-intervention of a batch: saliency, masks, and the images x* and x' (paper section 3.1).

`pseudo_intervention` runs the saliency method on the clean batch, builds the masks, chooses the
rows and mask donors, and returns an `Intervention` that builds the two intervened sets

    x*_i = (1 − T(s_i)) ⊙ x_i   for the rows L_con applies to      (contrast_images)
    x'_i = (1 − T(s_j)) ⊙ x_i   for the rows L_ad applies to, j ≠ i (adversarial_images)

from the mask or from a stand-in for it (the trainer's memory-saving step, engine/step.py).

L_ad applies to the rows L_con applies to while L_con has a weight (`ppi.adversarial_on: auto`;
binary tasks: the positives), so every intervened image is flipped once (x*) and kept once (x'),
and to every image when α = 0 or the batch has no L_con row (no x*).

Saliency is taken for each sample's true class. A binary head has one logit, the positive class,
so for a negative sample the map is negated (the evidence for class 0 is the evidence against the
positive logit). For the multi-view model saliency and masks are per B-scan, with respect to the
slice logit (`model.slice_classifier`), and L_ad permutes whole volumes, so slice k of volume i
takes the mask of slice k of volume j.

Dropout is switched off while the saliency is computed: it regularises training, it is not part
of the function whose evidence the map shows (and WBP has no rule for it). With `create_graph`
the map is computed under `piecewise_linear_backward` (same map and gradients, cheaper double
back-propagation; see autograd/double_backward.py).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from ppi_cli.autograd.double_backward import piecewise_linear_backward
from ppi_cli.config.recipe import PPIConfig
from ppi_cli.errors import ConfigError
from ppi_cli.ppi.looks import image_look, relooked, swapped_looks
from ppi_cli.ppi.losses import mask_donors
from ppi_cli.ppi.masks import blurred, broadcast_per_sample, budget, dilate, intervene, intervention_mask, top_k_mask
from ppi_cli.ppi.train_modes import dropout_off
from ppi_cli.saliency import saliency_map

__all__ = ["Intervention", "pseudo_intervention", "intervention_from_saliency", "contrast_rows",
           "adversarial_follows_contrast", "true_class_sign", "other_class_donors", "normalised_space_map",
           "missing_lesion_masks", "class_centred", "degraded_lesion_masks",
           "true_class_saliency", "mask_model_saliency", "true_class_map"]


@dataclass
class Intervention:
    """What one pseudo-intervention produced for a batch of B samples.

    Attributes:
        x: The clean batch `(B, C, *spatial)` or `(B, S, C, H, W)`.
        positions: `(B, S)` B-scan positions (volume models), else None.
        saliency: `(N, 1, *spatial)` maps, N = B images or B·S B-scans, true-class sign.
        mask: `(N, 1, *spatial)` T(s) in [0, 1] (in the graph for soft masks with create_graph).
        rows: int64 `(R,)` batch rows L_con applies to.
        ad_rows: int64 `(A,)` batch rows L_ad applies to.
        donors: int64 `(A,)` the image whose mask each of `ad_rows` takes (never the row itself).
        fill: What replaces removed pixels, shaped like `x` (`ppi.fill: blur`), or None for zeros.
        keep_fill: x^k's background where it is not `fill` (`ppi.swap_look`: the donors as they are), or None.
        kept: What x^k keeps inside the mask where it is not `x` (`ppi.swap_look`: `x` in the donor's look), or None.
        base: What x* and x' are made from where it is not `x` (`ppi.look_to: random`: `x` in a drawn look), or None.
        relooked: Each image in the look of an image of the other class (`ppi.invariance`), or None.
        whole: x*, x' and x^k are made from the whole image, not the masked pixels (`ppi.swap_region: image`):
            x* and x' are `fill` throughout, x^k is `kept`; `mask` still says where the looks were not measured.
        fill_from: int64 `(B,)` the batch row each row's `fill` (`ppi.fill: swap`) was taken from, or None.
    """

    x: torch.Tensor
    positions: torch.Tensor | None
    saliency: torch.Tensor
    mask: torch.Tensor
    rows: torch.Tensor
    ad_rows: torch.Tensor
    donors: torch.Tensor
    fill: torch.Tensor | None = None
    keep_fill: torch.Tensor | None = None
    kept: torch.Tensor | None = None
    base: torch.Tensor | None = None
    relooked: torch.Tensor | None = None
    whole: bool = False
    fill_from: torch.Tensor | None = None

    def _swapped(self, mask: torch.Tensor) -> torch.Tensor:
        """The region x*, x' and x^k take from elsewhere: the mask, or every pixel (`whole`)."""
        return torch.ones_like(mask.detach()) if self.whole else mask

    def _source(self, rows: torch.Tensor) -> torch.Tensor:
        return (self.x if self.base is None else self.base)[rows]

    def _fill(self, rows: torch.Tensor) -> torch.Tensor | None:
        return None if self.fill is None else self.fill[rows]

    def _per_sample(self, mask: torch.Tensor) -> torch.Tensor:
        b = self.x.shape[0]
        return mask.view(b, -1, *mask.shape[1:]) if self.positions is not None else mask  # (B, S, 1, H, W)

    def contrast_images(self, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x* of `rows` (eq. 1) and their positions, from `mask` (default: `self.mask`)."""
        m = self._per_sample(self._swapped(self.mask if mask is None else mask))
        pos = self.positions[self.rows] if self.positions is not None else None
        return intervene(self._source(self.rows), m[self.rows], self._fill(self.rows)), pos

    def adversarial_images(self, mask: torch.Tensor | None = None,
                           part: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x' of `ad_rows[part]`, each with its donor's mask (eq. 4), and their positions."""
        m = self._per_sample(self._swapped(self.mask if mask is None else mask))
        rows, donors = self.ad_rows[part], self.donors[part]
        pos = self.positions[rows] if self.positions is not None else None
        return intervene(self._source(rows), m[donors], self._fill(rows)), pos

    def kept_images(self, fill: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """x^k = T ⊙ x + (1 − T) ⊙ fill of `rows` (default every row): each image's own salient region kept, the
        rest `fill` (shaped like `x`); with `kept` (`ppi.swap_look`) the region is taken from it, x in the
        donor's look, instead of from x."""
        keep = 1 - self._per_sample(self._swapped(self.mask.detach()))
        source = self.x if self.kept is None else self.kept
        if rows is None:
            return intervene(source, keep, fill)
        return intervene(source[rows], keep[rows], fill[rows])

    def invariant_images(self, region: str = "outside") -> torch.Tensor:
        """L_inv's images, every row: x with the pixels outside its mask (`region: all`: every pixel) in `relooked`'s
        look; the salient region keeps x's own."""
        if self.relooked is None:
            raise ValueError("this intervention was made without ppi.invariance: no relooked images")
        if region == "all":
            return self.relooked
        return intervene(self.relooked, self._per_sample(self.mask.detach()), self.x)

    @property
    def inputs(self) -> torch.Tensor:
        """x* then x', concatenated: `(R + A, ...)`."""
        return torch.cat([self.contrast_images()[0], self.adversarial_images()[0]])


def contrast_rows(labels: torch.Tensor, binary: bool, contrast_on: str) -> torch.Tensor:
    """Rows L_con applies to: binary tasks the positives (or all), multi-class tasks all rows."""
    if binary and contrast_on == "positives":
        return torch.nonzero(labels > 0.5).flatten()
    return torch.arange(labels.shape[0], device=labels.device)


def pseudo_intervention(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, cfg: PPIConfig, *,
                        binary: bool, positions: torch.Tensor | None = None,
                        generator: torch.Generator | None = None, lesion: torch.Tensor | None = None,
                        mask_model: nn.Module | None = None) -> Intervention:
    """Saliency, masks and intervened images of a clean batch (paper eqs. 1, 4).

    Args:
        model: The unwrapped model (not DDP); for volumes the multi-view model.
        x: `(B, C, *spatial)` images or `(B, S, C, H, W)` volumes, [0, 1].
        labels: `(B,)` float {0, 1} (binary) or int64 class indices.
        cfg: The recipe's `ppi` section (saliency, mask, σ, ω, c, top_k, contrast_on, adversarial_on, create_graph).
        binary: The model has one logit.
        positions: `(B, S)` B-scan positions for volume models.
        generator: CPU generator for the L_ad permutation (seeded by the trainer).
        lesion: The batch's lesion masks, one channel, shaped like `x` (`ppi.mask: lesion` needs them).
        mask_model: The frozen model of `ppi.mask_model`, whose maps give the masks (None: `model`'s).

    Returns:
        An `Intervention`; `saliency` and soft masks keep their graph when `cfg.create_graph`.
    """

    s = true_class_saliency(model, x, labels, cfg, binary=binary, positions=positions, create_graph=cfg.create_graph)
    return intervention_from_saliency(x, labels, s, cfg, binary=binary, positions=positions, generator=generator,
                                      lesion=lesion, mask_saliency=mask_model_saliency(mask_model, x, labels, cfg,
                                                                                       binary=binary,
                                                                                       positions=positions))


def true_class_saliency(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, cfg: PPIConfig, *, binary: bool,
                        positions: torch.Tensor | None, create_graph: bool) -> torch.Tensor:
    """The recipe's saliency map of each image (B-scan) for its sample's true class, `(N, 1, H, W)`."""
    volume = positions is not None
    b = x.shape[0]
    images = x.flatten(0, 1) if volume else x  # (N, C, H, W)
    per_image = images.shape[0] // b  # S B-scans per volume, or 1
    target: torch.Tensor | int = 0 if binary else labels.long()
    explained: nn.Module = model.slice_classifier if volume else model  # type: ignore[assignment]  # a submodule
    cheaper = piecewise_linear_backward() if create_graph else contextlib.nullcontext()
    with dropout_off(explained), cheaper:
        if cfg.saliency_space == "normalised":
            s = normalised_space_map(explained, images, target, method=cfg.saliency, create_graph=create_graph)
        else:
            s = saliency_map(explained, images, target, method=cfg.saliency, create_graph=create_graph)
    return true_class_map(s, labels, per_image) if binary else s


def mask_model_saliency(mask_model: nn.Module | None, x: torch.Tensor, labels: torch.Tensor, cfg: PPIConfig, *,
                        binary: bool, positions: torch.Tensor | None) -> torch.Tensor | None:
    """The maps of `ppi.mask_model` (a frozen model in eval mode) that give the masks, or None without one."""
    if mask_model is None:
        return None
    return true_class_saliency(mask_model, x.detach(), labels, cfg, binary=binary, positions=positions,
                               create_graph=False)


def intervention_from_saliency(x: torch.Tensor, labels: torch.Tensor, saliency: torch.Tensor, cfg: PPIConfig, *,
                               binary: bool, positions: torch.Tensor | None = None,
                               generator: torch.Generator | None = None,
                               lesion: torch.Tensor | None = None,
                               mask_saliency: torch.Tensor | None = None) -> Intervention:
    """Masks, L_con rows and L_ad donors from true-class saliency maps `(N, 1, *spatial)` (eqs. 1, 4).

    With `ppi.mask: lesion` the masks are the batch's `lesion` masks, and with `mask_saliency` (the
    maps of `ppi.mask_model`) they are made from those maps; `saliency` still feeds L_reg.
    """
    b = x.shape[0]
    if cfg.mask == "lesion":
        if lesion is None:
            raise missing_lesion_masks("this data")
        mask = lesion.reshape(saliency.shape).to(saliency.device, saliency.dtype)
    else:
        s = saliency if mask_saliency is None else mask_saliency.to(saliency.dtype)
        if cfg.map_centre == "batch":
            s = class_centred(s, labels, s.shape[0] // b)
        if cfg.map_sign == "magnitude":
            s = s.abs()
        if cfg.map_smooth > 0:
            s = blurred(s, cfg.map_smooth)
        if cfg.map_highpass > 0:  # the local excess of the map over its smooth level (2-D maps)
            s = s - blurred(s, cfg.map_highpass)
        mask = intervention_mask(s, cfg.mask, sigma=cfg.sigma, omega=cfg.omega, c=cfg.c, top_k=cfg.top_k,
                                 spread=cfg.box_spread, coverage=cfg.coverage)
    mask = dilate(mask, cfg.dilate)
    if cfg.mask == "lesion":
        mask = degraded_lesion_masks(mask, saliency, cfg, generator)
    if not cfg.create_graph:
        mask = mask.detach()
    rows = contrast_rows(labels, binary, cfg.contrast_on)
    every = torch.arange(b)
    receivers = rows.cpu() if adversarial_follows_contrast(cfg) and rows.numel() else every  # no x*: L_ad on all
    pool = rows.cpu() if cfg.adversarial_masks == "contrast" else every
    ad_rows, donors = mask_donors(b, pool, generator, receivers=receivers)
    if ad_rows.numel() == 0:  # the pool had no image but the receivers' own: every image lends its mask
        ad_rows, donors = mask_donors(b, every, generator, receivers=receivers)
    fill = keep_fill = kept = base = fill_from = None
    if cfg.fill == "blur":
        images = x.flatten(0, 1) if positions is not None else x  # (N, C, H, W)
        fill = blurred(images.detach(), cfg.fill_sigma).view_as(x)
    elif cfg.fill == "swap":
        fill_from = other_class_donors(labels, generator).to(x.device)
        fill = x.detach()[fill_from]
        if cfg.swap_look != "none":
            outside = 1 - mask.detach() if cfg.look_from == "outside" else None
            if cfg.look_to == "random":  # every intervened image of a row in the look of one drawn image
                drawn = x.detach()[torch.randint(b, (b,), generator=generator).to(x.device)]
                look = image_look(drawn.flatten(0, -4), cfg.swap_look, cfg.look_sigma, outside, cfg.look_level)
                base, fill = (relooked(t, look, cfg.swap_look, cfg.look_sigma, outside, cfg.look_level)
                              for t in (x.detach(), fill))
                keep_fill, kept = fill, base
            else:
                keep_fill = fill
                fill, kept = swapped_looks(x.detach(), fill, cfg.swap_look, cfg.look_sigma, outside, cfg.look_level)
    other_look = None  # x in the look of an image of the other class, for L_inv
    if cfg.invariance > 0:
        if kept is not None and cfg.look_to == "own":
            other_look = kept  # x in its swap donor's look, an image of the other class
        else:
            donor = x.detach()[other_class_donors(labels, generator).to(x.device)]
            kind = "blur" if cfg.swap_look == "none" else cfg.swap_look
            other_look = relooked(x.detach(), image_look(donor.flatten(0, -4), kind, cfg.look_sigma,
                                                         level=cfg.look_level),
                                  kind, cfg.look_sigma, level=cfg.look_level)
    return Intervention(x=x, positions=positions, saliency=saliency, mask=mask, rows=rows,
                        ad_rows=ad_rows.to(x.device), donors=donors.to(x.device), fill=fill, keep_fill=keep_fill,
                        kept=kept, base=base, relooked=other_look,
                        whole=cfg.fill == "swap" and cfg.swap_region == "image", fill_from=fill_from)


def class_centred(saliency: torch.Tensor, labels: torch.Tensor, per_image: int = 1) -> torch.Tensor:
    """Each map `(N, 1, *spatial)` minus the mean map of the batch's images of its class (`ppi.map_centre: batch`).

    What every image of a class shows at the same place (a site's brightness ramp, its stripes)
    cancels; what one image shows at a place of its own (a lesion) stands out. A class with a single
    image in the batch keeps its map as it is (its mean is itself). `labels` `(B,)` are per sample,
    `per_image` maps per sample (B-scans per volume, else 1).
    """
    y = labels.detach().to(saliency.device).repeat_interleave(per_image)  # (N,)
    out = saliency.clone()
    for value in torch.unique(y):
        members = y == value
        if int(members.sum()) > 1:
            out[members] = saliency[members] - saliency[members].mean(dim=0, keepdim=True)
    return out


def degraded_lesion_masks(mask: torch.Tensor, saliency: torch.Tensor, cfg: PPIConfig,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """Lesion masks made worse on purpose, to measure how good a saliency mask must be (`ppi.mask: lesion`).

    `ppi.lesion_drop` removes that share of the mask's pixels at random (a mask that finds part of
    the lesion: lower recall, no false pixel); `ppi.lesion_extra` adds that share of each image's
    pixels, the largest values of its saliency map (the map's own false positives: lower precision).
    """
    if cfg.lesion_drop > 0:
        kept = torch.rand(mask.shape, generator=generator) >= cfg.lesion_drop  # on the CPU generator
        mask = mask * kept.to(mask.device, mask.dtype)
    if cfg.lesion_extra > 0:
        mask = torch.maximum(mask, top_k_mask(saliency, budget(saliency, 0, cfg.lesion_extra)).to(mask.dtype))
    return mask


def missing_lesion_masks(source: object) -> ConfigError:
    """The one-line refusal of `ppi.mask: lesion` on data (`source`, a cache folder) without lesion masks."""
    return ConfigError(f"ppi.mask: lesion needs lesion masks, and {source} has none",
                       hint="prepare the cache from a manifest with mask_path, or choose another ppi.mask")


class _AfterPreprocess(nn.Module):
    """An image classifier from its normalised input on: `head(body(z))`, z = `preprocess(x)`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.body: nn.Module = model.body  # type: ignore[assignment]  # an ImageClassifier's parts
        self.head: nn.Module = model.head  # type: ignore[assignment]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(z))


def normalised_space_map(model: nn.Module, images: torch.Tensor, target: torch.Tensor | int, *, method: str,
                         create_graph: bool) -> torch.Tensor:
    """The saliency map with respect to the network's normalised input z = (x − mean) / std, `(N, 1, H, W)`.

    For WBP, whose map is the input times its back-propagated weights, this is (x − mean) ⊙ ∂z/∂x
    where the input-space map is x ⊙ ∂z/∂x: dark pixels (below the mean) carry evidence too. Where
    the network resizes its input, the map is resized back to the image (bilinear).

    Raises:
        ConfigError: The model has no `preprocess`/`body`/`head` (not an `ImageClassifier`).
    """
    if not all(hasattr(model, name) for name in ("preprocess", "body", "head")):
        raise ConfigError(f"ppi.saliency_space: normalised needs an image classifier with preprocess, body and "
                          f"head; {type(model).__name__} has not", hint="set ppi.saliency_space: input")
    preprocess: nn.Module = model.preprocess  # type: ignore[assignment]  # checked above
    z = preprocess(images)  # (N, stem channels, S, S); buffers only, so no parameter in its graph
    s = saliency_map(_AfterPreprocess(model), z, target, method=method, create_graph=create_graph)
    if s.shape[-2:] != images.shape[-2:]:
        s = torch.nn.functional.interpolate(s, size=images.shape[-2:], mode="bilinear", align_corners=False)
    return s


def other_class_donors(labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """`(B,)` int64: for each row, a random row of another class (the `swap` fill's source image).

    A row whose class is the only one in the batch draws from the other rows, and a batch of one
    row gets itself. Binary labels are float {0, 1}, multi-class ones int64 indices.
    """
    y = labels.detach().cpu()
    n = y.numel()
    draw = torch.rand(n, generator=generator)  # one uniform per row, whatever the batch holds
    donors = torch.empty(n, dtype=torch.int64)
    rows = torch.arange(n)
    for i in range(n):
        pool = rows[y != y[i]]
        if pool.numel() == 0:
            pool = rows[rows != i] if n > 1 else rows
        donors[i] = pool[int(draw[i] * pool.numel())]
    return donors


def adversarial_follows_contrast(cfg: PPIConfig) -> bool:
    """L_ad applies to the L_con rows (`ppi.adversarial_on`; `auto`: while L_con has a weight)."""
    if cfg.adversarial_on == "auto":
        return cfg.alpha != 0
    return cfg.adversarial_on == "contrast"


def true_class_sign(labels: torch.Tensor, per_image: int = 1) -> torch.Tensor:
    """`(N,)` +1 for positives, −1 for negatives: a one-logit head's map turned into true-class evidence."""
    return (2 * labels.float() - 1).repeat_interleave(per_image)


def true_class_map(saliency: torch.Tensor, labels: torch.Tensor, per_image: int = 1) -> torch.Tensor:
    """A one-logit head's maps `(N, 1, *spatial)` as evidence for each sample's true class (negated for negatives)."""
    sign = true_class_sign(labels, per_image).to(saliency.dtype)
    return saliency * broadcast_per_sample(sign, saliency)
