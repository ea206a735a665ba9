# SPDX-License-Identifier: MIT
"""`table`: a hospital cohort listed in a CSV (DICOM, NIfTI, NRRD, MetaImage, pictures, .npy) as a multi-view cache."""
