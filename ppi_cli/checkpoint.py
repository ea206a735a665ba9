# SPDX-License-Identifier: MIT
"""Self-describing checkpoints: `{"format", "format_version", "state_dict", "meta", ...}`.

`meta` is plain JSON data (model name and config, input spec, class names, recipe, data hash,
toolkit version, metrics), so `explain` can rebuild preprocessing from the file alone. Files are
written atomically and read with `torch.load(weights_only=True)`: a checkpoint can never run code.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ppi_cli import __version__
from ppi_cli.errors import ModelError
from ppi_cli.files import atomic_path

__all__ = ["save_checkpoint", "load_checkpoint", "read_torch_file", "checked_checkpoint", "FORMAT", "FORMAT_VERSION"]

FORMAT = "ppi-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, state_dict: Mapping[str, torch.Tensor], meta: Mapping[str, Any],
                    **extra: Any) -> Path:
    """Write a checkpoint atomically.

    Args:
        path: Target file (`.pt`).
        state_dict: Model weights.
        meta: Plain JSON data describing the model and its preprocessing; checked here.
        **extra: More tensors or plain data for resuming (optimizer state, RNG states, epoch).

    Example:
        >>> save_checkpoint("runs/x/last.pt", model.state_dict(), {"model": {"name": "tiny"}})
    """
    try:
        json.dumps(meta, allow_nan=True)
    except TypeError as exc:
        raise ModelError(f"checkpoint meta must be plain JSON data: {exc}") from None
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "toolkit_version": __version__,
               "state_dict": dict(state_dict), "meta": dict(meta), **extra}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_torch_file(path: str | Path, *, what: str, hint: str, objects_hint: str | None = None, prefix: str = "",
                    map_location: str | torch.device = "cpu") -> Any:
    """`torch.load(weights_only=True)` with the toolkit's one set of errors (checkpoints and weights files alike).

    Args:
        path: The file.
        what: How a message names the file: "torch checkpoint", "torch file".
        hint: The hint of a missing or unreadable file.
        objects_hint: The hint when the file holds Python objects (default: `hint`).
        prefix: Put before every message, e.g. the recipe field that named the file.

    Raises:
        ModelError: Unreadable, not a torch file, or a pickle of Python objects (never unpickled: no code runs).
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" in str(exc).lower():  # the unpickler met a class or function: a foreign pickle
            raise ModelError(f"{prefix}{path}: not a ppi {what} (it holds Python objects, which are never loaded for "
                             "safety)", hint=objects_hint or hint) from None
        raise ModelError(f"{prefix}{path}: not a readable {what} (corrupt or not a torch file)", hint=hint) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{prefix}{path}: not a readable {what} ({first})", hint=hint) from None


def checked_checkpoint(path: str | Path, payload: Any) -> dict[str, Any]:
    """`payload` (read from `path`) if it is a ppi checkpoint this version reads.

    Raises:
        ModelError: No ppi checkpoint marker, or a newer format.
    """
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{path}: not a ppi checkpoint (no '{FORMAT}' marker)",
                         hint="use a checkpoint written by `ppi train`; for plain weights use --weights PATH")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise ModelError(f"{path}: checkpoint format {payload['format_version']} is newer than this ppi "
                         f"({__version__}) reads", hint="upgrade ppi-cli")
    return payload


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a ppi checkpoint safely (`weights_only=True`).

    Raises:
        ModelError: The file is missing, not a torch file, holds Python objects (a foreign pickle),
            or is a torch file that ppi did not write.
    """
    if not Path(path).is_file():
        raise ModelError(f"{path}: no such checkpoint", hint="pass --model with a .pt file written by `ppi train`")
    payload = read_torch_file(path, what="torch checkpoint", hint="use a checkpoint written by `ppi train`",
                              map_location=map_location)
    return checked_checkpoint(path, payload)
