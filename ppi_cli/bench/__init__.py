# SPDX-License-Identifier: MIT
"""The benchmarks: saliency methods, the training step, and LIDC preparation."""
