# SPDX-License-Identifier: MIT
"""OCT readers: each format written by its own library, read back with the same array and orientation."""

from __future__ import annotations

import shutil
import sys
import types

import numpy as np
import pytest

from ppi_cli.data.oct.readers import detect_format, read_volume
from ppi_cli.data.oct.volume import to_uint8
from ppi_cli.data.oct.writers import write_dicom_opt
from ppi_cli.errors import DataError, MissingExtraError

SPACING = (0.12, 0.0039, 0.0117)  # between B-scans, axial, lateral (mm)


@pytest.fixture
def volume(rng):
    # Distinct shapes on every axis, so any transposition shows up as a shape or value mismatch.
    return rng.integers(0, 256, size=(12, 16, 24), dtype=np.uint8)


def _matlab_v73_header() -> bytes:
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    return text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"


def test_duke_mat_v5_has_the_bscan_axis_last(tmp_path, volume):
    from scipy.io import savemat

    images = np.moveaxis(volume, 0, -1).astype(np.float64)  # (depth, A-scans, B-scans), doubles as in the release
    savemat(tmp_path / "Farsiu_Subject_1001.mat", {"images": images, "Age": 71.0})
    got = read_volume(tmp_path / "Farsiu_Subject_1001.mat")
    assert got.source_format == "duke-mat" and got.spacing_mm is None
    assert np.array_equal(got.array, volume)
    assert got.array[3, 5, 7] == images[5, 7, 3]  # B-scan k, row r, column c == images(r, c, k)


def test_duke_mat_v73_is_read_through_hdf5_even_with_another_extension(tmp_path, volume):
    import h5py

    path = tmp_path / "subject.dat"
    images = np.moveaxis(volume, 0, -1)  # MATLAB's (512, 1000, 100) layout
    with h5py.File(path, "w", userblock_size=512) as fh:
        fh.create_dataset("images", data=images.T)  # MATLAB writes column-major: HDF5 sees reversed axes
    with open(path, "r+b") as fh:
        fh.write(_matlab_v73_header())
    assert detect_format(path) == "duke-mat-v73"
    got = read_volume(path)
    assert got.source_format == "duke-mat-v73" and np.array_equal(got.array, volume)


def test_dicom_opt_frames_stored_out_of_order_are_sorted(tmp_path, volume, rng):
    import pydicom

    order = rng.permutation(volume.shape[0])
    path = write_dicom_opt(tmp_path / "scan.dcm", volume, SPACING, stored_order=order)
    ds = pydicom.dcmread(path)
    stored = ds.pixel_array
    assert np.array_equal(stored, volume[order]) and not np.array_equal(stored, volume)  # really out of order
    positions = [int(f.FrameContentSequence[0].InStackPositionNumber) for f in ds.PerFrameFunctionalGroupsSequence]
    assert positions == [int(i) + 1 for i in order]
    got = read_volume(path)
    assert got.source_format == "dicom" and np.array_equal(got.array, volume)
    assert got.spacing_mm == pytest.approx(SPACING)


def test_dicom_opt_falls_back_to_the_dimension_index(tmp_path, volume, rng):
    import pydicom
    from pydicom.dataset import Dataset

    order = rng.permutation(volume.shape[0])
    path = write_dicom_opt(tmp_path / "scan.dcm", volume, SPACING, stored_order=order)
    ds = pydicom.dcmread(path)
    stack_id, stack_position = Dataset(), Dataset()
    stack_id.DimensionIndexPointer, stack_position.DimensionIndexPointer = 0x00209056, 0x00209057
    ds.DimensionIndexSequence = [stack_id, stack_position]  # the stack position is the second index
    for frame, index in zip(ds.PerFrameFunctionalGroupsSequence, order, strict=True):
        content = frame.FrameContentSequence[0]
        del content.InStackPositionNumber
        content.DimensionIndexValues = [1, int(index) + 1]
    ds.save_as(tmp_path / "no_stack_position")  # no extension: found by the DICM preamble
    got = read_volume(tmp_path / "no_stack_position")
    assert np.array_equal(got.array, volume)


def test_dicom_with_duplicate_stack_positions_is_refused(tmp_path, volume):
    import pydicom

    path = write_dicom_opt(tmp_path / "scan.dcm", volume, SPACING)
    ds = pydicom.dcmread(path)
    ds.PerFrameFunctionalGroupsSequence[1].FrameContentSequence[0].InStackPositionNumber = 1
    ds.save_as(path)
    with pytest.raises(DataError, match="InStackPositionNumber"):
        read_volume(path)


def test_shipped_multiframe_dicom_is_stretched_to_uint8(tmp_path):
    import pydicom
    from pydicom.data import get_testdata_file

    source = get_testdata_file("rtdose.dcm")  # 15 frames, 32-bit, MONOCHROME2, shipped with pydicom
    shutil.copy(source, tmp_path / "dose")
    pixels = pydicom.dcmread(source).pixel_array.astype(np.float64)
    expected = np.rint((pixels - pixels.min()) / (pixels.max() - pixels.min()) * 255).astype(np.uint8)
    got = read_volume(tmp_path / "dose")
    assert got.array.shape == (15, 10, 10) and np.array_equal(got.array, expected)
    assert "stretched" in got.notes


def test_nifti_written_by_simpleitk_keeps_itk_axes(tmp_path, volume):
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(volume)  # numpy (z, y, x) -> ITK (x, y, z)
    image.SetSpacing((SPACING[2], SPACING[1], SPACING[0]))
    sitk.WriteImage(image, str(tmp_path / "scan.nii.gz"))
    got = read_volume(tmp_path / "scan.nii.gz")
    assert got.source_format == "nifti" and np.array_equal(got.array, volume)
    assert got.spacing_mm == pytest.approx(SPACING)


def test_nifti_1_and_2_by_nibabel_under_a_misleading_extension(tmp_path, volume):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.transpose(volume, (2, 1, 0)), np.eye(4)), tmp_path / "scan.nii")
    (tmp_path / "scan.nii").rename(tmp_path / "scan.mat")
    assert detect_format(tmp_path / "scan.mat") == "nifti"
    assert np.array_equal(read_volume(tmp_path / "scan.mat").array, volume)
    nib.save(nib.Nifti2Image(np.transpose(volume, (2, 1, 0)), np.eye(4)), tmp_path / "two.nii.gz")
    assert np.array_equal(read_volume(tmp_path / "two.nii.gz").array, volume)


def test_npy_and_npz(tmp_path, volume):
    np.save(tmp_path / "v.npy", volume)
    assert np.array_equal(read_volume(tmp_path / "v.npy").array, volume)
    np.save(tmp_path / "one.npy", volume[0])
    assert read_volume(tmp_path / "one.npy").array.shape == (1, 16, 24)
    np.savez(tmp_path / "v.npz", volume=volume, spacing_mm=np.array(SPACING))
    got = read_volume(tmp_path / "v.npz")
    assert np.array_equal(got.array, volume) and got.spacing_mm == pytest.approx(SPACING)
    np.savez(tmp_path / "two.npz", a=volume, b=volume)
    with pytest.raises(DataError, match="'volume'"):
        read_volume(tmp_path / "two.npz")


def test_png_folder_in_natural_order(tmp_path, volume):
    from PIL import Image

    folder = tmp_path / "bscans"
    folder.mkdir()
    for k, bscan in enumerate(volume, start=1):  # bscan_1 .. bscan_12: plain sorting would put 10 before 2
        Image.fromarray(bscan).save(folder / f"bscan_{k}.png")
    (folder / "notes.txt").write_text("not an image")
    got = read_volume(folder)
    assert got.source_format == "image-folder" and np.array_equal(got.array, volume)
    Image.fromarray(volume[0, :8]).save(folder / "bscan_13.png")
    with pytest.raises(DataError, match="bscan_13.png"):
        read_volume(folder)


def test_sixteen_bit_tiff_folder_and_multipage_tiff(tmp_path, volume):
    from PIL import Image

    folder = tmp_path / "tiffs"
    folder.mkdir()
    deep = volume.astype(np.uint16) * 200 + 7
    for k, bscan in enumerate(deep):
        Image.fromarray(bscan).save(folder / f"{k:02d}.tif")
    expected = np.rint((deep - deep.min()) * (255.0 / (deep.max() - deep.min()))).astype(np.uint8)
    assert np.array_equal(read_volume(folder).array, expected)
    pages = [Image.fromarray(b) for b in volume]
    pages[0].save(tmp_path / "stack.tiff", save_all=True, append_images=pages[1:])
    got = read_volume(tmp_path / "stack.tiff")
    assert got.source_format == "image" and np.array_equal(got.array, volume)


def test_to_uint8_rules():
    unit = np.array([[[0.0, 0.5, 1.0]]])
    assert to_uint8(unit)[0].tolist() == [[[0, 128, 255]]]
    in_range = np.array([[[0.4, 254.6, np.nan]]])
    assert to_uint8(in_range)[0].tolist() == [[[0, 255, 0]]]
    wide = np.array([[[-100, 0, 300]]], dtype=np.int16)
    assert to_uint8(wide)[0].tolist() == [[[0, 64, 255]]]  # (0 + 100) / 400 * 255 = 63.75


def test_unknown_and_corrupt_files_name_the_file(tmp_path):
    (tmp_path / "scan.bin").write_bytes(b"\x01\x02garbage" * 100)
    with pytest.raises(DataError, match="scan.bin: not a recognised"):
        read_volume(tmp_path / "scan.bin")
    (tmp_path / "broken.mat").write_bytes(b"MATLAB 5.0 MAT-file".ljust(128, b" ") + b"\x00" * 10)
    with pytest.raises(DataError, match="broken.mat: cannot read as duke-mat"):
        read_volume(tmp_path / "broken.mat")
    with pytest.raises(DataError, match="no such file"):
        read_volume(tmp_path / "absent.mat")


def test_vendor_formats_without_the_extra_name_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "oct_converter", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "oct_converter.readers", None)
    monkeypatch.setitem(sys.modules, "eyepy", None)
    (tmp_path / "scan.E2E").write_bytes(b"\x00" * 64)
    with pytest.raises(MissingExtraError) as err:
        read_volume(tmp_path / "scan.E2E")
    assert "pip install 'ppi-cli[oct]'" in err.value.one_line() and "Heidelberg .e2e" in err.value.one_line()
    (tmp_path / "export.bin").write_bytes(b"HSF-OCT-103 " + b"\x00" * 64)  # a .vol under another name
    with pytest.raises(MissingExtraError, match="Heidelberg .vol"):
        read_volume(tmp_path / "export.bin")
    (tmp_path / "scan.fds").write_bytes(b"FOCTFDS" + b"\x00" * 64)
    assert detect_format(tmp_path / "scan.fds") == "topcon-fds"


def test_vendor_adapters_with_stand_in_libraries(tmp_path, monkeypatch, volume):
    class FakeVolume:
        def __init__(self, bscans):
            self.volume = list(bscans)
            self.pixel_spacing = [SPACING[2], SPACING[1], SPACING[0]]  # oct-converter: [x, y, z]

    class E2E:
        def __init__(self, path):
            self.path = path

        def read_oct_volume(self):
            return [FakeVolume(volume.astype(np.float32)), FakeVolume(volume[:2])]

    readers = types.ModuleType("oct_converter.readers")
    readers.E2E = E2E
    monkeypatch.setitem(sys.modules, "oct_converter", types.ModuleType("oct_converter"))
    monkeypatch.setitem(sys.modules, "oct_converter.readers", readers)
    (tmp_path / "scan.e2e").write_bytes(b"\x00" * 64)
    got = read_volume(tmp_path / "scan.e2e")
    assert got.source_format == "heidelberg-e2e" and np.array_equal(got.array, volume)
    assert got.spacing_mm == pytest.approx(SPACING)

    eyepy = types.ModuleType("eyepy")
    eyepy.import_heyex_vol = lambda path: types.SimpleNamespace(data=volume, scale_z=SPACING[0], scale_y=SPACING[1],
                                                                scale_x=SPACING[2])
    monkeypatch.setitem(sys.modules, "eyepy", eyepy)
    (tmp_path / "scan.vol").write_bytes(b"HSF-OCT-103 " + b"\x00" * 64)
    got = read_volume(tmp_path / "scan.vol")
    assert np.array_equal(got.array, volume) and got.spacing_mm == pytest.approx(SPACING)
