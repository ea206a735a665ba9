# SPDX-License-Identifier: MIT
"""Readers, caches, datasets and synthetic generators. Knows nothing of models or the CLI."""
