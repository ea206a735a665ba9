# SPDX-License-Identifier: MIT
"""Bad series go to errors.csv and the run goes on; --strict stops at the first with one line, exit 1."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET

import pandas as pd
import pydicom
import pytest
from helpers import ct_series_folders, make_tree


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    tree = make_tree(tmp_path_factory.mktemp("bad") / "raw", patients=2, size=64, slices=10, seed=0)
    return tree.root


@pytest.fixture
def tree(pristine, tmp_path):
    root = tmp_path / "raw"
    shutil.copytree(pristine, root)
    folder = next(f for f in ct_series_folders(root) if "characteristics" in next(f.glob("*.xml")).read_text())
    series_uid = str(pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True).SeriesInstanceUID)
    return root, folder, series_uid


def _middle(folder):
    files = sorted(folder.glob("*.dcm"))
    return files[len(files) // 2]


def _truncate(folder):
    path = _middle(folder)
    path.write_bytes(path.read_bytes()[:-100])
    return "truncated file", path


def _cut_header(folder):
    path = _middle(folder)
    path.write_bytes(path.read_bytes()[:200])
    return "missing slice between", None


def _delete_slice(folder):
    _middle(folder).unlink()
    return "missing slice between", None


def _change_spacing(folder):
    path = _middle(folder)
    ds = pydicom.dcmread(path)
    ds.PixelSpacing = [float(ds.PixelSpacing[0]) * 1.5, float(ds.PixelSpacing[1]) * 1.5]
    ds.save_as(path)
    return "inconsistent pixel spacing", None


def _absent_slice_in_xml(folder):
    path = next(folder.glob("*.xml"))
    tree = ET.parse(path)
    for nodule in tree.getroot().iter("{http://www.nih.gov}unblindedReadNodule"):
        if nodule.find("{http://www.nih.gov}characteristics") is not None:
            roi = nodule.find("{http://www.nih.gov}roi")
            roi.find("{http://www.nih.gov}imageZposition").text = "9999"
            roi.find("{http://www.nih.gov}imageSOP_UID").text = "1.2.3.999"
            break
    tree.write(path)
    return "annotation names a slice that is absent (z=9999 mm, SOP 1.2.3.999)", None


def _edit_first_outline(folder, change):
    path = next(folder.glob("*.xml"))
    tree = ET.parse(path)
    for nodule in tree.getroot().iter("{http://www.nih.gov}unblindedReadNodule"):
        if nodule.find("{http://www.nih.gov}characteristics") is not None:
            change(nodule.find("{http://www.nih.gov}roi"))
            break
    tree.write(path)


def _nan_coordinate(folder):  # issue 19: once a bogus lesion at column 9.2e18
    _edit_first_outline(folder, lambda roi: setattr(roi.find("{http://www.nih.gov}edgeMap")
                                                    .find("{http://www.nih.gov}xCoord"), "text", "NaN"))
    return "NaN or infinite imageZposition/xCoord/yCoord", None


def _outline_outside(folder):
    _edit_first_outline(folder, lambda roi: setattr(roi.find("{http://www.nih.gov}edgeMap")
                                                    .find("{http://www.nih.gov}yCoord"), "text", "5000"))
    return "annotation outline lies outside the 64x64 image", None


def _duplicated_sop(folder):  # issue 19: once outlines on the wrong slice
    files = sorted(folder.glob("*.dcm"))
    first, other = pydicom.dcmread(files[2]), pydicom.dcmread(files[5])
    other.SOPInstanceUID = first.SOPInstanceUID
    other.file_meta.MediaStorageSOPInstanceUID = first.SOPInstanceUID
    other.save_as(files[5])
    return "share one SOPInstanceUID at different positions", None


CASES = {"truncated": _truncate, "header-cut": _cut_header, "missing-slice": _delete_slice,
         "inconsistent-spacing": _change_spacing, "xml-absent-slice": _absent_slice_in_xml,
         "xml-nan-coordinate": _nan_coordinate, "xml-outline-outside": _outline_outside,
         "duplicated-sop": _duplicated_sop}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_series_is_logged_and_the_run_goes_on(cli, tree, tmp_path, case):
    root, folder, series_uid = tree
    reason, path = CASES[case](folder)
    out = tmp_path / "cache"
    result = cli("prepare", "lidc", "--root", root, "--out", out, "--crop", 32, "--spacing", 2)
    assert result.exit_code == 0, result.stderr
    errors = pd.read_csv(out / "errors.csv", dtype=str).fillna("")
    row = errors[errors["series_uid"] == series_uid]
    assert len(row) == 1 and reason in row["reason"].iloc[0] and row["action"].iloc[0] == "series skipped"
    if path is not None:
        assert row["file"].iloc[0] == path.relative_to(root).as_posix()
    if case == "header-cut":
        assert (errors["action"] == "file skipped").sum() == 1
    manifest = pd.read_csv(out / "manifest.csv", dtype=str)
    assert series_uid not in set(manifest["series_uid"]) and len(manifest) > 0  # the other patient is prepared
    assert (out / "cache.json").is_file() and "errors.csv" in result.stderr
    assert "LIDC-IDRI-000" not in result.stdout + result.stderr  # patient IDs stay in the manifest


@pytest.mark.parametrize("case", ["truncated", "xml-absent-slice"])
def test_strict_stops_at_the_first_bad_series(cli, tree, tmp_path, case):
    root, folder, series_uid = tree
    reason, _ = CASES[case](folder)
    out = tmp_path / "cache"
    result = cli("prepare", "lidc", "--root", root, "--out", out, "--crop", 32, "--spacing", 2, "--strict")
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("ppi:")]
    assert len(lines) == 1 and f"series {series_uid}" in lines[0] and reason in lines[0] and "--strict" in lines[0]
    assert "Traceback" not in result.stderr and "LIDC-IDRI-000" not in result.stderr
    assert not (out / "cache.json").exists() and (out / "errors.csv").is_file()
