# SPDX-License-Identifier: MIT
"""The `folder` dataset: ImageFolder-layout photo collections (CUB, CIFAR-10) and their cache."""
