# SPDX-License-Identifier: MIT
"""The explain input loader: every pydicom test file loads or fails in one line; series, pictures, arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from helpers import hide_decoders
from pydicom.data import get_testdata_file, get_testdata_files

from ppi_cli.data.explain_input import load_input
from ppi_cli.errors import DataError, MissingExtraError, PpiError


@pytest.mark.parametrize("kind", ["image", "volume"])
def test_every_pydicom_test_file_loads_or_fails_in_one_line(kind, capsys):
    paths = get_testdata_files()  # files and the folders of the DICOMDIR test tree
    assert len(paths) > 150
    loaded, failed = [], []
    for path in paths:
        try:
            result = load_input(path, kind)
        except PpiError as exc:
            line = exc.one_line()
            assert "\n" not in line and path in line, line  # one line, naming the file
            failed.append(Path(path).name)
            continue
        dims = {"image": (2, 3), "volume": (3,)}[kind]
        assert result.kind == kind and result.pixels.ndim in dims, (path, result.pixels.shape)
        assert result.pixels.dtype == np.float32 and np.isfinite(result.pixels).all(), path
        loaded.append(Path(path).name)
    assert capsys.readouterr().err == ""  # pydicom warnings (which may quote header values) stay silent
    if kind == "image":
        assert len(loaded) >= 80 and {"CT_small.dcm", "MR_small_RLE.dcm", "examples_palette.dcm"} <= set(loaded)
        assert {"rtplan.dcm", "README.txt", "MR_truncated.dcm"} <= set(failed)
    else:
        assert {"rtdose.dcm", "examples_ybr_color.dcm"} <= set(loaded) and "CT_small.dcm" in failed


def test_compressed_without_decoder_names_the_codecs_extra(monkeypatch):
    path = get_testdata_file("MR_small_jpeg_ls_lossless.dcm")
    hide_decoders(monkeypatch, path)
    with pytest.raises(MissingExtraError) as info:
        load_input(path)
    assert "ppi-cli[codecs]" in info.value.one_line() and "JPEG-LS" in info.value.one_line()


def test_ct_slice_is_in_hounsfield_units():
    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    got = load_input(path)
    assert got.units == "HU" and got.modality == "CT" and got.spacing_mm == pytest.approx((0.661468, 0.661468))
    np.testing.assert_allclose(got.pixels, expected)
    assert got.header.StudyInstanceUID == ds.StudyInstanceUID and "PixelData" not in got.header


def test_specific_failures_say_what_is_wrong():
    cases = {"rtplan.dcm": "RT Plan Storage", "MR_truncated.dcm": "truncated", "README.txt": "not a DICOM file",
             "meta_missing_tsyntax.dcm": "Transfer Syntax"}
    for name, words in cases.items():
        with pytest.raises(DataError, match=words):
            load_input(get_testdata_file(name))
    dicomdir = Path(get_testdata_file("DICOMDIR"))
    with pytest.raises(DataError, match="DICOMDIR"):
        load_input(dicomdir)


def _write_series(folder: Path, z_values, series_uid="1.2.3.4", value_of=lambda z: z):
    folder.mkdir(parents=True, exist_ok=True)
    base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for i, z in enumerate(z_values):
        ds = base.copy()
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = f"1.2.3.4.{i + 10}"
        ds.ImagePositionPatient = [0.0, 0.0, float(z)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.InstanceNumber = 99 - i  # contradicts the positions: positions must win
        arr = np.full((128, 128), int(value_of(z)) + 1024, dtype=np.int16)
        ds.PixelData = arr.tobytes()
        ds.save_as(folder / f"slice_{i}")  # no .dcm: found by content


def test_series_folder_is_sorted_by_position(tmp_path):
    folder = tmp_path / "series"
    _write_series(folder, [30.0, 10.0, 20.0, 0.0, 40.0])
    (folder / "notes.txt").write_text("not dicom")
    vol = load_input(folder, "volume")
    assert vol.source == "dicom-series" and vol.pixels.shape == (5, 128, 128)
    assert vol.pixels[:, 0, 0].tolist() == [0.0, 10.0, 20.0, 30.0, 40.0]
    assert vol.spacing_mm[0] == pytest.approx(10.0)
    image = load_input(folder, "image")
    assert image.pixels[0, 0] == 20.0 and image.slice_index == 2 and "middle" in image.notes[0]
    assert load_input(folder, "image", slice_index=4).pixels[0, 0] == 40.0
    with pytest.raises(DataError, match="--slice 9 is outside the 5 slices"):
        load_input(folder, "image", slice_index=9)


def test_folder_with_two_series_is_refused(tmp_path):
    _write_series(tmp_path / "mixed", [0.0, 1.0])
    _write_series(tmp_path / "other", [0.0], series_uid="9.9.9")
    (tmp_path / "other" / "slice_0").rename(tmp_path / "mixed" / "extra")
    with pytest.raises(DataError, match="holds 2 DICOM series"):
        load_input(tmp_path / "mixed", "image")


def test_pictures_and_arrays(tmp_path, rng):
    from PIL import Image

    grey = rng.integers(0, 256, size=(20, 30), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(tmp_path / "grey_as_rgb.png")
    colour = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    Image.fromarray(colour).save(tmp_path / "c.png")
    np.testing.assert_array_equal(load_input(tmp_path / "g.png").pixels, grey)
    np.testing.assert_array_equal(load_input(tmp_path / "grey_as_rgb.png").pixels, grey)
    np.testing.assert_array_equal(load_input(tmp_path / "c.png").pixels, colour)
    with pytest.raises(DataError, match="explains volumes"):
        load_input(tmp_path / "g.png", "volume")

    np.save(tmp_path / "img.npy", grey.astype(np.int16) - 500)
    assert load_input(tmp_path / "img.npy").pixels.min() < 0  # values untouched (HU may be negative)
    stack = rng.random((7, 10, 12)).astype(np.float32)
    np.save(tmp_path / "stack.npy", stack)
    got = load_input(tmp_path / "stack.npy", "image", slice_index=5)
    np.testing.assert_array_equal(got.pixels, stack[5])


def test_nifti_slice_follows_the_itk_axis_convention(tmp_path, rng):
    import nibabel as nib

    vol = rng.normal(size=(6, 8, 10)).astype(np.float32)  # numpy (z, y, x)
    nib.save(nib.Nifti1Image(vol.transpose(2, 1, 0), np.diag([0.7, 0.8, 2.5, 1.0])), tmp_path / "v.nii.gz")
    got = load_input(tmp_path / "v.nii.gz", "image")
    np.testing.assert_allclose(got.pixels, vol[3])
    assert got.spacing_mm == pytest.approx((0.8, 0.7)) and got.slice_index == 3


def test_oct_dicom_frames_come_in_stack_order_for_both_kinds(tmp_path, rng):
    from ppi_cli.data.oct.writers import write_dicom_opt

    volume = rng.integers(0, 256, size=(6, 10, 14), dtype=np.uint8)
    path = write_dicom_opt(tmp_path / "oct.dcm", volume, (0.1, 0.004, 0.01), stored_order=[3, 0, 5, 1, 4, 2])
    np.testing.assert_array_equal(load_input(path, "volume").pixels, volume)
    got = load_input(path, "image", slice_index=4)
    np.testing.assert_array_equal(got.pixels, volume[4])
    assert got.header is not None and got.slice_index == 4 and got.n_slices == 6


def test_colour_input_meets_a_grey_model_through_luma(rng):
    from ppi_cli.data.explain_input import LoadedInput
    from ppi_cli.engine.explain_inputs import InputSpec, prepare_image

    rgb = rng.integers(0, 256, size=(8, 8, 3)).astype(np.float32)
    spec = InputSpec(dataset="folder", kind="image", channels=1, crop=8, input_size=8)
    got = prepare_image(LoadedInput(rgb, "image", "image"), spec).tensor.numpy()
    expected = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255.0  # 8-bit input
    np.testing.assert_allclose(got[0], expected, atol=1e-5)
    spec3 = InputSpec(dataset="folder", kind="image", channels=3, crop=8, input_size=8)
    grey = rgb[..., 0]
    got3 = prepare_image(LoadedInput(grey, "image", "image"), spec3).tensor.numpy()
    assert got3.shape == (3, 8, 8) and np.allclose(got3[0], got3[2]) and np.allclose(got3[0], grey / 255.0)
