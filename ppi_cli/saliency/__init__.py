# SPDX-License-Identifier: MIT
"""Saliency maps with one signature: WBP (the paper's), Gradient, GradCAM and LRP (via zennit).

    s = saliency_map(model, x, target, method="wbp", create_graph=False)   # (B, 1, *spatial)

Methods live in a registry (`register_saliency`, `method_names`); importing this package
registers the built-in ones. LRP needs the optional extra `lrp` (zennit) only when called.
"""

from __future__ import annotations

from ppi_cli.saliency import gradients as _gradients  # noqa: F401  (registers gradient, gradcam)
from ppi_cli.saliency import lrp as _lrp  # noqa: F401  (registers lrp-*; zennit is imported on first use)
from ppi_cli.saliency import wbp as _wbp  # noqa: F401  (registers wbp)
from ppi_cli.saliency.core import (
    SaliencyMethod,
    method_names,
    register_saliency,
    saliency_map,
    saliency_method,
)
from ppi_cli.saliency.gradients import gradcam_layer
from ppi_cli.saliency.wbp import check_wbp_supports, wbp_unsupported, weight_backprop_rows

__all__ = [
    "saliency_map", "register_saliency", "saliency_method", "method_names", "SaliencyMethod",
    "gradcam_layer", "weight_backprop_rows", "check_wbp_supports", "wbp_unsupported",
]
