# SPDX-License-Identifier: MIT
"""Recipes: one YAML per experiment, loaded into a frozen, typed `Recipe`.

A recipe has the sections `model`, `data`, `ppi`, `optim`, `schedule`, `eval` and `seed`, and may
`extends:` another recipe (a bundled name or a path relative to the file) so that the paper's
variants differ only where they differ. Every field below carries its default and the reason for
it; values the paper does not give are marked "our decision" (see docs/ppi.md and docs/recipes.md).
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from ppi_cli.config.checks import check_recipe
from ppi_cli.config.loader import build, param, read_yaml, to_dict
from ppi_cli.config.resources import bundled_dir
from ppi_cli.errors import ConfigError

__all__ = [
    "ModelConfig", "MultiviewConfig", "DataConfig", "PPIConfig", "OptimConfig", "ScheduleConfig", "EvalConfig",
    "Recipe", "load_recipe", "resolve_recipe_path", "list_recipes", "apply_overrides", "SELECT_CHOICES", "NULL",
    "override_value", "select_choices",
]

Weight = float | Literal["auto"]


@dataclass(frozen=True)
class MultiviewConfig:
    """The GA multi-view model (paper appendix E.2; design.md)."""

    slices_per_volume: int = param(8, "K B-scans sampled per volume in training (paper: not recovered; ours).", min=1)
    position_dim: int = param(6, "Size of the B-scan position embedding (paper: six).", min=1)
    num_positions: int = param(100, "Number of position ids (B-scans per cached volume).", min=1)
    tau: float = param(0.1, "Attention softmax temperature τ ('a small value'; ours).", min=1e-6)
    bias_start: float = param(5.0, "Initial attention bias b: high, so early weights are near uniform.", min=0)
    bias_end: float = param(0.0, "Value b is attenuated to ('a small number').", min=0)
    bias_epochs: int = param(10, "Epochs over which b decays linearly from bias_start to bias_end.", min=0)


@dataclass(frozen=True)
class ModelConfig:
    """Which network, how its input is adapted, and where its weights come from."""

    name: str = param("tiny", "Model: tiny, vgg11, vgg11_bn, inception_v3, multiview, or torchvision:NAME, "
                              "timm:NAME, monai:NAME, module.path:factory (docs/recipes.md).")
    backbone: str = param("tiny", "Backbone of the multiview model (tiny or inception_v3); ignored otherwise.")
    weights: str = param("none", "Initial weights: none, imagenet, or a path to a state dict / ppi checkpoint.")
    in_channels: int = param(1, "Channels of the images in the cache (1 for CT and OCT, 3 for photos).", min=1)
    num_classes: int = param(1, "Outputs: 1 means a binary task with one logit per sample.", min=1)
    input_size: int = param(128, "Side of the square image the network is fed, after resizing.", min=8)
    input_adapt: Literal["sum", "repeat"] = param(
        "sum", "How a 1-channel image meets a 3-channel stem: sum the stem's kernels, or repeat the grey channel.")
    dropout: float = param(0.5, "Dropout before the classifier head.", min=0, max=1)
    tiny_blocks: int = param(3, "Conv blocks of the tiny backbone, a 2x max-pool between each: 3 see 18 px of "
                                "its input, 4 see 38 px (ours; docs/ppi.md). Ignored by other models.", min=2, max=6)
    tiny_norm: Literal["batch", "group"] = param(
        "batch", "Normalisation in the tiny backbone's blocks: batch (batch statistics in training, running ones "
                 "in evaluation) or group (GroupNorm, 8 channels a group: each image normalised by its own "
                 "statistics, one function in training and evaluation; ours, docs/ppi.md). Ignored by other models.")
    multiview: MultiviewConfig = param(default_factory=MultiviewConfig, help="Multiview model settings.")


@dataclass(frozen=True)
class DataConfig:
    """Which cache, and how samples are read and augmented at training time."""

    dataset: Literal["lidc", "ga", "folder", "table", "synthetic"] = param(
        "synthetic", "Kind of cache the recipe trains on.")
    cache: str = param("", "Cache folder; empty means the workspace default for the dataset.")
    batch_size: int = param(32, "Samples per batch (volumes for the multiview model).", min=1)
    num_workers: int = param(0, "DataLoader worker processes (0 = in the main process).", min=0)
    crop: int = param(128, "Training crop side in cache pixels (LIDC: 128 of 180, Kohl et al.).", min=8)
    window: tuple[float, float] = param((-1000.0, 400.0), "Intensity window [low, high] mapped to [0, 1] (HU for CT).")
    flips: bool = param(True, "Random horizontal (and, for CT, vertical) flips in training.")
    rotation: float = param(20.0, "Random rotation range in degrees, ± (LoTeNet: 20).", min=0, max=180)
    noise_std: float = param(0.0, "Std of additive Gaussian noise in training, on [0, 1] intensities.", min=0)
    blur: float = param(0.0, "GA volumes: blur each training volume's B-scans with a Gaussian of std drawn "
                        "uniformly from [0, blur] pixels (ours; 0: off), a scanner's softer focus, so a site's "
                        "blur does not read as a lesion (docs/ppi.md).", min=0)
    gain: float = param(0.0, "GA volumes: multiply each training volume by a gain drawn log-uniformly from "
                        "[1/(1 + gain), 1 + gain] (ours; 0: off), a scanner's overall brightness, so a cue that "
                        "shifts it (a ramp that raises a volume's top percentile, which prepare maps to 1) is "
                        "not read as GA (docs/ppi.md).", min=0)
    val_fraction: float = param(0.2, "Share of the training subjects held out for validation / model selection.",
                                min=0, max=0.9)
    synthetic_size: int = param(256, "Samples in the generated in-memory dataset (dataset: synthetic).", min=8)
    synthetic_slices: int = param(0, "dataset: synthetic: 0 gives images; n > 0 gives volumes of n B-scans "
                                  "(for the multiview model).", min=0)


# the pairs of levels `ppi.look_level: select` may choose between (`ppi.look_choices`)
LOOK_CHOICES: dict[str, tuple[str, ...]] = {"swap-keep": ("swap", "keep"), "keep-top": ("keep", "top")}
# the PPI fields a recipe may set to `select`, a choice between whole runs, and every choice a select of each may
# train (`select_choices`: what one recipe's select trains, in order; a tie keeps the first)
SELECT_CHOICES: dict[str, tuple[str, ...]] = {
    "intervened_norm": ("running", "clean"),
    "look_level": tuple(dict.fromkeys(level for pair in LOOK_CHOICES.values() for level in pair)),
}


@dataclass(frozen=True)
class PPIConfig:
    """Proactive Pseudo-Intervention: saliency, masks and the four loss terms (paper eqs. 1-5)."""

    enabled: bool = param(True, "Train with PPI; false gives the plain classification baseline.")
    saliency: str = param("wbp", "Saliency method: wbp, gradient, gradcam or lrp-*.")
    mask: Literal["soft", "soft-adaptive", "hard", "box", "top-k", "lesion"] = param(
        "soft", "Intervention mask: soft (fixed σ, or per image at the coverage quantile), soft-adaptive "
        "(σ = mean + c·std), hard (s > c·std), box, top-k (exactly top_k, or coverage × pixels, per image), or "
        "lesion: the data's own lesion masks instead of the saliency's, an upper bound that shows what PPI does "
        "when its masks find the lesion exactly (needs a cache with lesion masks; docs/ppi.md).")
    saliency_space: Literal["input", "normalised"] = param(
        "input", "Where the training map is taken: input, the [0, 1] intensities the data holds (a black pixel "
        "can never be salient, a saturated one is favoured), or normalised, the network's own input after its "
        "mean/std normalisation (the map then resized to the image where the network resizes; ours; docs/ppi.md).")
    map_highpass: float = param(0.0, "Masks from the map minus its Gaussian blur of this std in pixels (ours; 0: off): "
                                "evidence spread over the image (a site's ramp) has no local excess, a compact lesion "
                                "has, so the mask prefers the lesion (docs/ppi.md).", min=0)
    lesion_drop: float = param(0.0, "With mask: lesion, drop this share of the lesion masks' pixels at random (ours; a "
                               "measurement: how much of the lesion a mask may miss; docs/ppi.md).", min=0, max=1)
    lesion_extra: float = param(0.0, "With mask: lesion, add this share of each image's pixels, its saliency map's "
                                "largest (ours; a measurement: how many false pixels a mask may hold; docs/ppi.md).",
                                min=0, max=1)
    mask_model: str = param(
        "", "A ppi checkpoint whose maps give the masks instead of the model being trained (ours; empty: the model "
        "itself): a converged, frozen model's maps, while a fresh model learns from the first PPI epoch; the maps "
        "of the model in training still feed L_reg (docs/ppi.md).")
    map_centre: Literal["none", "batch"] = param(
        "none", "Masks from each map minus the mean map of the batch's images of its class (ours; none: off): "
        "evidence every image of a class carries at the same place (a site's ramp or stripes) cancels, evidence "
        "at a place of the image's own (a lesion) stays (docs/ppi.md).")
    map_sign: Literal["evidence", "magnitude"] = param(
        "evidence", "Which values of the (centred) map masks take: evidence, the largest evidence for the true "
        "class; or magnitude, the largest evidence either way, so a lesion the model reads against the class (its "
        "map there negative) is masked too (ours; docs/ppi.md).")
    map_smooth: float = param(0.0, "Masks from the map blurred with a Gaussian of this std in pixels (ours; 0: off), "
                              "after map_centre: a mask then takes a compact region of evidence rather than scattered "
                              "pixels (docs/ppi.md).", min=0)
    dilate: int = param(0, "Grow every mask by this many pixels (a square neighbourhood; ours): a mask on part of "
                        "a compact lesion then covers more of it (docs/ppi.md).", min=0)
    sigma: float = param(0.5, "Soft-mask threshold σ on max-normalised saliency (paper: not recovered; ours).")
    omega: float = param(20.0, "Soft-mask sigmoid steepness ω (paper: not recovered; ours).", min=0)
    c: float = param(1.0, "Multiplier of the saliency std for the adaptive, hard and box masks (ours).", min=0)
    top_k: int = param(0, "Keep only the top-k saliency points before masking (CUB: 1000); 0 keeps all. The "
                       "budget of the top-k mask.", min=0)
    coverage: float = param(0.0, "Share of each image's pixels a mask removes: the budget of the top-k mask (without "
                            "top_k) and, when > 0, the soft mask's per-image σ (ours; docs/ppi.md).", min=0, max=1)
    fill: Literal["zero", "blur", "swap"] = param(
        "zero", "What replaces a removed pixel in x* and x': zero (the paper's eq. 1), blur, the image's own "
        "Gaussian blur (std fill_sigma), which keeps its low-frequency look and drops the detail, or swap, the same "
        "pixel of an image of the other class in the batch, so x* is a positive's salient region over a negative "
        "and x^k (ppi.keep) the positive's region pasted onto the negative (ours; docs/ppi.md).")
    swap_look: Literal["none", "blur", "columns"] = param(
        "none", "With fill: swap, carry each image's look with it (ours; none: off): the donor's pixels fill x* in "
        "the positive's look and x^k's pasted region takes the donor's, so a site effect stays with its image. The "
        "look is the image's Gaussian blur (blur, std look_sigma: a smooth gain ramp) or its column profile "
        "(columns, the mean over rows of each column, an OCT A-scan's gain: a ramp or column stripes; docs/ppi.md).")
    look_sigma: float = param(8.0, "Std in pixels of the blur that is an image's look (ppi.swap_look: blur; ours).",
                              min=0.1)
    look_level: Literal["swap", "keep", "top", "select"] = param(
        "swap", "With swap_look, whether a look carries its image's overall brightness: swap, the look as it is, so "
        "an image put in another's look takes its brightness too; keep, the look divided by its mean, so only its "
        "shape moves (a ramp's slope, stripes) and each image keeps its own brightness; top, keep's look with each "
        "image then scaled so its 99.5th percentile stays where it was, as prepare's percentile normalisation leaves "
        "every image (a look that brightens columns beyond the data's range reads as GA's hypertransmission, "
        "docs/ppi.md); or select: train with each of the two levels of look_choices (swap and keep unless it says "
        "otherwise) and keep the run the validation split ranks higher under eval.select (twice the training; "
        "ours; docs/ppi.md).")
    look_choices: Literal["swap-keep", "keep-top"] = param(
        "swap-keep", "With look_level: select, the two levels it trains and chooses between: swap-keep, or keep-top "
        "(ours), the look's shape with or without each image scaled back to its 99.5th percentile, so a run at a "
        "site whose cue shifts the prepared volume's brightness can take top while runs elsewhere keep keep "
        "(docs/ppi.md).")
    look_from: Literal["image", "outside"] = param(
        "image", "With swap_look, the pixels an image's look is taken from: the whole image, or outside the mask "
        "being swapped (ours), so the lesion the mask holds does not enter the look: a GA lesion brightens whole "
        "A-scans, and a column look taken over it would move the lesion's columns with the look (docs/ppi.md).")
    look_to: Literal["own", "random"] = param(
        "own", "With swap_look, the look the intervened images are given: own, the look of the image each pixel "
        "came from (x* and x' in x's, x^k in the donor's, so each counterfactual's look goes with the class its "
        "label is not), or random, one look per row from an image of the batch drawn whatever its class, so the "
        "look of x*, x' and x^k says nothing of their labels (ours; docs/ppi.md).")
    swap_region: Literal["mask", "image"] = param(
        "mask", "With fill: swap, what is swapped: the masked pixels (mask), or the whole image (image, ours): x* is "
        "the donor in x's look and x^k is x in the donor's look, so the content goes with its label and the look "
        "with the other class; the mask then only says where the looks are not measured (look_from: outside), so a "
        "lesion does not enter them (docs/ppi.md).")
    counterfactual_loss: Literal["ce", "hinge"] = param(
        "ce", "With swap_region: image, what x* and x^k are trained with: ce, cross-entropy towards their labels "
        "(x* no GA, x^k GA), which keeps pushing however sure the model already is; or hinge (ours): each is held "
        "to the score of its content as it is, the clean image's log-odds of the same label, and costs nothing "
        "where the look does not lower it (docs/ppi.md).")
    counterfactual_gate: float = param(
        0.0, "The counterfactuals made from an image (x* and x^k) count only while the model gives that image its "
        "own label with at least this probability (the clean image, no gradient), so they test a reading the model "
        "has and do not pull against one it is still learning; 0: off (ours; docs/ppi.md).", min=0, max=1)
    fill_sigma: float = param(4.0, "Std in pixels of the blur fill (ours).", min=0.1)
    box_spread: float = param(2.0, "Box mask half-size in stds of the kept points' coordinates (paper: not "
                              "recovered; ours: ≥ 50% of the points inside by the union bound).", min=0)
    contrast_on: Literal["positives", "all"] = param(
        "positives", "Binary tasks: apply L_con to positive samples only (clinically meaningful) or to all.")
    adversarial_on: Literal["auto", "contrast", "all"] = param(
        "auto", "L_ad: the rows it applies to: those L_con applies to (contrast; binary: the positives), so each "
        "intervened image is once flipped (x*) and once kept (x'); every image (all); or auto: contrast while L_con "
        "has a weight, all when alpha is 0 (ours; docs/ppi.md).")
    adversarial_masks: Literal["contrast", "all"] = param(
        "all", "L_ad: which images lend their masks: those L_con applies to (binary: positives), or all.")
    alpha: Weight = param(1.0, "Weight of L_con, or 'auto' to match L_cls's running magnitude.", min=0)
    beta: Weight = param(0.1, "Weight of L_reg (mean |s|), or 'auto'.", min=0)
    gamma: Weight = param(1.0, "Weight of L_ad, or 'auto'.", min=0)
    keep: float = param(0.0, "Weight of L_keep (ours, off by default): the true label on x^k = T ⊙ x + (1 − T) ⊙ "
                        "blur(x), each image's salient region kept and the rest smoothed (std fill_sigma): a "
                        "fine-grained cue outside the mask is gone from x^k, the lesion inside is not (docs/ppi.md).",
                        min=0)
    invariance: float = param(0.0, "Weight of L_inv (ours, off by default): each image with the pixels outside its "
                              "mask put in the look (swap_look; blur when none) of an image of the other class must be "
                              "classified as the image itself is (its own prediction, held fixed), so a cue carried by "
                              "the look is penalised whichever way the model reads it (docs/ppi.md).", min=0)
    invariance_region: Literal["outside", "all"] = param(
        "outside", "With invariance, what L_inv changes the look of: the pixels outside the mask (the salient region "
        "keeps its own), or the whole image, no mask (ours).")
    delta: float = param(0.0, "Weight of L_out (ours, off by default): what each map puts outside its own mask, in the "
                         "form out_form names, which a diffuse cue cannot avoid (docs/ppi.md).", min=0)
    out_form: Literal["evidence", "magnitude", "positive"] = param(
        "evidence", "What L_out penalises outside each map's own mask (ours): the squared net evidence, which "
        "positive and negative evidence may cancel, or the share of the map's magnitude or of its positive part "
        "(scale-free, no cancelling; docs/ppi.md).")
    out_coverage: float = param(
        0.0, "L_out's own mask (ours; 0: the intervention's mask): each map's top share of pixels by its positive "
        "part (the evidence for the true class), blurred by map_smooth, so a lesion-sized region holds the map "
        "while the intervention keeps its own mask (docs/ppi.md).", min=0, max=1)
    auto_momentum: float = param(0.9, "Momentum of the running loss magnitudes that 'auto' weights use (ours).",
                                 min=0, max=0.999)
    auto_max: float = param(100.0, "Cap on an 'auto' weight (ours): a term the model drives towards zero, such as "
                            "L_reg, would otherwise get an ever larger weight and take over training.", min=0)
    reg_form: Literal["l1", "spread", "positive-spread"] = param(
        "l1", "The form of L_reg: the paper's mean |s|, or how evenly each map's magnitude (spread) or positive "
        "part (positive-spread) is spread, ‖s‖₁ / (√N ‖s‖₂), which charges a map for being spread rather than "
        "for being strong (ours; docs/ppi.md).")
    reg_boost: float = param(1.0, "Factor on β from reg_boost_epoch on (CUB: ×100 after epoch 20).", min=0)
    reg_boost_epoch: int = param(0, "Epoch from which reg_boost applies.", min=0)
    start_epoch: int = param(0, "Warm-up: PPI losses join from this epoch on.", min=0)
    fade_in: int = param(0, "Epochs over which every PPI term's weight (α, β, γ, keep, invariance, delta) grows "
                         "linearly to its full value from start_epoch on: 1/fade_in of it in the first PPI epoch, all "
                         "of it from the fade_in-th; 0 or 1: full from the first (ours; docs/ppi.md).", min=0)
    fallback_drop: float | None = param(
        None, "Collapse guard (ours): when the kept PPI epoch's validation metric (eval.metric) is more than this "
        "below the best warm-up epoch's, the PPI model is rejected: the same recipe trains without PPI in "
        "<run>/baseline-fallback/, its best.pt becomes the run's, and the run says so (train.log, "
        "ppi-rejected.json, a flag on its cells and folds); null: off. Needs start_epoch > 0 (docs/ppi.md).", min=0)
    fallback_against: Literal["warmup", "baseline"] = param(
        "warmup", "What fallback_drop measures the kept PPI epoch against (ours): the best warm-up epoch of the "
        "same run, or the recipe trained without PPI on the same split and seed, which then trains on every run "
        "(in <run>/baseline-fallback/) and is kept when PPI validates more than fallback_drop below it: a PPI "
        "model is only kept where it reads its own site's validation split as well as the baseline does "
        "(docs/ppi.md).")
    fallback_fit: float | None = param(
        None, "The collapse guard's second rule (ours), with fallback_drop set and fallback_against: baseline: the "
        "PPI model is also rejected when its classification loss on the training images (metrics.csv's train_cls), "
        "averaged over the last ten epochs, is more than this above that of the recipe trained without PPI on the "
        "same split and seed, which then takes its place: PPI's terms kept the classifier from fitting its own "
        "site, which a small validation split can miss; null: off, as is the whole guard with fallback_drop null "
        "(docs/ppi.md).", min=0)
    create_graph: bool = param(True, "Differentiate through the saliency map (needed for L_reg to train θ).")
    map_from: Literal["auto", "separate"] = param(
        "auto", "Where the WBP map comes from (ours): auto takes it from L_cls's own backward where that is exact "
        "(binary head, no batch-statistics norm; the map then includes the step's dropout masks), else a separate "
        "saliency pass with dropout off; separate always runs that pass (docs/ppi.md).")
    intervened_norm: Literal["running", "batch", "frozen", "clean", "clean-grad", "select"] = param(
        "running", "Batch norm on the intervened images x*, x': the running statistics of clean images (as at test "
        "time), the intervened batch's own, or frozen: from start_epoch on the whole PPI step, clean images "
        "included, uses the running statistics and leaves them as they are, so L_cls, L_con and L_ad train the "
        "function the model has at test time, or clean: the statistics of the clean batch L_cls is normalised "
        "with, so L_cls and the intervened terms train one function, not one each, or clean-grad: the same "
        "statistics with the intervened terms' gradient passing through them as L_cls's passes through its "
        "batch's (as constants they let those terms grow the weights, which slows learning; docs/ppi.md), or "
        "select: train with running "
        "and with clean and keep the run the validation split ranks higher under eval.select (twice the "
        "training; ours; docs/ppi.md).")


def select_choices(ppi: PPIConfig, field: str) -> tuple[str, ...]:
    """The choices `ppi.<field>: select` trains, in order (a tie keeps the first): the pair `ppi.look_choices` names
    for the look level, all of SELECT_CHOICES for the rest."""
    return LOOK_CHOICES[ppi.look_choices] if field == "look_level" else SELECT_CHOICES[field]


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser; the GA model uses separate groups for the backbone and the heads."""

    name: Literal["sgd", "adam", "adamw"] = param("adam", "Optimiser.")
    lr: float = param(1e-3, "Learning rate (of the heads when backbone_lr is set).", min=0)
    backbone_lr: float | None = param(None, "Separate learning rate for the backbone; null uses lr.", min=0)
    momentum: float = param(0.9, "SGD momentum.", min=0, max=1)
    weight_decay: float = param(0.0, "Weight decay.", min=0)


@dataclass(frozen=True)
class ScheduleConfig:
    """Epochs and the step learning-rate schedule."""

    epochs: int = param(10, "Training epochs.", min=1)
    step_size: int = param(30, "Multiply the learning rate by `factor` every step_size epochs (paper VGG: 30).",
                           min=1)
    factor: float = param(0.1, "Learning-rate decay factor (paper VGG: 0.1).", min=0, max=1)
    backbone_step_size: int | None = param(None, "Step size for the backbone group; null uses step_size.", min=1)
    amp: bool = param(True, "Mixed precision on CUDA (ignored on CPU).")
    channels_last: bool = param(True, "channels_last memory format on CUDA (ignored on CPU).")
    channels_last_cpu: bool = param(False, "channels_last on the CPU too: Inception_v3's steps measured 1.04-1.4x "
                                    "faster (docs/benchmarks.md); off by default.")


@dataclass(frozen=True)
class EvalConfig:
    """How runs are scored and studies are split."""

    metric: Literal["auc", "accuracy"] = param("auc", "Model-selection metric on the validation split.")
    select: Literal["metric", "loss", "last"] = param(
        "metric", "The epoch best.pt keeps: the best validation metric (ties: the lower validation loss), the lowest "
        "validation loss (ties: the better metric), or the last epoch.")
    select_on: Literal["clean", "looks"] = param(
        "clean", "The validation images eval.select ranks epochs on: clean, the validation split as it is, or looks: "
        "those and each of them again in the look (ppi.swap_look, ppi.look_sigma) of a validation image of another "
        "class, metric and loss over both, so a model that reads the look, either way round, loses on one half "
        "(ours; the operating threshold is still chosen on the clean images).")
    folds: int = param(5, "Cross-validation folds (paper: 5).", min=2)
    bootstrap: int = param(2000, "Bootstrap resamples for confidence intervals.", min=0)
    holdout_fraction: float = param(0.2, "Cross-site: share of the training site's subjects held out.", min=0.05,
                                    max=0.9)


@dataclass(frozen=True)
class Recipe:
    """One experiment. Sections map one-to-one onto the YAML file."""

    name: str = param("", "Short name of the experiment (defaults to the file name).")
    description: str = param("", "One sentence on what the experiment is.")
    seed: int = param(0, "Seed for splits, initialisation and augmentation.", min=0)
    model: ModelConfig = param(default_factory=ModelConfig, help="Model section.")
    data: DataConfig = param(default_factory=DataConfig, help="Data section.")
    ppi: PPIConfig = param(default_factory=PPIConfig, help="PPI section.")
    optim: OptimConfig = param(default_factory=OptimConfig, help="Optimiser section.")
    schedule: ScheduleConfig = param(default_factory=ScheduleConfig, help="Schedule section.")
    eval: EvalConfig = param(default_factory=EvalConfig, help="Evaluation section.")

    def replace(self, **overrides: Any) -> Recipe:
        """A copy with dotted-key overrides applied and re-validated (`{"optim.lr": 0.1}`)."""
        return apply_overrides(self, overrides)


def list_recipes() -> list[str]:
    """Names of the bundled recipes."""
    return sorted(p.stem for p in bundled_dir("recipes").glob("*.yaml"))


def resolve_recipe_path(ref: str | Path, relative_to: Path | None = None) -> Path:
    """A recipe file from a path (absolute, relative to `relative_to` or the cwd) or a bundled name."""
    ref_path = Path(ref)
    candidates = [ref_path] if ref_path.is_absolute() else [
        *([relative_to / ref_path] if relative_to else []), ref_path]
    for cand in candidates:
        if cand.is_file():
            return cand
    name = ref_path.name if ref_path.suffix in (".yaml", ".yml") else f"{ref_path.name}.yaml"
    bundled = bundled_dir("recipes") / name
    if bundled.is_file() and len(ref_path.parts) == 1:
        return bundled
    close = difflib.get_close_matches(Path(name).stem, list_recipes(), n=3, cutoff=0.6)
    guess = f"did you mean {' or '.join(close)}? " if close else ""
    raise ConfigError(f"recipe '{ref}': no such file or bundled recipe",
                      hint=f"{guess}give a path to a YAML file, or one of `ppi recipe list`")


class _Null(enum.Enum):
    """An override that sets a field to null: YAML `null` given with `--set` or `--variant`. A plain None among the
    overrides stands for an option left out (`--epochs` not given) and changes nothing."""

    NULL = "null"

    def __str__(self) -> str:
        return "null"


NULL = _Null.NULL


def override_value(raw: str) -> Any:
    """A `--set`/`--variant` value as YAML reads it, with `null` (or nothing) as NULL, which sets the field to null."""
    value = yaml.safe_load(raw)
    return NULL if value is None else value


def load_recipe(ref: str | Path, overrides: Mapping[str, Any] | None = None) -> Recipe:
    """Load a recipe, following `extends:`, then apply dotted-key CLI overrides.

    Args:
        ref: Path to a YAML file or the name of a bundled recipe (`ga-ppi-wbp-cpu`).
        overrides: `{"optim.lr": 0.1, "ppi.enabled": False}`; values of None are ignored (an option left out),
            NULL sets a field to null.

    Raises:
        ConfigError: Naming the file, the key path and the nearest valid key.

    Example:
        >>> recipe = load_recipe("lidc-ppi-wbp-cpu", {"schedule.epochs": 2})
    """
    path = resolve_recipe_path(ref)
    data, provenance = _read_chain(path, seen=())
    data.setdefault("name", path.stem)
    provenance.setdefault("name", str(path))
    recipe = build(Recipe, data, source=provenance)
    return apply_overrides(recipe, overrides or {}, provenance=provenance)


def apply_overrides(recipe: Recipe, overrides: Mapping[str, Any], *,
                    provenance: Mapping[str, str] | None = None) -> Recipe:
    """Apply dotted-key overrides (from CLI options) to a recipe and re-validate.

    Fields are checked alone and then together (`check_recipe`); `provenance` (dotted key → file,
    from `load_recipe`) lets the cross-field message name the files that set the fields.
    """
    overrides = {k: None if v is NULL else v for k, v in overrides.items() if v is not None}
    if not overrides:
        if provenance is not None:  # a freshly loaded recipe: its fields were never checked together
            check_recipe(recipe, provenance)
        return recipe

    data = to_dict(recipe)
    sources: dict[str, str] = {"": f"recipe '{recipe.name}'"}
    for key, value in overrides.items():
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"command line: unknown recipe key '{key}'")
            node = node[part]
        node[parts[-1]] = list(value) if isinstance(value, tuple) else value
        sources[key] = "command line"
    updated = build(Recipe, data, source=sources)
    check_recipe(updated, {**sources, **(provenance or {}), **{k: "command line" for k in overrides}},
                 unset="the default" if provenance is not None else f"recipe '{recipe.name}'")
    return updated


def _read_chain(path: Path, seen: tuple[Path, ...]) -> tuple[dict[str, Any], dict[str, str]]:
    resolved = path.resolve()
    if resolved in seen:
        chain = " -> ".join(p.name for p in (*seen, resolved))
        raise ConfigError(f"{path}: extends: circular chain {chain}", hint="remove one of the `extends:` lines")
    data = read_yaml(path)
    parent_ref = data.pop("extends", None)
    # Check each file alone first, so an unknown key or bad value is blamed on the file that holds it.
    build(Recipe, data, source=str(path))
    if parent_ref is None:
        return data, {k: str(path) for k in _leaf_keys(data)} | {"": str(path)}
    if not isinstance(parent_ref, str):
        raise ConfigError(f"{path}: extends: expected a recipe name or path, got {parent_ref!r}")
    parent, provenance = _read_chain(resolve_recipe_path(parent_ref, relative_to=path.parent), (*seen, resolved))
    merged = _deep_merge(parent, data)
    provenance.update({k: str(path) for k in _leaf_keys(data)})
    provenance[""] = str(path)
    return merged, provenance


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _leaf_keys(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        keys.append(path)
        if isinstance(value, Mapping):
            keys.extend(_leaf_keys(value, path))
    return keys
