# SPDX-License-Identifier: MIT
"""`ppi prepare table` on a mixed hospital cohort, the `table` Dataset, and one epoch of training on it."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk
from helpers import PHI, PHI_BYTES
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from ppi_cli.config import load_recipe
from ppi_cli.data.cache import open_cache
from ppi_cli.data.datasets import build_dataset
from ppi_cli.data.table.images import read_table_image
from ppi_cli.data.table.normalise import apply_window, fit_slices, parse_window
from ppi_cli.data.table.prepare import TablePrepareConfig, prepare_table
from ppi_cli.errors import ConfigError, DataError


def dicom_series(folder, n=4, shape=(12, 10), spacing=(0.8, 1.6), value=300):
    """A CT series written with pydicom (positions, spacing, rescale), carrying a patient's name and ID."""
    folder.mkdir(parents=True)
    series, study = generate_uid(), generate_uid()
    for k in range(n):
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = uid = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, uid
        ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = "CT", series, study
        ds.PatientName, ds.PatientID, ds.PatientBirthDate = PHI["PatientName"], PHI["PatientID"], \
            PHI["PatientBirthDate"]
        ds.InstanceNumber, ds.ImagePositionPatient = k + 1, [0.0, 0.0, 2.5 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = list(spacing), 2.5
        ds.Rows, ds.Columns = shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        pixels = np.full(shape, value + 1024 + 10 * k, np.int16)
        pixels[: shape[0] // 2] = 0  # the upper half is air (-1024 HU)
        ds.PixelData = pixels.tobytes()
        ds.save_as(folder / f"{k:03d}.dcm", enforce_file_format=True)
    return folder


def png(path, value, shape=(20, 30)):
    Image.fromarray(np.full(shape, value, np.uint8), "L").save(path)
    return path


def cohort(root):
    """Twelve images of ten patients at two sites in five formats, one corrupt file and one missing path."""
    root.mkdir(parents=True)
    dicom_series(root / "p01_ct")
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((10, 12, 5)).astype(np.float32), np.eye(4)),
             root / "p02.nii.gz")
    sitk.WriteImage(sitk.GetImageFromArray(np.random.default_rng(1).random((3, 8, 8)).astype(np.float32)),
                    str(root / "p03.mha"))
    png(root / "p01_xray.png", 90, shape=(30, 20))
    np.save(root / "p04.npy", np.random.default_rng(2).random((16, 16)).astype(np.float32))
    rows = [("p01_ct", "P01", 1, "A"), ("p01_xray.png", "P01", 1, "A"), ("p02.nii.gz", "P02", 0, "A"),
            ("p03.mha", "P03", 1, "B"), ("p04.npy", "P04", 0, "B")]
    for i in range(5, 11):
        rows.append((png(root / f"p{i:02d}.png", 40 * (i % 2) + 20 * i).name, f"P{i:02d}", i % 2, "AB"[i % 2]))
    (root / "broken.nii.gz").write_bytes(b"\x00not a nifti at all" * 8)
    rows.append(("broken.nii.gz", "P11", 1, "A"))
    rows.append(("gone.dcm", "P12", 0, "B"))
    frame = pd.DataFrame(rows, columns=["path", "subject_id", "label", "site"])
    frame.to_csv(root / "cohort.csv", index=False)
    return root / "cohort.csv"


def test_mixed_cohort_prepares_trains_one_epoch_and_keeps_subjects_on_one_side(cli, tmp_path):
    manifest = cohort(tmp_path / "raw")
    cache = tmp_path / "cache"
    result = cli("prepare", "table", "--manifest", manifest, "--out", cache, "--size", "32", "--n-slices", "4")
    assert result.exit_code == 0, result.stderr
    assert "2 row(s) left out" in result.stderr
    info = open_cache(cache, "table", "x", verify=True)
    assert info.n_samples == 11 and info.extra["n_slices"] == 4
    errors = pd.read_csv(cache / "errors.csv")
    reasons = dict(zip(errors["path"], errors["reason"], strict=True))
    assert set(reasons) == {"broken.nii.gz", "gone.dcm"}
    assert "unreadable or corrupt NIfTI" in reasons["broken.nii.gz"] and "no such file" in reasons["gone.dcm"]
    manifest_out = pd.read_csv(cache / "manifest.csv", dtype=str)
    assert sorted(set(manifest_out["site"])) == ["A", "B"]
    assert (manifest_out["subject_id"] == "P01").sum() == 2
    formats = dict(zip(manifest_out["path"], manifest_out["source_format"], strict=True))
    assert formats["p01_ct"] == "DICOM series" and formats["p02.nii.gz"] == "NIfTI" and formats["p03.mha"] == \
        "MetaImage" and formats["p04.npy"] == "npy" and formats["p05.png"] == "picture"
    volumes = np.load(cache / "volumes.npy")
    assert volumes.shape == (11, 4, 32, 32) and volumes.dtype == np.uint8
    png_row = int(np.flatnonzero(manifest_out["path"] == "p01_xray.png")[0])
    assert (volumes[png_row] == volumes[png_row][0]).all()  # a 2-D image is its one slice, repeated
    for path in cache.rglob("*"):  # the DICOM patient's name and ID reach no output
        if path.is_file():
            assert not any(b in path.read_bytes() for b in PHI_BYTES), path.name
    assert not any(p in result.stdout + result.stderr for p in ("Doe", "PID-424242"))

    again = cli("prepare", "table", "--manifest", manifest, "--out", cache, "--size", "32", "--n-slices", "4")
    assert again.exit_code == 0 and "up to date" in again.stdout

    run = tmp_path / "run"
    trained = cli("train", "--recipe", "table-baseline-cpu", "--data", cache, "--out", run, "--device", "cpu",
                  "--epochs", "1", "--fold", "0", "--set", "eval.folds=2")
    assert trained.exit_code == 0, trained.stderr
    split = json.loads((run / "split.json").read_text())
    subjects = manifest_out["subject_id"].to_numpy()
    sides = [set(subjects[split[part]]) for part in ("train", "val", "test")]
    assert all(sides) and not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert (run / "best.pt").is_file()


def test_no_usable_row_is_one_line_and_exit_1(cli, tmp_path):
    root = tmp_path / "raw"
    root.mkdir()
    (root / "bad.dcm").write_bytes(b"garbage" * 20)
    pd.DataFrame({"path": ["bad.dcm", "nope.png", "x.png"], "subject_id": ["a", "b", ""],
                  "label": [1, 0, 1]}).to_csv(root / "c.csv", index=False)
    result = cli("prepare", "table", "--manifest", root / "c.csv", "--out", tmp_path / "cache", "--size", "16")
    assert result.exit_code == 1 and "no usable row among 3" in result.stderr
    errors = pd.read_csv(tmp_path / "cache" / "errors.csv")
    assert list(errors["line"]) == [2, 3, 4] and "column 'subject_id' is empty" in errors["reason"][2]
    assert "unreadable or corrupt DICOM" in errors["reason"][0]


def test_bad_labels_split_leaks_and_resume(tmp_path, monkeypatch):
    import ppi_cli.data.table.prepare as tp

    root = tmp_path / "raw"
    root.mkdir()
    for i in range(4):
        png(root / f"{i}.png", 50 * i)
    pd.DataFrame({"path": ["0.png", "1.png", "2.png", "3.png", "0.png"], "subject_id": ["a", "a", "b", "c", "d"],
                  "label": ["1", "0", "yes", "0", "1"], "split": ["train", "test", "", "", ""]}
                 ).to_csv(root / "c.csv", index=False)
    cfg = TablePrepareConfig(root / "c.csv", tmp_path / "cache", size=8)
    calls: list[str] = []
    real = tp.read_table_image
    monkeypatch.setattr(tp, "read_table_image", lambda p: calls.append(p.name) or real(p))
    first = prepare_table(cfg)
    reasons = pd.read_csv(tmp_path / "cache" / "errors.csv").set_index("line")["reason"]
    assert first.n_samples == 1 and first.n_slices == 1 and calls == ["3.png"]
    assert "a subject belongs to one split" in reasons[2] and "a subject belongs to one split" in reasons[3]
    assert "'yes' is not 0 or 1" in reasons[4] and "the same image as line 2" in reasons[6]
    with pytest.raises(DataError, match="c.csv:2: column 'split'"):
        prepare_table(TablePrepareConfig(root / "c.csv", tmp_path / "strict", size=8, strict=True))
    # An interrupted run resumes: the rows done before the interruption are not read again.
    pd.DataFrame({"path": ["0.png", "1.png", "2.png", "3.png"], "subject_id": ["a", "b", "c", "d"],
                  "label": [0, 1, 0, 1]}).to_csv(root / "c.csv", index=False)
    calls.clear()

    def dying(path):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(path.name)
        return real(path)

    monkeypatch.setattr(tp, "read_table_image", dying)
    with pytest.raises(KeyboardInterrupt):
        prepare_table(cfg)
    assert len(list((tmp_path / "cache" / ".parts").glob("*.npz"))) == 2  # the old cache stays until the move-in
    monkeypatch.setattr(tp, "read_table_image", lambda p: calls.append(p.name) or real(p))
    assert prepare_table(cfg).n_samples == 4 and calls == ["0.png", "1.png", "2.png", "3.png"]  # 2 and 3 once
    assert not (tmp_path / "cache" / ".parts").exists()


def test_reader_spacing_and_volume_axis(tmp_path):
    image = read_table_image(dicom_series(tmp_path / "ct", n=3, shape=(12, 10), spacing=(0.8, 1.6)))
    assert image.pixels.shape == (3, 12, 10) and image.spacing == pytest.approx((2.5, 0.8, 1.6))
    assert image.pixels[0, 0, 0] == -1024 and image.pixels[2, -1, -1] == 300 + 20  # rescaled to HU, sorted by z
    single = read_table_image(tmp_path / "ct" / "001.dcm")  # one DICOM file: a 2-D image
    assert single.pixels.shape == (1, 12, 10) and single.spacing[1:] == pytest.approx((0.8, 1.6))
    assert single.source_format == "DICOM" and not single.is_volume
    with pytest.raises(DataError, match="no DICOM series in this folder"):
        read_table_image(tmp_path)
    rgb = tmp_path / "c.png"
    Image.new("RGB", (5, 4), (255, 0, 0)).save(rgb)
    picture = read_table_image(rgb)
    assert picture.pixels.shape == (1, 4, 5) and picture.spacing is None and not picture.is_volume


def test_fit_slices_resamples_anisotropic_pixels_to_isotropic_and_pads():
    stack = np.full((2, 10, 20), 200, np.uint8)
    square, text = fit_slices(stack, (2.0, 1.0), 16)  # 10 rows of 2 mm x 20 columns of 1 mm: 20 x 20 mm
    assert square.shape == (2, 16, 16) and (square == 200).all() and "-> 16x16 (isotropic)" in text
    wide, _ = fit_slices(stack, None, 16)  # unit spacing: 10 x 20 -> 8 x 16, padded top and bottom
    assert (wide[:, 4:12] == 200).all() and (wide[:, :4] == 0).all() and (wide[:, 12:] == 0).all()
    tall, _ = fit_slices(stack, (4.0, 1.0), 16)  # 40 x 20 mm: 16 x 8, padded left and right
    assert (tall[:, :, 4:12] == 200).all() and (tall[:, :, :4] == 0).all()


def test_window_and_percentiles():
    pixels = np.array([[-1000.0, -300.0, 400.0, 2000.0]], np.float32)
    out, low, high = apply_window(pixels, (-1000.0, 400.0))
    assert out.tolist() == [[0, 128, 255, 255]] and (low, high) == (-1000.0, 400.0)
    ramp = np.arange(1000, dtype=np.float32)[None]
    out, low, high = apply_window(ramp, None, (10.0, 90.0))
    assert low == pytest.approx(99.9) and high == pytest.approx(899.1) and out[0, 0] == 0 and out[0, -1] == 255
    assert apply_window(np.ones((2, 2), np.float32), None)[0].max() == 0  # flat: no division by zero
    assert parse_window("-1000,400") == (-1000.0, 400.0) and parse_window(None) is None
    with pytest.raises(ConfigError, match="LOW must be below HIGH"):
        parse_window("5,1")


def test_table_dataset_serves_the_multiview_layout(tmp_path):
    manifest = cohort(tmp_path / "raw")
    prepare_table(TablePrepareConfig(manifest, tmp_path / "cache", size=16, n_slices=3))
    recipe = load_recipe("table-ppi-wbp-cpu")
    train = build_dataset("table", tmp_path / "cache", [0, 1], recipe, train=True)
    sample = train[0]
    assert sample["image"].shape == (3, 1, 16, 16) and sample["positions"].tolist() == [0, 1, 2]
    evaluation = build_dataset("table", tmp_path / "cache", None, recipe, train=False)
    assert len(evaluation) == 11 and evaluation[5]["image"].shape == (3, 1, 16, 16)


def test_masks_follow_their_image(tmp_path):
    root = tmp_path / "raw"
    root.mkdir()
    for i in range(2):
        png(root / f"{i}.png", 80, shape=(20, 40))
        mask = np.zeros((20, 40), np.uint8)
        mask[5:15, 10:20] = 255
        Image.fromarray(mask).save(root / f"m{i}.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "small.png")
    pd.DataFrame({"path": ["0.png", "1.png"], "subject_id": ["a", "b"], "label": [0, 1],
                  "mask_path": ["m0.png", "small.png"]}).to_csv(root / "c.csv", index=False)
    result = prepare_table(TablePrepareConfig(root / "c.csv", tmp_path / "cache", size=20))
    assert result.n_samples == 1 and result.n_errors == 1
    errors = pd.read_csv(tmp_path / "cache" / "errors.csv")
    assert "mask shape (1, 8, 8) is not the image's (1, 20, 40)" in errors["reason"][0]
    masks = np.load(tmp_path / "cache" / "masks.npy")  # 20 x 40 at 1 mm -> 10 x 20, rows 5..14 of 20
    assert masks.shape == (1, 1, 20, 20) and masks[0, 0].sum() == 5 * 5 and masks[0, 0, 7:12, 5:10].all()
    sample = build_dataset("table", tmp_path / "cache", None, load_recipe("table-ppi-wbp-cpu"), train=True)[0]
    assert sample["mask"].shape == (1, 1, 20, 20)
