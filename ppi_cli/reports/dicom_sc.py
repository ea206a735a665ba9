# SPDX-License-Identifier: MIT
"""DICOM Secondary Capture of an overlay, filed in the same study as the scan it explains.

A PACS viewer shows the overlay next to the scan when the capture shares the input's Study
Instance UID and carries the input's patient module; the series and instance are new, the image
type is DERIVED\\SECONDARY, and a derivation description plus a source-image reference say what it
is (DICOM PS3.3 A.8.1 Secondary Capture Image IOD; C.7.6.1 General Image).

This is the one output of ppi that holds patient identity, because filing requires it: the patient
module is copied verbatim from the input. Besides the study, only what a reader needs to place the
overlay is copied: the side (`Laterality`, `ImageLaterality`; from a multi-frame source's
`FrameLaterality` when it has no image-level one — an OCT of the right eye stays right) and the frame
of reference (`FrameOfReferenceUID`, `PositionReferenceIndicator`).
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np

from ppi_cli import __version__
from ppi_cli.data.limits import open_image
from ppi_cli.errors import DataError
from ppi_cli.files import atomic_path

__all__ = ["PATIENT_MODULE", "STUDY_MODULE", "PLACEMENT", "SERIES_NUMBER", "write_secondary_capture",
           "read_png_rgb", "source_laterality"]

# Patient module (PS3.3 C.7.1.1) and the de-identification flags that travel with it: copied verbatim.
PATIENT_MODULE = (
    "PatientName", "PatientID", "IssuerOfPatientID", "TypeOfPatientID", "OtherPatientIDsSequence",
    "PatientBirthDate", "PatientBirthTime", "PatientSex", "PatientIdentityRemoved", "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
)
# General Study module (C.7.2.1): what makes a viewer file the capture into the input's study.
STUDY_MODULE = (
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
    "StudyDescription",
)
# Where the image lies: the side (General Series C.7.3.1, General Image C.7.6.1) and the Frame of
# Reference module (C.7.4.1). Copied so that the overlay of a right eye is never read as a left one.
PLACEMENT = ("Laterality", "ImageLaterality", "FrameOfReferenceUID", "PositionReferenceIndicator")
SERIES_NUMBER = 9901  # high, so the overlay series sorts after the acquired ones in most viewers
_SC_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage


def read_png_rgb(path: str | Path) -> np.ndarray:
    """Read a PNG as (H, W, 3) uint8 RGB (alpha dropped onto white)."""
    with open_image(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def source_laterality(source) -> str:
    """The side of the source image: `ImageLaterality`, else `Laterality`, else a multi-frame source's
    `FrameLaterality` (shared functional groups, else the first frame's); "" when none says."""
    for keyword in ("ImageLaterality", "Laterality"):
        value = str(source.get(keyword, "") or "").strip()
        if value:
            return value
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for group in list(source.get(groups, None) or [])[:1]:
            for anatomy in list(group.get("FrameAnatomySequence", None) or [])[:1]:
                value = str(anatomy.get("FrameLaterality", "") or "").strip()
                if value:
                    return value
    return ""


def write_secondary_capture(path: str | Path, rgb: np.ndarray, source, description: str) -> Path:
    """Write an RGB overlay as a DICOM Secondary Capture in the source image's study.

    Args:
        path: Output `.dcm`, written atomically.
        rgb: (H, W, 3) uint8 overlay pixels.
        source: The input's pydicom Dataset (header only is enough).
        description: Derivation description, e.g. "WBP saliency overlay of model tiny (score 0.912)".

    Returns:
        The path written.

    Raises:
        DataError: The source header has no Study Instance UID, so the capture could not join its study.

    Example:
        >>> write_secondary_capture("overlay.dcm", read_png_rgb("overlay.png"), header, "WBP saliency")
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be (H, W, 3), got {rgb.shape}")
    if not str(source.get("StudyInstanceUID", "")).strip():
        raise DataError("the input DICOM has no StudyInstanceUID, so the overlay cannot be filed in its study",
                        hint="drop --dicom-out, or fix the input's header")

    now = _dt.datetime.now()
    ds = Dataset()
    if "SpecificCharacterSet" in source:  # the copied names must decode as they did in the input
        ds.SpecificCharacterSet = source.SpecificCharacterSet
    for keyword in (*PATIENT_MODULE, *STUDY_MODULE):
        if keyword in source:
            ds[keyword] = source[keyword]
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "ReferringPhysicianName",
                    "StudyDate", "StudyTime", "StudyID", "AccessionNumber"):
        if keyword not in ds:  # type 2 attributes: present, possibly empty
            setattr(ds, keyword, "")

    for keyword in PLACEMENT:
        if keyword in source and str(source[keyword].value or "").strip():
            ds[keyword] = source[keyword]
    if "ImageLaterality" not in ds and (side := source_laterality(source)):
        ds.ImageLaterality = side
    if "FrameOfReferenceUID" in ds and "PositionReferenceIndicator" not in ds:
        ds.PositionReferenceIndicator = ""  # type 2 in the Frame of Reference module

    ds.SOPClassUID = _SC_SOP_CLASS
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.SeriesNumber = SERIES_NUMBER
    ds.SeriesDescription = "ppi saliency overlay"
    ds.InstanceNumber = 1
    ds.ConversionType = "WSD"  # workstation: an image made by software, not digitised film
    ds.Manufacturer = "ppi"
    ds.SoftwareVersions = __version__
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.DerivationDescription = description[:1024]  # ST: at most 1024 characters
    ds.BurnedInAnnotation = "NO"  # the caption names score, method and model; nothing identifies the patient
    ds.PatientOrientation = ""
    ds.ContentDate = ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.ContentTime = ds.InstanceCreationTime = now.strftime("%H%M%S")
    if "SOPInstanceUID" in source and "SOPClassUID" in source:
        ref = Dataset()
        ref.ReferencedSOPClassUID = source.SOPClassUID
        ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
        ds.SourceImageSequence = Sequence([ref])

    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0  # R, G, B interleaved per pixel, as numpy stores (H, W, 3)
    ds.Rows, ds.Columns = int(rgb.shape[0]), int(rgb.shape[1])
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "00"
    ds.PixelData = rgb.tobytes()

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return Path(path)
