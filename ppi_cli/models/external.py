# SPDX-License-Identifier: MIT
"""Networks named by source: `torchvision:NAME`, `timm:NAME`, `monai:NAME`, `module.path:factory`.

The network is built by its library (torchvision's `get_model`, timm's `create_model`, the MONAI
class; timm and MONAI are optional extras, imported here only), then adapted the one documented way:

- head: the last `nn.Linear` in module order is the classifier; it becomes the wrapper's `head`
  (`Linear(in_features, num_classes)`, fresh unless the weights have a classifier of that shape)
  and an `nn.Identity` takes its place in the body, which therefore ends in the feature vector;
- channels: torchvision and timm networks keep their 3-channel ImageNet stem; a 1-channel image
  meets it as `model.input_adapt` says (`sum`: the first convolution's kernel summed over RGB, as for
  the built-in torchvision backbones). MONAI networks and factories are built for `in_channels`;
- the stem (`first_conv`) is the first `nn.Conv2d`, the GradCAM layer the last one;
- every `inplace=True` (ReLU, dropout, ...) is switched off, so saliency hooks and double
  back-propagation never meet an in-place edit.

A factory `module.path:factory` is called with the recipe's `ModelConfig` and returns an
`nn.Module` mapping normalised `(B, in_channels, S, S)` images to logits through a last `nn.Linear`.
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

from ppi_cli.config.recipe import ModelConfig
from ppi_cli.errors import ConfigError, MissingExtraError, ModelError
from ppi_cli.models.common import IMAGENET_MEAN, IMAGENET_STD
from ppi_cli.models.registry import ModelEntry, assemble_classifier, register_resolver
from ppi_cli.models.weights import backbone_state, load_into

__all__ = ["wrap_network"]


def _missing(cfg: ModelConfig, extra: str) -> MissingExtraError:
    error = MissingExtraError(f"model.name: {cfg.name}", extra, extra)
    error.hint = f'pip install -e ".[{extra}]" (or pip install {extra})'
    return error


def _last(net: nn.Module, kind: type) -> str | None:
    names = [name for name, module in net.named_modules() if isinstance(module, kind)]
    return names[-1] if names else None


def _first(net: nn.Module, kind: type) -> str | None:
    return next((name for name, module in net.named_modules() if isinstance(module, kind)), None)


def wrap_network(cfg: ModelConfig, net: nn.Module, *, mean: tuple[float, ...], std: tuple[float, ...],
                 stem_channels: int | None) -> nn.Module:
    """The `ImageClassifier` around `net`: last Linear → head, first/last Conv2d → stem/GradCAM layer."""
    for module in net.modules():
        if getattr(module, "inplace", False) is True:
            setattr(module, "inplace", False)  # noqa: B010  (any module with the flag)
    classifier = _last(net, nn.Linear)
    stem = _first(net, nn.Conv2d)
    if classifier is None or stem is None:
        raise ConfigError(f"model.name: {cfg.name} has no {'nn.Linear classifier' if stem else 'nn.Conv2d'}; "
                          "ppi wraps convolutional networks whose last nn.Linear is the classifier",
                          hint="pick another network, or write a factory module.path:factory")
    old = net.get_submodule(classifier)
    assert isinstance(old, nn.Linear)
    head = old if old.out_features == cfg.num_classes else nn.Linear(old.in_features, cfg.num_classes)
    parent, _, leaf = classifier.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, leaf, nn.Identity())
    entry = ModelEntry(name=cfg.name, builder=lambda c: net, description=cfg.name, mean=mean, std=std,
                       stem_channels=stem_channels, first_conv=f"body.{stem}",
                       gradcam_layer=f"body.{_last(net, nn.Conv2d)}")
    return assemble_classifier(cfg, net, head, old.in_features, entry=entry)


def _load_file(cfg: ModelConfig, net: nn.Module) -> None:
    """A weights file in the library's own key format goes into the bare network (head keys may differ)."""
    state = backbone_state(cfg.weights, None, cfg.name) if cfg.weights not in ("none", "imagenet") else None
    if state is not None:
        classifier = _last(net, nn.Linear) or ""
        load_into(net, state, source=cfg.weights, head_keys=(f"{classifier}.",))


def _torchvision(cfg: ModelConfig, name: str) -> nn.Module:
    import torchvision.models as tvm

    if name not in tvm.list_models(module=tvm):
        raise ConfigError(f"model.name: torchvision has no classification model '{name}'",
                          hint="see torchvision.models.list_models(), e.g. torchvision:resnet18")
    net = tvm.get_model(name, weights=None)
    if cfg.weights == "imagenet":
        enum = tvm.get_model_weights(name).DEFAULT
        state = backbone_state("imagenet", enum, cfg.name)
        if state is not None:
            load_into(net, state, source="imagenet")
    else:
        _load_file(cfg, net)
    return wrap_network(cfg, net, mean=IMAGENET_MEAN, std=IMAGENET_STD, stem_channels=3)


def _timm(cfg: ModelConfig, name: str) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise _missing(cfg, "timm") from None
    if name not in timm.list_models():
        raise ConfigError(f"model.name: timm has no model '{name}'", hint="see timm.list_models(), e.g. "
                          "timm:efficientnet_b0")
    try:
        net = timm.create_model(name, pretrained=cfg.weights == "imagenet")
    except (OSError, RuntimeError) as exc:
        raise ModelError(f"model.weights: imagenet: cannot fetch timm weights of {name} ({exc})",
                         hint="run once on a connected machine, or pass the file as a path") from None
    _load_file(cfg, net)
    data = getattr(net, "pretrained_cfg", None) or {}
    return wrap_network(cfg, net, mean=tuple(data.get("mean", IMAGENET_MEAN)),
                        std=tuple(data.get("std", IMAGENET_STD)), stem_channels=3)


def _monai(cfg: ModelConfig, name: str) -> nn.Module:
    try:
        import monai.networks.nets as nets
    except ImportError:
        raise _missing(cfg, "monai") from None
    if cfg.weights == "imagenet":
        raise ConfigError(f"model.weights: imagenet: {cfg.name} has no ImageNet weights in ppi",
                          hint="use weights: none or a path")
    factory = getattr(nets, name, None)
    if not callable(factory):
        raise ConfigError(f"model.name: monai.networks.nets has no network '{name}'",
                          hint="e.g. monai:DenseNet121")
    try:
        net = factory(spatial_dims=2, in_channels=cfg.in_channels, out_channels=cfg.num_classes)
    except TypeError as exc:
        raise ConfigError(f"model.name: {cfg.name} does not take (spatial_dims, in_channels, out_channels) ({exc})",
                          hint="use a MONAI classifier such as DenseNet121, or a factory module.path:factory") from None
    _load_file(cfg, net)
    return wrap_network(cfg, net, mean=(0.5,), std=(0.5,), stem_channels=None)


def _factory(cfg: ModelConfig, source: str, name: str) -> nn.Module:
    hint = "write model.name: package.module:function, a function (ModelConfig) -> nn.Module importable here"
    try:
        module = importlib.import_module(source)
    except ImportError as exc:
        raise ConfigError(f"model.name: {cfg.name}: cannot import '{source}' ({exc})", hint=hint) from None
    factory: Any = getattr(module, name, None)
    if not callable(factory):
        raise ConfigError(f"model.name: {cfg.name}: '{source}' has no function '{name}'", hint=hint)
    net = factory(cfg)
    if not isinstance(net, nn.Module):
        raise ConfigError(f"model.name: {cfg.name} returned {type(net).__name__}, not an nn.Module", hint=hint)
    if cfg.weights == "imagenet":
        raise ConfigError(f"model.weights: imagenet: ppi has no ImageNet weights for {cfg.name}",
                          hint="load them in the factory, or use weights: none or a path")
    _load_file(cfg, net)
    return wrap_network(cfg, net, mean=(0.5,), std=(0.5,), stem_channels=None)


def _resolve(source: str, name: str) -> ModelEntry:
    def build(cfg: ModelConfig) -> nn.Module:
        if source == "torchvision":
            return _torchvision(cfg, name)
        if source == "timm":
            return _timm(cfg, name)
        if source == "monai":
            return _monai(cfg, name)
        return _factory(cfg, source, name)

    return ModelEntry(name=f"{source}:{name}", builder=build, description=f"{source} network {name}",
                      min_size=8)


for _source in ("torchvision", "timm", "monai", ""):
    register_resolver(_source, _resolve)

