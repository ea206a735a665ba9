# SPDX-License-Identifier: MIT
"""Overlay PNGs: promised size, heat only where the saliency is, and a DICOM SC that files in the input's study."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from ppi_cli.errors import DataError
from ppi_cli.reports.dicom_sc import read_png_rgb, write_secondary_capture
from ppi_cli.reports.overlay import (
    caption_text,
    heat_rgba,
    heat_scale,
    render_image_overlay,
    render_volume_overlay,
    volume_size_px,
)


def _coloured(rgb: np.ndarray) -> np.ndarray:
    """Pixels that are not grey (the heat overlay is the only colour drawn on an image panel)."""
    rgb = rgb.astype(int)
    return (np.abs(rgb[..., 0] - rgb[..., 1]) > 8) | (np.abs(rgb[..., 1] - rgb[..., 2]) > 8)


def _panel_pixels(rgb, box, row_frac, col_frac):
    r0, r1, c0, c1 = box
    return rgb[int(r0 + row_frac[0] * (r1 - r0)):int(r0 + row_frac[1] * (r1 - r0)),
               int(c0 + col_frac[0] * (c1 - c0)):int(c0 + col_frac[1] * (c1 - c0))]


def test_heat_is_transparent_where_low_and_opaque_where_high():
    s = np.array([[0.0, -3.0, 0.1, 1.0, 10.0]])
    rgba = heat_rgba(s, scale=1.0)
    assert rgba[0, :3, 3].tolist() == [0.0, 0.0, 0.0]  # zero, negative, below the floor
    assert rgba[0, 3, 3] == pytest.approx(rgba[0, 4, 3]) and rgba[0, 3, 3] > 0.5  # clipped at full heat
    assert heat_scale([np.zeros((3, 3)), -np.ones((2, 2))]) == 0.0
    assert heat_rgba(s, scale=0.0)[..., 3].max() == 0.0


def test_image_overlay_size_and_heat_location(tmp_path, rng):
    image = 0.4 + 0.2 * rng.random((64, 96))
    saliency = np.zeros((64, 96))
    saliency[8:24, 60:90] = 1.0  # top right block
    saliency[40:60, 4:30] = -1.0  # negative evidence is not drawn
    out = tmp_path / "o.png"
    layout = render_image_overlay(out, image, saliency, caption_text(score=0.7, label="pos", method="wbp",
                                                                      model="tiny"))
    rgb = read_png_rgb(out)
    assert rgb.shape == (560, 640, 3) and layout.size_px == (640, 560)
    box = layout.panels["image"]
    hot = _panel_pixels(rgb, box, (9 / 64, 23 / 64), (61 / 96, 89 / 96))
    cold = _panel_pixels(rgb, box, (41 / 64, 59 / 64), (5 / 96, 29 / 96))
    blank = _panel_pixels(rgb, box, (30 / 64, 36 / 64), (35 / 96, 55 / 96))
    assert _coloured(hot).mean() > 0.95
    assert not _coloured(cold).any() and not _coloured(blank).any()


def test_volume_overlay_size_and_panels(tmp_path, rng):
    volume = rng.random((10, 32, 48)) * 0.5
    attention = np.linspace(0, 1, 10) / np.linspace(0, 1, 10).sum()
    scores = np.linspace(0.1, 0.9, 10)
    maps = {}
    for k in (9, 8, 7, 6):
        m = np.zeros((32, 48))
        m[4:12, 30:44] = 1.0
        maps[k] = m
    out = tmp_path / "v.png"
    layout = render_volume_overlay(out, volume, maps, attention, scores, "GA: score 0.8")
    rgb = read_png_rgb(out)
    assert (rgb.shape[1], rgb.shape[0]) == volume_size_px(4) == layout.size_px
    assert set(layout.panels) == {"bscan 9", "bscan 8", "bscan 7", "bscan 6"}
    for box in layout.panels.values():
        assert _coloured(_panel_pixels(rgb, box, (5 / 32, 11 / 32), (31 / 48, 43 / 48))).mean() > 0.95
        assert not _coloured(_panel_pixels(rgb, box, (16 / 32, 30 / 32), (2 / 48, 26 / 48))).any()
    with pytest.raises(ValueError):
        render_volume_overlay(out, volume, maps, attention[:3], scores, "x")


def _source_with_patient():
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PID-424242"
    ds.PatientBirthDate = "19500101"
    return ds


def test_secondary_capture_reads_back_in_the_input_study(tmp_path, rng):
    source = _source_with_patient()
    rgb = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    out = write_secondary_capture(tmp_path / "sc.dcm", rgb, source, "WBP saliency overlay")
    sc = pydicom.dcmread(out)
    assert sc.StudyInstanceUID == source.StudyInstanceUID
    assert sc.SeriesInstanceUID != source.SeriesInstanceUID and sc.SOPInstanceUID != source.SOPInstanceUID
    assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" == sc.file_meta.MediaStorageSOPClassUID
    assert list(sc.ImageType) == ["DERIVED", "SECONDARY"]
    assert sc.DerivationDescription == "WBP saliency overlay"
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert (sc.PatientName, sc.PatientID, sc.PatientBirthDate) == ("Doe^Jane", "PID-424242", "19500101")
    np.testing.assert_array_equal(sc.pixel_array, rgb)
    # Nothing but the patient module carries the name: blank it and the bytes no longer hold it.
    for kw in ("PatientName", "PatientID", "PatientBirthDate"):
        setattr(sc, kw, "")
    sc.save_as(tmp_path / "blank.dcm")
    data = (tmp_path / "blank.dcm").read_bytes()
    assert b"Doe" not in data and b"424242" not in data and b"19500101" not in data


def test_secondary_capture_needs_a_study(tmp_path):
    source = _source_with_patient()
    del source.StudyInstanceUID
    with pytest.raises(DataError, match="StudyInstanceUID"):
        write_secondary_capture(tmp_path / "sc.dcm", np.zeros((2, 2, 3), np.uint8), source, "x")
    assert not (tmp_path / "sc.dcm").exists()
