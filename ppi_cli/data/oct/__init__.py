# SPDX-License-Identifier: MIT
"""OCT volume formats: readers into `(n_bscans, H, W)` uint8 (also used by `ppi explain`) and writers."""
