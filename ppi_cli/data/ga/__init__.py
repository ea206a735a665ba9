# SPDX-License-Identifier: MIT
"""The GA study cache: the labels manifest, per-site normalisation, `ppi prepare ga` and the multi-view Dataset."""
