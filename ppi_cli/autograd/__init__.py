# SPDX-License-Identifier: MIT
"""Exact-but-fast machinery the PPI step uses: double backward, the shared clean-pass map, fast pools, phases."""
