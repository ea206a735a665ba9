# SPDX-License-Identifier: MIT
"""Reports: tables (CSV + markdown), plots, saliency overlays, DICOM secondary captures, localisation scores."""
