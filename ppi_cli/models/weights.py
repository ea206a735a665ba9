# SPDX-License-Identifier: MIT
"""Initial weights: `none`, `imagenet` (torchvision's weights API) or a local file.

A local file is either a ppi checkpoint (read with `load_checkpoint`) or a plain state dict (read
with `torch.load(weights_only=True)`, so it can never run code). Its keys are either ours (the
wrapper's `body.` / `head.` / `slice_classifier.` names) or torchvision's own, which then load into
the torchvision network before it is wrapped. A classifier layer whose shape does not fit the
recipe's `num_classes` is left at its fresh initialisation, as fine-tuning needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ppi_cli.checkpoint import FORMAT, checked_checkpoint, read_torch_file
from ppi_cli.console import log
from ppi_cli.errors import ConfigError, ModelError

__all__ = ["read_state_dict", "imagenet_state_dict", "load_into", "is_wrapper_state", "WRAPPER_PREFIXES",
           "backbone_state"]

WRAPPER_PREFIXES = ("body.", "head.", "slice_classifier.", "position.", "attention.")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file: a ppi checkpoint's `state_dict` or a plain state dict.

    Raises:
        ModelError: Missing, unreadable, foreign-pickle or tensor-free file.
    """
    path = Path(path)
    hint = "give none, imagenet, or the path of a state dict / ppi checkpoint"
    if not path.is_file():
        raise ModelError(f"model.weights: {path}: no such file", hint=hint)
    payload = read_torch_file(path, what="torch file", hint=hint, prefix="model.weights: ",
                              objects_hint="save the weights with torch.save(model.state_dict(), path)")
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        payload = checked_checkpoint(path, payload)["state_dict"]
    elif isinstance(payload, dict) and isinstance(payload.get("state_dict"), Mapping):
        payload = payload["state_dict"]  # the common {"state_dict": ..., "epoch": ...} layout of other tools
    tensors = {k: v for k, v in payload.items() if isinstance(v, torch.Tensor)} if isinstance(payload, dict) else {}
    if not tensors:
        raise ModelError(f"model.weights: {path}: no tensors found", hint="give a state dict or ppi checkpoint")
    return tensors


def imagenet_state_dict(weights_enum: Any, model_name: str) -> dict[str, torch.Tensor]:
    """ImageNet weights through torchvision's API (downloaded once into the torch hub cache)."""
    if weights_enum is None:
        raise ConfigError(f"model.weights: imagenet: there are no ImageNet weights for '{model_name}'",
                          hint="use weights: none or a path")
    try:
        return weights_enum.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError) as exc:  # urllib errors are OSErrors; hash mismatch is a RuntimeError
        raise ModelError(f"model.weights: imagenet: cannot fetch {weights_enum.url} ({exc})",
                         hint="run once on a connected machine (torch hub cache), or pass the file as a path") from None


def is_wrapper_state(state: Mapping[str, Any]) -> bool:
    """True when the keys are the wrapper's (`body.…`), false for a torchvision state dict."""
    return any(k.startswith(WRAPPER_PREFIXES) for k in state)


def backbone_state(weights: str, weights_enum: Any, model_name: str) -> dict[str, torch.Tensor] | None:
    """The torchvision-format state dict to load before wrapping, or None (no weights, or wrapper keys)."""
    if weights == "none":
        return None
    if weights == "imagenet":
        return imagenet_state_dict(weights_enum, model_name)
    state = read_state_dict(weights)
    return None if is_wrapper_state(state) else state


def load_into(module: nn.Module, state: Mapping[str, torch.Tensor], *, source: str,
              head_keys: Iterable[str] = (), ignore: Iterable[str] = ()) -> None:
    """Load `state` strictly, except head keys whose shape differs (left fresh) and `ignore`d prefixes.

    Raises:
        ModelError: Missing or unexpected keys, or a shape mismatch outside the head, naming the file.
    """
    own = module.state_dict()
    head_keys = tuple(head_keys)
    ignore = tuple(ignore)
    state = {k: v for k, v in state.items() if not (ignore and k.startswith(ignore))}
    skipped = [k for k in state if k.startswith(head_keys) and k in own and own[k].shape != state[k].shape] \
        if head_keys else []
    state = {k: v for k, v in state.items() if k not in skipped}
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            raise ModelError(f"model.weights: {source}: '{key}' has shape {tuple(value.shape)}, the model "
                             f"needs {tuple(own[key].shape)}", hint="check model.name, in_channels and num_classes")
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in skipped and not (ignore and k.startswith(ignore))]
    if missing or unexpected:
        first = (missing or unexpected)[0]
        what = "misses" if missing else "has unexpected"
        raise ModelError(f"model.weights: {source}: {what} key '{first}' ({len(missing)} missing, "
                         f"{len(unexpected)} unexpected)", hint="are these weights for this model.name?")
    if skipped:
        log(f"weights: {source}: classifier layer left fresh ({len(skipped)} tensors of another shape)")
