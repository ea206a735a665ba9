# SPDX-License-Identifier: MIT
"""`ppi explain` on 2D and volume checkpoints: PNG size and heat, JSON, DICOM SC, PHI, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from helpers import (
    PHI,
    PHI_BYTES,
    checkpoint_2d,
    checkpoint_volume,
    coloured,
    ct_with_patient,
    hide_decoders,
    opt_with_patient,
    png_pixel,
)
from pydicom.data import get_testdata_file

from ppi_cli.data.explain_input import LoadedInput
from ppi_cli.engine.explain import ExplainConfig, explain
from ppi_cli.engine.explain_inputs import InputSpec, prepare_image
from ppi_cli.reports.dicom_sc import read_png_rgb
from ppi_cli.reports.overlay import volume_size_px


def _assert_no_phi(*blobs: bytes) -> None:
    for blob in blobs:
        for phi in PHI_BYTES:
            assert phi not in blob, phi


def _assert_heat_follows_map(rgb: np.ndarray, box, saliency: np.ndarray) -> None:
    """The peak of the map is coloured; pixels whose whole neighbourhood is without evidence stay grey."""
    shape = saliency.shape
    peak = np.unravel_index(int(np.argmax(saliency)), shape)
    assert coloured(rgb[png_pixel(box, shape, *peak)]), "no heat at the saliency peak"
    from scipy.ndimage import maximum_filter

    quiet = np.argwhere(maximum_filter(saliency, size=3, mode="nearest") <= 0)
    assert len(quiet) > 0
    for i, j in quiet:
        assert not coloured(rgb[png_pixel(box, shape, i, j)]), (i, j)


def test_explain_2d_cli_writes_overlay_json_and_capture_without_phi(cli, tmp_path):
    scan = ct_with_patient(tmp_path / "scan.dcm")
    ckpt = checkpoint_2d(tmp_path / "lidc.pt")
    out, js, sc = tmp_path / "o" / "overlay.png", tmp_path / "o" / "result.json", tmp_path / "o" / "overlay.dcm"
    result = cli("explain", scan, "--model", ckpt, "--out", out, "--json", js, "--dicom-out", sc, "--center", "60,70")
    assert result.exit_code == 0, result.stderr
    rgb = read_png_rgb(out)
    assert rgb.shape == (560, 640, 3)

    record = json.loads(js.read_text())
    assert 0.0 < record["score"] < 1.0 and record["label"] in ("benign", "malignant")
    assert record["method"] == "wbp" and record["explained_class"] == "malignant" and record["kind"] == "image"
    assert record["preprocessing"]["center"] == [60.0, 70.0] and record["preprocessing"]["size"] == [32, 32]
    box = record["saliency"]["top_bbox_px"]
    assert 0 <= box["row_min"] <= box["row_max"] < 32 and 0 <= box["col_min"] <= box["col_max"] < 32
    src = record["saliency"]["top_bbox_source_px"]
    # 32 model pixels at 0.5 mm cover 16 mm = 24.2 source pixels of 0.66 mm around (60, 70).
    assert 47 <= src["row_min"] <= src["row_max"] <= 73 and 57 <= src["col_min"] <= src["col_max"] <= 83

    capture = pydicom.dcmread(sc)
    source = pydicom.dcmread(scan)
    assert capture.StudyInstanceUID == source.StudyInstanceUID
    assert capture.SeriesInstanceUID != source.SeriesInstanceUID
    assert list(capture.ImageType) == ["DERIVED", "SECONDARY"] and "wbp saliency" in capture.DerivationDescription
    assert str(capture.PatientName) == PHI["PatientName"] and capture.PatientID == PHI["PatientID"]
    np.testing.assert_array_equal(capture.pixel_array, rgb)

    # PHI: nowhere but the capture's patient module; not in the PNG, the JSON or the terminal.
    _assert_no_phi(out.read_bytes(), js.read_bytes(), result.stdout.encode(), result.stderr.encode())
    for keyword in PHI:
        setattr(capture, keyword, "")
    capture.save_as(tmp_path / "blanked.dcm")
    _assert_no_phi((tmp_path / "blanked.dcm").read_bytes())


def test_explain_2d_heat_is_where_the_saliency_is(tmp_path):
    ckpt = checkpoint_2d(tmp_path / "lidc.pt")
    result = explain(ExplainConfig(Path(get_testdata_file("CT_small.dcm")), ckpt, tmp_path / "o.png",
                                   center=(64, 64)))
    saliency = result.maps[-1]
    assert saliency.shape == (32, 32) and (saliency > 0).any()
    _assert_heat_follows_map(read_png_rgb(tmp_path / "o.png"), result.layout.panels["image"], saliency)


def test_explain_without_center_resizes_the_whole_slice_with_a_note(tmp_path):
    ckpt = checkpoint_2d(tmp_path / "lidc.pt")
    result = explain(ExplainConfig(Path(get_testdata_file("CT_small.dcm")), ckpt, tmp_path))
    assert (tmp_path / "overlay.png").is_file()
    assert any("--center" in note for note in result.record["notes"])
    assert result.record["preprocessing"]["source_step_px"] == [4.0, 4.0]  # 128 source pixels onto 32


def test_explain_volume_attention_montage_json_and_capture(cli, tmp_path, rng):
    scan, volume = opt_with_patient(tmp_path / "oct.dcm", rng, n=14)
    ckpt = checkpoint_volume(tmp_path / "ga.pt", n_bscans=10)
    out, js, sc = tmp_path / "v.png", tmp_path / "v.json", tmp_path / "v.dcm"
    result = cli("explain", scan, "-m", ckpt, "-o", out, "--json", js, "--dicom-out", sc, "--top-slices", "4")
    assert result.exit_code == 0, result.stderr
    rgb = read_png_rgb(out)
    assert (rgb.shape[1], rgb.shape[0]) == volume_size_px(4)

    record = json.loads(js.read_text())
    attention = np.asarray(record["attention"])
    assert attention.shape == (10,) and attention.sum() == pytest.approx(1.0, abs=1e-4)
    assert len(record["slice_scores"]) == 10 and 0.0 < record["score"] < 1.0
    tops = [t["bscan"] for t in record["top_slices"]]
    assert tops == list(np.argsort(-attention, kind="stable")[:4])
    # 14 stored B-scans resampled to 10 by nearest index (bin centres).
    assert [t["source_bscan"] for t in record["top_slices"]] == [int((k + 0.5) * 14 / 10) for k in tops]
    assert pydicom.dcmread(sc).StudyInstanceUID == pydicom.dcmread(scan).StudyInstanceUID
    _assert_no_phi(out.read_bytes(), js.read_bytes(), result.stdout.encode(), result.stderr.encode())


def test_explain_volume_heat_per_panel(tmp_path, rng):
    np.save(tmp_path / "vol.npy", rng.integers(0, 255, size=(10, 24, 40), dtype=np.uint8))
    ckpt = checkpoint_volume(tmp_path / "ga.pt", n_bscans=10)
    result = explain(ExplainConfig(tmp_path / "vol.npy", ckpt, tmp_path / "v.png", top_slices=3))
    rgb = read_png_rgb(tmp_path / "v.png")
    assert len(result.maps) == 3
    for k, saliency in result.maps.items():
        assert saliency.shape == (24, 40)
        _assert_heat_follows_map(rgb, result.layout.panels[f"bscan {k}"], saliency)


def test_prepare_image_follows_the_meta_window_spacing_and_crop(rng):
    hu = rng.uniform(-1200, 600, size=(40, 50)).astype(np.float32)
    loaded = LoadedInput(hu, "image", "dicom", (0.5, 0.5), "CT", "HU")
    spec = InputSpec(dataset="lidc", kind="image", window=(-1000.0, 400.0), crop=11, input_size=11, spacing_mm=0.5)
    prepared = prepare_image(loaded, spec, center=(20, 30))
    expected = np.clip((hu[15:26, 25:36] - (-1000.0)) / 1400.0, 0, 1)  # same spacing: an exact crop
    np.testing.assert_allclose(prepared.tensor[0].numpy(), expected, atol=1e-6)
    assert prepared.geometry.to_source([(0, 10), (0, 10)]) == [(15, 25), (25, 35)]
    # Twice the model's spacing in the input: one model pixel is half a source pixel.
    coarse = prepare_image(LoadedInput(hu, "image", "dicom", (1.0, 1.0), "CT", "HU"), spec, center=(20, 30))
    assert coarse.geometry.row_step == 0.5 and coarse.geometry.to_source([(0, 10), (0, 10)]) == [(18, 22), (28, 32)]
    with pytest.raises(Exception, match="outside"):
        prepare_image(loaded, spec, center=(45, 3))


ERROR_CASES = {
    "rtplan": (lambda tmp: [get_testdata_file("rtplan.dcm")], "holds no image"),
    "truncated": (lambda tmp: [get_testdata_file("MR_truncated.dcm")], "truncated"),
    "dicom-out for png": (lambda tmp: [tmp / "img.png", "--dicom-out", tmp / "x.dcm"], "--dicom-out needs a DICOM"),
    "center outside": (lambda tmp: [get_testdata_file("CT_small.dcm"), "--center", "500,3"], "outside"),
    "unknown method": (lambda tmp: [get_testdata_file("CT_small.dcm"), "--method", "magic"], "magic"),
    "not a checkpoint": (lambda tmp: [get_testdata_file("CT_small.dcm"), "-m", tmp / "img.png"], "checkpoint"),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_explain_errors_are_one_line(cli, tmp_path, case):
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "img.png")
    ckpt = checkpoint_2d(tmp_path / "lidc.pt")
    args, words = ERROR_CASES[case]
    argv = ["explain", *args(tmp_path), "-o", tmp_path / "o.png"]
    if "-m" not in argv:
        argv += ["-m", ckpt]
    result = cli(*argv)
    assert result.exit_code == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ppi:") and words in lines[0], result.stderr
    assert not (tmp_path / "o.png").exists()


def test_compressed_input_names_the_codecs_extra_through_the_cli(cli, tmp_path, monkeypatch):
    ckpt = checkpoint_2d(tmp_path / "lidc.pt")
    scan = get_testdata_file("JPEGLSNearLossless_08.dcm")
    hide_decoders(monkeypatch, scan)
    result = cli("explain", scan, "-m", ckpt, "-o", tmp_path / "o.png")
    assert result.exit_code == 1 and "ppi-cli[codecs]" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_explain_calls_positives_at_the_stored_threshold_and_says_when_none_is_stored(tmp_path):
    from ppi_cli.checkpoint import load_checkpoint, save_checkpoint

    ckpt = checkpoint_2d(tmp_path / "lidc.pt")
    payload = load_checkpoint(ckpt)
    first = explain(ExplainConfig(Path(get_testdata_file("CT_small.dcm")), ckpt, tmp_path / "a.png"))
    score = first.record["score"]
    for value, label in ((score - 1e-3, "malignant"), (score + 1e-3, "benign")):
        meta = dict(payload["meta"], threshold={"value": value, "source": "validation Youden J"})
        save_checkpoint(tmp_path / "t.pt", payload["state_dict"], meta)
        record = explain(ExplainConfig(Path(get_testdata_file("CT_small.dcm")), tmp_path / "t.pt",
                                       tmp_path / "t.png")).record
        assert record["label"] == label and record["threshold"]["value"] == value
        assert not any("threshold" in note for note in record["notes"])
    old = {k: v for k, v in payload["meta"].items() if k != "threshold"}  # a checkpoint from before the choice
    save_checkpoint(tmp_path / "old.pt", payload["state_dict"], old)
    record = explain(ExplainConfig(Path(get_testdata_file("CT_small.dcm")), tmp_path / "old.pt",
                                   tmp_path / "o.png")).record
    assert record["threshold"]["value"] == 0.5 and any("no operating threshold" in n for n in record["notes"])
    assert record["label"] == ("malignant" if score >= 0.5 else "benign")
