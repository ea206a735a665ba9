# SPDX-License-Identifier: MIT
"""Proactive Pseudo-Intervention: intervention masks, the intervened images and the four loss terms.

    iv = pseudo_intervention(model, x, y, recipe.ppi, binary=True)   # saliency, masks, x* and x'
    L = L_cls + α·L_con + β·L_reg + γ·L_ad                            # losses.py

See docs/ppi.md for every choice the paper leaves open.
"""

from ppi_cli.ppi.intervention import Intervention, contrast_rows, pseudo_intervention
from ppi_cli.ppi.losses import (
    LossWeights,
    adversarial_loss,
    classification_loss,
    contrast_loss,
    derangement,
    mask_donors,
    saliency_regulariser,
)
from ppi_cli.ppi.masks import MASKS, intervene, intervention_mask

__all__ = ["Intervention", "pseudo_intervention", "contrast_rows", "LossWeights", "classification_loss",
           "contrast_loss", "saliency_regulariser", "adversarial_loss", "derangement", "mask_donors",
           "intervention_mask", "intervene", "MASKS"]
