# SPDX-License-Identifier: MIT
"""The model registry: a name → builder table, `build_model` from a recipe, `load_model` from a checkpoint.

Each entry is a `ModelEntry` that carries what the rest of the toolkit needs to know about a
network without building it: its preprocessing (mean, std, stem channels), its stem and GradCAM
layer names and its torchvision ImageNet weights.

Example:
    >>> model = build_model(ModelConfig(name="tiny", in_channels=1, num_classes=1, input_size=32))
    >>> model(torch.rand(2, 1, 32, 32)).shape
    torch.Size([2, 1])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ppi_cli.checkpoint import load_checkpoint
from ppi_cli.config.loader import build
from ppi_cli.config.recipe import ModelConfig
from ppi_cli.errors import ConfigError, ModelError
from ppi_cli.models.common import ImageClassifier, Preprocess, adapt_stem_channels
from ppi_cli.models.weights import is_wrapper_state, load_into, read_state_dict

__all__ = ["ModelEntry", "register_model", "model_entry", "model_names", "build_model", "load_model",
           "assemble_classifier", "register_resolver"]


@dataclass(frozen=True)
class ModelEntry:
    """A registered network.

    Attributes:
        name: Registry key (`model.name` in recipes).
        builder: `ModelConfig -> nn.Module`, weights loaded as `cfg.weights` says.
        description: One line for listings and errors.
        mean: Per-channel mean of the normalised input (of the stem's channels).
        std: Per-channel std of the normalised input.
        stem_channels: Channels of the stem convolution (None: follows `in_channels`).
        first_conv: Dotted name of the stem convolution inside the wrapper.
        gradcam_layer: Dotted name of the last convolutional block inside the wrapper.
        min_size: Smallest input side the network accepts.
        imagenet: Name of the torchvision weights enum member (`VGG11_Weights.IMAGENET1K_V1`) or None.
    """

    name: str
    builder: Callable[[ModelConfig], nn.Module]
    description: str
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    stem_channels: int | None = None
    first_conv: str = ""
    gradcam_layer: str = ""
    min_size: int = 8
    imagenet: str | None = None

    def imagenet_weights(self) -> Any:
        """The torchvision weights enum member, or None when the network has no ImageNet weights."""
        if self.imagenet is None:
            return None
        import torchvision.models as tvm

        enum_name, _, member = self.imagenet.partition(".")
        return getattr(getattr(tvm, enum_name), member)


_REGISTRY: dict[str, ModelEntry] = {}
# `source:name` model names (`torchvision:resnet18`, `module.path:factory`): the source's resolver
# makes the entry when the name is used; `models/external.py` registers them ("" = a module path)
_RESOLVERS: dict[str, Callable[[str, str], ModelEntry]] = {}


def register_resolver(source: str, resolve: Callable[[str, str], ModelEntry]) -> None:
    """Resolve `source:name` model names with `resolve(source, name) -> ModelEntry` ("" for any other source)."""
    _RESOLVERS[source] = resolve


def register_model(name: str, description: str, **spec: Any) -> Callable[[Callable], Callable]:
    """Function decorator registering a builder under `name`; a duplicate name is an error."""

    def wrap(builder: Callable[[ModelConfig], nn.Module]) -> Callable[[ModelConfig], nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model '{name}' is registered twice")
        _REGISTRY[name] = ModelEntry(name=name, builder=builder, description=description, **spec)
        return builder

    return wrap


def model_names() -> list[str]:
    """Registered model names."""
    return sorted(_REGISTRY)


def model_entry(name: str) -> ModelEntry:
    """The registry entry of `name`.

    Raises:
        ConfigError: Unknown name, listing the valid ones.
    """
    if ":" in name and name not in _REGISTRY:
        source, _, item = name.partition(":")
        resolve = _RESOLVERS.get(source) or _RESOLVERS.get("")
        if resolve is not None and item:
            return resolve(source, item)
    if name not in _REGISTRY:
        raise ConfigError(f"model.name: no model '{name}'", hint=f"use one of: {', '.join(sorted(_REGISTRY))}, "
                          "or torchvision:NAME, timm:NAME, monai:NAME, module.path:factory")
    return _REGISTRY[name]


def assemble_classifier(cfg: ModelConfig, body: nn.Module, head: nn.Module, feature_dim: int,
                        entry: ModelEntry | None = None) -> nn.Module:
    """Put `Preprocess`, a backbone and a head together as the registry entry of `cfg.name` describes.

    A one-channel image meets a three-channel stem as `cfg.input_adapt` says: `sum` replaces the stem
    by one whose kernel is the channel sum (normalised with the mean of the per-channel statistics),
    `repeat` copies the grey channel. The choice is recorded as `model.input_adapt`. `entry`
    overrides the registry's (a network whose stem and GradCAM layer are found once it is built).
    """
    entry = entry or model_entry(cfg.name)
    stem = entry.stem_channels or cfg.in_channels
    mean = entry.mean * stem if len(entry.mean) == 1 else entry.mean
    std = entry.std * stem if len(entry.std) == 1 else entry.std
    adapt = "native"
    if cfg.in_channels != stem:
        if cfg.in_channels != 1:
            raise ConfigError(f"model.in_channels: {cfg.name} takes 1- or {stem}-channel images, not "
                              f"{cfg.in_channels}", hint=f"set model.in_channels: 1 or {stem}")
        adapt = cfg.input_adapt
    wrapper = ImageClassifier(nn.Identity(), body, head, feature_dim=feature_dim, gradcam_layer=entry.gradcam_layer,
                              first_conv=entry.first_conv, input_adapt=adapt)
    if adapt == "sum":
        adapt_stem_channels(wrapper, entry.first_conv)
        mean, std, stem = (sum(mean) / len(mean),), (sum(std) / len(std),), 1
    wrapper.preprocess = Preprocess(cfg.in_channels, stem, cfg.input_size, mean, std,
                                    "repeat" if adapt == "repeat" else "native")
    return wrapper


def build_model(cfg: ModelConfig) -> nn.Module:
    """Build the network a recipe's `model` section describes, with its initial weights.

    Args:
        cfg: The recipe's model section (`name`, `in_channels`, `num_classes`, `input_size`,
            `input_adapt`, `weights`, ...).

    Returns:
        An `ImageClassifier` (`forward(x) -> (B, K)` logits) or, for `multiview`, a `MultiViewModel`.

    Raises:
        ConfigError: Unknown model or impossible settings. ModelError: Unusable weights file.
    """
    entry = model_entry(cfg.name)
    if cfg.input_size < entry.min_size:
        raise ConfigError(f"model.input_size: {cfg.name} needs at least {entry.min_size} pixels, got "
                          f"{cfg.input_size}", hint=f"set model.input_size: {max(entry.min_size, 299)}")
    model = entry.builder(cfg)
    weights = cfg.weights
    if weights not in ("none", "imagenet"):
        state = read_state_dict(weights)
        if is_wrapper_state(state):  # torchvision-format files were loaded by the builder already
            target = model
            if hasattr(model, "slice_classifier") and not any(k.startswith("slice_classifier.") for k in state):
                target = model.slice_classifier  # a single-image classifier's weights start a multiview model
            load_into(target, state, source=weights, head_keys=("head.", "slice_classifier.head."))
    return model


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a trained model from a ppi checkpoint alone, in eval mode.

    Args:
        path: A `.pt` file written by `ppi train` (`best.pt` / `last.pt`).
        device: Where to put the model.

    Returns:
        `(model, meta)` where `meta` is the checkpoint's plain-data description (model config,
        input spec, classes, recipe, metrics).

    Raises:
        ModelError: Not a ppi checkpoint, or its weights do not fit the model its meta describes.
    """
    payload = load_checkpoint(path)
    meta = payload["meta"]
    if not isinstance(meta.get("model"), dict):
        raise ModelError(f"{path}: checkpoint meta has no model description",
                         hint="use a checkpoint written by `ppi train`")
    try:
        cfg = build(ModelConfig, meta["model"], source=f"{path} (meta.model)")
    except ConfigError as exc:
        raise ModelError(exc.message, hint="this checkpoint was written by another ppi version") from None
    model = build_model(dataclasses.replace(cfg, weights="none"))
    try:
        load_into(model, payload["state_dict"], source=str(path))
    except ModelError as exc:
        raise ModelError(f"{path}: weights do not fit the '{cfg.name}' model its meta describes "
                         f"({exc.message.split(': ', 2)[-1]})",
                         hint="the file was edited or written by another ppi version") from None
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelError(f"{path}: weight {name} holds NaN or infinite values; every score it gave would be NaN",
                             hint="use a checkpoint from a run whose loss stayed finite (e.g. best.pt)")
    return model.to(device).eval(), meta
