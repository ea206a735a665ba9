# SPDX-License-Identifier: MIT
"""Write `(n_bscans, H, W)` uint8 volumes in the real on-disk layouts the readers accept.

`ppi synth ga` writes each site in another format with these; every write is atomic. The layouts
are the inverse of readers.py: Duke `.mat` stores `images` as (depth, A-scans, B-scans), NIfTI
stores voxel axes (A-scan, depth, B-scan), DICOM OPT stores one frame per B-scan with its
`InStackPositionNumber`, and a B-scan folder holds one PNG per B-scan numbered from 1.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ppi_cli.data.oct.dicom import FRAME_CONTENT_TAG, IN_STACK_POSITION_TAG, OPT_SOP_CLASS_UID
from ppi_cli.files import atomic_path, atomic_write, write_bytes

__all__ = ["write_duke_mat", "write_dicom_opt", "write_nifti", "write_bscan_folder"]


def write_duke_mat(path: Path, volume: np.ndarray) -> Path:
    """MATLAB v5 file with `images` of shape (H, W, n_bscans), as in the Duke A2A release."""
    from scipy.io import savemat

    with atomic_write(path, "wb") as fh:
        savemat(fh, {"images": np.ascontiguousarray(np.moveaxis(volume, 0, -1))}, do_compression=True)
    return path


def write_nifti(path: Path, volume: np.ndarray, spacing_mm: Sequence[float]) -> Path:
    """NIfTI-1 (gzipped when the name ends in `.gz`) with voxel axes (x=A-scan, y=depth, z=B-scan)."""
    import nibabel as nib

    between, axial, lateral = (float(s) for s in spacing_mm)
    data = np.ascontiguousarray(np.transpose(volume, (2, 1, 0)))  # (n, H, W) -> (x, y, z)
    image = nib.Nifti1Image(data, np.diag([lateral, axial, between, 1.0]))
    image.header.set_zooms((lateral, axial, between))
    raw = image.to_bytes()
    return write_bytes(path, gzip.compress(raw, compresslevel=1) if path.name.endswith(".gz") else raw)


def write_dicom_opt(path: Path, volume: np.ndarray, spacing_mm: Sequence[float], *,
                    stored_order: Sequence[int] | None = None, laterality: str = "R",
                    patient_id: str = "ANONYMOUS") -> Path:
    """DICOM Ophthalmic Tomography multi-frame, one 8-bit frame per B-scan.

    Args:
        path: Output file.
        volume: uint8 (n, H, W) in B-scan order.
        spacing_mm: (between B-scans, axial, lateral).
        stored_order: B-scan index of each stored frame (default: in order); readers must sort by
            `InStackPositionNumber`, which is written per frame.
        laterality: `R` or `L` (FrameLaterality / ImageLaterality).
        patient_id: Written to PatientID (synthetic data only).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    n, height, width = volume.shape
    order = np.arange(n) if stored_order is None else np.asarray(stored_order, dtype=np.int64)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = OPT_SOP_CLASS_UID
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = OPT_SOP_CLASS_UID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "OPT"
    ds.PatientID, ds.PatientName = patient_id, "SYNTHETIC^VOLUME"
    ds.ImageLaterality = laterality
    ds.NumberOfFrames = n
    ds.Rows, ds.Columns = height, width
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    dimension = Dataset()
    dimension.DimensionIndexPointer = IN_STACK_POSITION_TAG
    dimension.FunctionalGroupPointer = FRAME_CONTENT_TAG
    ds.DimensionIndexSequence = DicomSequence([dimension])
    measures = Dataset()
    measures.PixelSpacing = [f"{spacing_mm[1]:.6g}", f"{spacing_mm[2]:.6g}"]  # (row = axial, column = lateral)
    measures.SliceThickness = f"{spacing_mm[0]:.6g}"
    shared = Dataset()
    shared.PixelMeasuresSequence = DicomSequence([measures])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    frames = []
    for index in order:
        content = Dataset()
        content.StackID = "1"
        content.InStackPositionNumber = int(index) + 1
        content.DimensionIndexValues = [int(index) + 1]
        anatomy = Dataset()
        anatomy.FrameLaterality = laterality
        item = Dataset()
        item.FrameContentSequence = DicomSequence([content])
        item.FrameAnatomySequence = DicomSequence([anatomy])
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(frames)
    ds.PixelData = np.ascontiguousarray(volume[order], dtype=np.uint8).tobytes()
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path


def write_bscan_folder(folder: Path, volume: np.ndarray, prefix: str = "bscan_") -> Path:
    """One PNG per B-scan, numbered 1..n without zero padding (readers must sort naturally)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for k, bscan in enumerate(volume, start=1):
        with atomic_write(folder / f"{prefix}{k}.png", "wb") as fh:
            Image.fromarray(np.ascontiguousarray(bscan)).save(fh, format="PNG")
    return folder
