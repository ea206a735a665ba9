# SPDX-License-Identifier: MIT
"""Models: a small registry (`tiny`, `vgg11`, `vgg11_bn`, `inception_v3`, `multiview`) and one contract.

`forward(x) -> logits (B, K)` (binary: `(B, 1)`) on float [0, 1] images `(B, C, H, W)`; resizing,
channel adaptation and normalisation happen inside the wrapper. The multi-view model takes
`(B, S, C, H, W)` volumes and `(B, S)` positions. Every model names its `gradcam_layer`.
"""

from ppi_cli.models.common import ImageClassifier, Preprocess
from ppi_cli.models.registry import ModelEntry, build_model, load_model, model_entry, model_names, register_model

__all__ = ["build_model", "load_model", "model_entry", "model_names", "register_model", "ModelEntry",
           "ImageClassifier", "Preprocess", "is_volume_model"]


def is_volume_model(model: object) -> bool:
    """True for models that take `(B, S, C, H, W)` volumes and positions (the multi-view model)."""
    return getattr(model, "kind", "image") == "volume"
