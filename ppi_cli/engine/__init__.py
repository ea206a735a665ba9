# SPDX-License-Identifier: MIT
"""Training, evaluation, splits, checkpoint io, devices."""
