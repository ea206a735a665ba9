# SPDX-License-Identifier: MIT
"""Training, studies (the one resolve-and-split path), evaluation, explain, segment-eval, the demo, DDP."""
