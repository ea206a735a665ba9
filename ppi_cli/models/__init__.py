# SPDX-License-Identifier: MIT
"""Models: a small registry (`tiny`, `vgg11`, `vgg11_bn`, `inception_v3`, `multiview`) and one contract.

`forward(x) -> logits (B, K)` (binary: `(B, 1)`) on float [0, 1] images `(B, C, H, W)`; resizing,
channel adaptation and normalisation happen inside the wrapper. The multi-view model takes
`(B, S, C, H, W)` volumes and `(B, S)` positions. Every model names its `gradcam_layer`.
"""

# The builders register themselves on import (each imports torchvision only when it builds a model);
# the registry module never imports them back.
from ppi_cli.models import external as _external  # noqa: F401  (torchvision:, timm:, monai:, module:factory)
from ppi_cli.models import inception as _inception  # noqa: F401  (registers inception_v3)
from ppi_cli.models import multiview as _multiview  # noqa: F401  (registers multiview)
from ppi_cli.models import tiny as _tiny  # noqa: F401  (registers tiny)
from ppi_cli.models import vgg as _vgg  # noqa: F401  (registers vgg11, vgg11_bn)
from ppi_cli.models.common import ImageClassifier, Preprocess
from ppi_cli.models.registry import ModelEntry, build_model, load_model, model_entry, model_names, register_model

__all__ = ["build_model", "load_model", "model_entry", "model_names", "register_model", "ModelEntry",
           "ImageClassifier", "Preprocess", "is_volume_model"]


def is_volume_model(model: object) -> bool:
    """True for models that take `(B, S, C, H, W)` volumes and positions (the multi-view model)."""
    return getattr(model, "kind", "image") == "volume"
