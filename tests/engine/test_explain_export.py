# SPDX-License-Identifier: MIT
"""`ppi explain` maps for clinical viewers: NIfTI on the input's grid, DICOM Parametric Map and Segmentation.

The NIfTI must land on the input's voxels (shape and affine of a NIfTI input; the affine a DICOM
series' headers define, as SimpleITK reads it), the DICOM objects must reference their source
instances, and the patient planted in the source may appear in the DICOM objects only.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from helpers import checkpoint_2d, checkpoint_volume, ct_with_patient, opt_with_patient
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from ppi_cli.engine.explain import ExplainConfig, explain

PATIENT = {"PatientName": "Doe^Jane", "PatientID": "SECRET123"}
PATIENT_BYTES = (b"Doe", b"Jane", b"SECRET123")
PM_STORAGE = "1.2.840.10008.5.1.4.1.1.30"
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


def _oblique_affine() -> np.ndarray:
    """Rotation about z and x, anisotropic spacing, an offset: nothing a transpose could fake."""
    a, b = np.deg2rad(20.0), np.deg2rad(-10.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag([0.8, 0.7, 2.5])
    affine[:3, 3] = [-31.5, 12.25, 80.0]
    return affine


def _write_series(folder: Path, rng: np.random.Generator, n: int = 4, side: int = 32) -> list[Path]:
    """A small oblique CT series with a patient planted, stored out of order by file name."""
    folder.mkdir()
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    row_dir, col_dir = np.array([0.96, 0.28, 0.0]), np.array([0.0, 0.0, -1.0])  # a tilted coronal plane
    normal = np.cross(row_dir, col_dir)
    origin = np.array([-20.0, 35.5, 60.0])
    paths = []
    for k in range(n):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientName, ds.PatientID = PATIENT["PatientName"], PATIENT["PatientID"]
        ds.PatientBirthDate, ds.PatientSex, ds.StudyDate, ds.StudyTime = "19600101", "F", "20240101", "120000"
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName, ds.PositionReferenceIndicator = "1", "", "", ""
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 3, k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImageOrientationPatient = [*row_dir, *col_dir]
        ds.ImagePositionPatient = [float(v) for v in origin + k * 2.5 * normal]
        ds.PixelSpacing, ds.SliceThickness = [0.7, 0.8], 2.5
        ds.Rows = ds.Columns = side
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.PixelData = rng.integers(0, 1400, size=(side, side)).astype(np.int16).tobytes()
        path = folder / f"img{(n - k) % n}.dcm"  # file names do not follow the slice order
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _sitk_ras_affine(folder: Path) -> np.ndarray:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def _assert_no_patient(*blobs: bytes) -> None:
    for blob in blobs:
        for word in PATIENT_BYTES:
            assert word not in blob, word


def test_nifti_map_of_a_nifti_input_keeps_its_shape_and_affine(cli, tmp_path, rng):
    volume = rng.normal(100.0, 30.0, size=(40, 36, 5)).astype(np.float32)  # (x, y, z) as ITK writes it
    nib.save(nib.Nifti1Image(volume, _oblique_affine()), tmp_path / "scan.nii.gz")
    ckpt = checkpoint_2d(tmp_path / "m.pt")
    out, js, nii = tmp_path / "o.png", tmp_path / "o.json", tmp_path / "saliency.nii.gz"
    result = cli("explain", tmp_path / "scan.nii.gz", "-m", ckpt, "-o", out, "--json", js, "--nifti-out", nii,
                 "--center", "18,20")
    assert result.exit_code == 0, result.stderr

    saved = nib.load(nii)
    data = np.asarray(saved.dataobj)
    assert saved.shape == volume.shape and data.dtype == np.float32
    assert np.allclose(saved.affine, _oblique_affine(), atol=1e-5)
    assert int(saved.header["sform_code"]) > 0
    record = json.loads(js.read_text())
    z = record["input"]["slice_index"]
    assert z == 2 and record["source_map"]["explained_slices"] == [2]
    assert not data[..., [0, 1, 3, 4]].any() and data[..., z].any()
    # Inside the patch around (18, 20) the map; outside, nothing (numpy (row, col) = NIfTI (y, x)).
    (r0, r1), (c0, c1) = record["preprocessing"]["region_source_px"]
    plane = data[..., z].T  # (rows, cols)
    rows, cols = np.arange(plane.shape[0]), np.arange(plane.shape[1])
    outside = ((rows < r0 - 1) | (rows > r1 + 1))[:, None] | ((cols < c0 - 1) | (cols > c1 + 1))[None, :]
    assert outside.any() and not plane[outside].any()
    # The evidence sits where the model saw it: centres of |saliency| mass agree in source pixels.
    step_r, step_c = record["preprocessing"]["source_step_px"]
    model = np.abs(explain(ExplainConfig(tmp_path / "scan.nii.gz", ckpt, tmp_path / "p.png",
                                         center=(18, 20))).maps[-1])
    i, j = (np.indices(model.shape) * model).sum(axis=(1, 2)) / model.sum()
    r, c = (np.indices(plane.shape) * np.abs(plane)).sum(axis=(1, 2)) / np.abs(plane).sum()
    assert abs(r - (r0 + i * step_r)) < 1.0 and abs(c - (c0 + j * step_c)) < 1.0


def test_nifti_map_of_a_volume_model_fills_the_explained_bscans(tmp_path, rng):
    volume = rng.integers(0, 255, size=(40, 24, 14)).astype(np.uint8)  # (x, y, z): 14 B-scans of 24 x 40
    nib.save(nib.Nifti1Image(volume, _oblique_affine()), tmp_path / "oct.nii")
    ckpt = checkpoint_volume(tmp_path / "ga.pt", n_bscans=10)
    result = explain(ExplainConfig(tmp_path / "oct.nii", ckpt, tmp_path / "v.png", top_slices=3,
                                   nifti_out=tmp_path / "v.nii"))
    saved = nib.load(tmp_path / "v.nii")
    data = np.asarray(saved.dataobj)
    assert saved.shape == volume.shape and np.allclose(saved.affine, _oblique_affine(), atol=1e-5)
    filled = sorted(int(k) for k in np.flatnonzero(np.abs(data).sum(axis=(0, 1))))
    assert filled == sorted(t["source_bscan"] for t in result.record["top_slices"])
    assert result.record["source_map"]["explained_slices"] == filled


def test_dicom_series_gives_nifti_parametric_map_and_seg_and_the_patient_stays_in_dicom(cli, tmp_path, rng):
    pytest.importorskip("highdicom")
    series = tmp_path / "series"
    _write_series(series, rng)
    ckpt = checkpoint_2d(tmp_path / "m.pt")
    out = tmp_path / "out"
    files = {"png": out / "o.png", "json": out / "o.json", "nii": out / "s.nii.gz", "pm": out / "pm.dcm",
             "seg": out / "seg.dcm", "sc": out / "sc.dcm"}
    result = cli("explain", series, "-m", ckpt, "-o", files["png"], "--json", files["json"], "--slice", "1",
                 "--nifti-out", files["nii"], "--dicom-map", files["pm"], "--dicom-seg", files["seg"],
                 "--seg-threshold", "0.4", "--dicom-out", files["sc"])
    assert result.exit_code == 0, result.stderr

    saved = nib.load(files["nii"])
    assert saved.shape == (32, 32, 4)
    assert np.allclose(saved.affine, _sitk_ras_affine(series), atol=1e-4)
    data = np.asarray(saved.dataobj)
    assert data[..., 1].any() and not data[..., [0, 2, 3]].any()

    sources = sorted((pydicom.dcmread(p, stop_before_pixels=True) for p in series.iterdir()),
                     key=lambda ds: int(ds.InstanceNumber))
    explained_uid = sources[1].SOPInstanceUID  # slices are stacked along the normal: instance order here
    for path, sop_class in ((files["pm"], PM_STORAGE), (files["seg"], SEG_STORAGE)):
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID == sop_class
        assert ds.StudyInstanceUID == sources[0].StudyInstanceUID
        assert ds.SeriesInstanceUID != sources[0].SeriesInstanceUID
        referenced = ds.ReferencedSeriesSequence[0]
        assert referenced.SeriesInstanceUID == sources[0].SeriesInstanceUID
        assert [r.ReferencedSOPInstanceUID for r in referenced.ReferencedInstanceSequence] == [explained_uid]
        assert explained_uid in {r.ReferencedSOPInstanceUID for r in ds.SourceImageSequence}
        assert str(ds.PatientName) == PATIENT["PatientName"]  # derived objects are filed with their patient
    pm = pydicom.dcmread(files["pm"])
    assert pm.NumberOfFrames == 1
    assert np.allclose(pm.pixel_array, data[..., 1].T, atol=1e-6)  # the frame is the NIfTI's slice 1
    seg = pydicom.dcmread(files["seg"])
    mask = seg.pixel_array.astype(bool)
    plane = data[..., 1].T
    assert mask.any() and np.array_equal(mask, plane >= 0.4 * plane.max())

    # The patient: nowhere outside the DICOM objects, the NIfTI's decompressed bytes included.
    written = [p for p in out.rglob("*") if p.is_file() and p.suffix != ".dcm"]
    assert {p.name for p in written} >= {"o.png", "o.json", "s.nii.gz"}
    _assert_no_patient(*(p.read_bytes() for p in written), gzip.decompress(files["nii"].read_bytes()),
                       result.stdout.encode(), result.stderr.encode())


def test_nifti_map_of_a_single_dicom_and_a_png(tmp_path):
    ckpt = checkpoint_2d(tmp_path / "m.pt")
    scan = ct_with_patient(tmp_path / "ct.dcm")
    explain(ExplainConfig(scan, ckpt, tmp_path / "a.png", nifti_out=tmp_path / "ct.nii"))
    ds = pydicom.dcmread(scan)
    saved = nib.load(tmp_path / "ct.nii")
    assert saved.shape == (ds.Columns, ds.Rows, 1)
    assert np.allclose(saved.affine[:3, 3], [-p if i < 2 else p for i, p in enumerate(map(float,
                                                                         ds.ImagePositionPatient))])
    assert np.allclose(np.linalg.norm(saved.affine[:3, :2], axis=0), [float(v) for v in ds.PixelSpacing[::-1]])

    from PIL import Image

    Image.fromarray(np.linspace(0, 255, 48 * 40).reshape(48, 40).astype(np.uint8)).save(tmp_path / "p.png")
    result = explain(ExplainConfig(tmp_path / "p.png", ckpt, tmp_path / "b.png", nifti_out=tmp_path / "p.nii.gz"))
    saved = nib.load(tmp_path / "p.nii.gz")
    assert saved.shape == (40, 48) and np.allclose(saved.affine, np.eye(4))
    assert np.asarray(saved.dataobj).any()
    assert any("spacing-only affine" in note for note in result.record["notes"])


def test_dicom_map_without_highdicom_is_one_line_naming_the_extra(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "highdicom", None)  # `import highdicom` raises ImportError
    scan = ct_with_patient(tmp_path / "ct.dcm")
    ckpt = checkpoint_2d(tmp_path / "m.pt")
    for flag in ("--dicom-map", "--dicom-seg"):
        result = cli("explain", scan, "-m", ckpt, "-o", tmp_path / "o.png", flag, tmp_path / "x.dcm")
        assert result.exit_code == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ppi:") and flag in lines[0], result.stderr
        assert "pip install 'ppi-cli[dicom-out]'" in lines[0]
        assert not (tmp_path / "o.png").exists() and not (tmp_path / "x.dcm").exists()


@pytest.mark.parametrize(("args", "words"), [
    (["--nifti-out", "map.png"], ".nii or .nii.gz"),
    (["--dicom-seg", "s.dcm", "--seg-threshold", "0"], "--seg-threshold 0"),
    (["--dicom-map", "m.dcm"], "--dicom-map needs a DICOM input"),
])
def test_export_option_errors_are_one_line(cli, tmp_path, args, words):
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "img.png")
    ckpt = checkpoint_2d(tmp_path / "m.pt")
    result = cli("explain", tmp_path / "img.png", "-m", ckpt, "-o", tmp_path / "o.png",
                 *[str(tmp_path / a) if a.endswith((".png", ".dcm")) else a for a in args])
    assert result.exit_code == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert not (tmp_path / "o.png").exists()


def test_dicom_map_of_a_multi_frame_file_is_refused_before_anything_is_written(cli, tmp_path, rng):
    pytest.importorskip("highdicom")
    scan, _ = opt_with_patient(tmp_path / "oct.dcm", rng, n=6)
    ckpt = checkpoint_volume(tmp_path / "ga.pt", n_bscans=6)
    result = cli("explain", scan, "-m", ckpt, "-o", tmp_path / "o.png", "--nifti-out", tmp_path / "o.nii",
                 "--dicom-seg", tmp_path / "s.dcm")
    assert result.exit_code == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "multi-frame" in lines[0] and "--nifti-out" in lines[0], result.stderr
    assert not any((tmp_path / name).exists() for name in ("o.png", "o.nii", "s.dcm"))
