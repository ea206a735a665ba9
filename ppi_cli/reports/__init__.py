# SPDX-License-Identifier: MIT
"""Reports: metrics, paired AUC tests, tables (CSV + markdown), plots, cross-site matrices, comparisons.

Nothing here trains or prints; it turns predictions into the numbers and files a study publishes.
"""
