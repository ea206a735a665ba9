# SPDX-License-Identifier: MIT
"""Synthetic data: TCIA-like LIDC trees, multi-site GA OCT volumes, and the in-memory `synthetic` task."""
