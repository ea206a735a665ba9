# SPDX-License-Identifier: MIT
"""ppi: interpretable CNNs for clinical imaging studies with Proactive Pseudo-Intervention."""

__version__ = "0.1.0"
