# SPDX-License-Identifier: MIT
"""DICOM without a dataset: headers, slices in Hounsfield units, and generic images for `ppi explain`."""
