# SPDX-License-Identifier: MIT
"""`ppi prepare lidc` end to end on `ppi synth lidc` output: answer key, layouts, workers, resume."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pydicom
import pytest
from helpers import load_cache, make_tree, to_2018_layout, to_oldest_layout

from ppi_cli.data.cache import open_cache
from ppi_cli.data.lidc import prepare as lidc_prepare
from ppi_cli.data.lidc.prepare import LidcPrepareConfig, prepare_lidc
from ppi_cli.errors import CacheError

SPACING, CROP = 1.0, 64


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Three synthetic patients (with holes, both labels, 1-4 readers per slice) prepared once."""
    base = tmp_path_factory.mktemp("lidc")
    tree = make_tree(base / "raw", patients=3, size=96, slices=16, seed=1)
    config = LidcPrepareConfig(root=tree.root, out=base / "cache", spacing=SPACING, crop=CROP)
    summary = prepare_lidc(config)
    return tree, config, summary


def _nearest_nodule(key: pd.DataFrame, row: pd.Series) -> int:
    nodules = key.drop_duplicates("nodule")
    d2 = (nodules["centre_row"] - row["centre_row"]) ** 2 + (nodules["centre_col"] - row["centre_col"]) ** 2
    return int(nodules["nodule"].iloc[int(np.argmin(d2.to_numpy()))])


def test_prepare_reproduces_the_answer_key(prepared):
    tree, config, summary = prepared
    manifest, images, masks = load_cache(config.out)
    key = pd.read_csv(tree.answer_key, dtype={"patient_id": str, "series_uid": str})
    assert len(manifest) == len(key) == summary.samples and images.shape == (len(key), CROP, CROP)
    assert masks.shape == (len(key), 4, CROP, CROP) and images.dtype == np.int16 and masks.dtype == np.uint8
    got, want = [], []
    for series, rows in manifest.groupby("series_uid"):
        series_key = key[key["series_uid"] == series]
        for _, lesion_rows in rows.groupby("lesion_id"):
            nodule = _nearest_nodule(series_key, lesion_rows.iloc[0])
            got += [(series, nodule, round(r.z, 3), r.n_readers, r.label) for r in lesion_rows.itertuples()]
    want = [(r.series_uid, r.nodule, round(r.z, 3), r.n_readers, r.label) for r in key.itertuples()]
    assert sorted(got) == sorted(want)
    assert set(manifest["label"]) == {0, 1} and set(manifest["n_readers"]) == {1, 2, 3, 4}
    assert (manifest["subject_id"] == manifest["patient_id"]).all()
    assert summary.non_ct_series == 1 and summary.cxr_xml_skipped == 1 and summary.centre_marks_dropped == 6
    info = open_cache(config.out, "lidc", "rebuild", params=config.cache_params(), verify=True)
    assert info.n_samples == len(key) and info.params["min_readers"] == 3


def test_every_union_mask_overlaps_the_painted_nodule(prepared):
    tree, config, _ = prepared
    manifest, _, masks = load_cache(config.out)
    key = pd.read_csv(tree.answer_key, dtype={"series_uid": str})
    offsets = (np.arange(CROP) - (CROP - 1) / 2) * SPACING
    for i, row in manifest.iterrows():
        series_key = key[key["series_uid"] == row["series_uid"]]
        truth = series_key[(series_key["nodule"] == _nearest_nodule(series_key, row))
                           & (np.abs(series_key["z"] - row["z"]) < 1e-3)].iloc[0]
        ps = row["pixel_spacing_row"]
        rr = (row["centre_row"] + offsets / ps)[:, None]  # (CROP, 1) native rows of the crop grid
        cc = (row["centre_col"] + offsets / ps)[None, :]  # (1, CROP)
        disk = (rr - truth["centre_row"]) ** 2 + (cc - truth["centre_col"]) ** 2 <= (truth["radius_mm"] / ps) ** 2
        union = masks[i].any(axis=0)
        assert (union & disk).any(), f"sample {i}: union mask misses the nodule"
        drawn = masks[i].reshape(4, -1).any(axis=1)
        assert drawn.sum() == row["n_readers"] == row["reader_slots"].count("x")
        assert [c == "x" for c in row["reader_slots"]] == drawn.tolist()


def test_crops_equal_scipy_bilinear_resampling_of_the_dicom(prepared):
    from scipy.ndimage import map_coordinates

    tree, config, _ = prepared
    manifest, images, _ = load_cache(config.out)
    offsets = (np.arange(CROP) - (CROP - 1) / 2) * SPACING
    for i in range(0, len(manifest), 7):
        row = manifest.iloc[i]
        ds = pydicom.dcmread(tree.root / row["file"])
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert float(ds.ImagePositionPatient[2]) == pytest.approx(row["z"])
        rr, cc = np.meshgrid(row["centre_row"] + offsets / row["pixel_spacing_row"],
                             row["centre_col"] + offsets / row["pixel_spacing_col"], indexing="ij")
        want = np.rint(map_coordinates(hu, [rr, cc], order=1, mode="constant", cval=-1024))
        assert np.abs(images[i].astype(float) - want).max() <= 1.0


def test_three_folder_layouts_and_workers_give_the_same_cache(prepared, tmp_path):
    tree, config, _ = prepared
    reference = load_cache(config.out)
    roots = {"oldest": to_oldest_layout(tree.root, tmp_path / "old"),
             "2018": to_2018_layout(tree.root, tmp_path / "mid")}
    for name, root in roots.items():
        out = tmp_path / f"cache-{name}"
        workers = 2 if name == "2018" else 0
        prepare_lidc(LidcPrepareConfig(root=root, out=out, spacing=SPACING, crop=CROP, workers=workers))
        manifest, images, masks = load_cache(out)
        pd.testing.assert_frame_equal(manifest.drop(columns="file"), reference[0].drop(columns="file"))
        assert np.array_equal(images, reference[1]) and np.array_equal(masks, reference[2])


def test_killed_run_resumes_and_matches_a_clean_run(prepared, tmp_path, monkeypatch):
    tree, config, _ = prepared
    out = tmp_path / "cache"
    resumed_config = LidcPrepareConfig(root=tree.root, out=out, spacing=SPACING, crop=CROP)
    real, calls = lidc_prepare._run_job, []

    def killed_after_first(job, *args):
        if calls:
            raise KeyboardInterrupt
        calls.append(job.series_uid)
        return real(job, *args)

    monkeypatch.setattr(lidc_prepare, "_run_job", killed_after_first)
    with pytest.raises(KeyboardInterrupt):
        prepare_lidc(resumed_config)
    with pytest.raises(CacheError, match="incomplete"):
        open_cache(out, "lidc", "rebuild")
    staged = sorted(p.name for p in (out / ".staging").iterdir())
    half_done = next(out / ".staging" / name for name in staged if name != calls[0])
    (half_done / "images.npy").write_bytes(b"half-written")  # no done.json: must be redone, not trusted

    redone = []
    monkeypatch.setattr(lidc_prepare, "_run_job", lambda job, *a: redone.append(job.series_uid) or real(job, *a))
    summary = prepare_lidc(resumed_config)
    assert summary.series_resumed == 1 and summary.series_prepared == 2 and calls[0] not in redone
    for got, want in zip(load_cache(out), load_cache(config.out), strict=True):
        if isinstance(got, pd.DataFrame):
            pd.testing.assert_frame_equal(got, want)
        else:
            assert np.array_equal(got, want)
    assert not (out / ".staging").exists()  # removed once the cache is complete
    again = prepare_lidc(resumed_config)
    assert again.up_to_date and again.series_resumed == 3 and again.series_prepared == 0
    assert not (out / ".staging").exists()


def test_changed_parameter_redoes_series_and_a_killed_merge_leaves_no_stale_cache(prepared, tmp_path, monkeypatch):
    tree, config, _ = prepared
    out = tmp_path / "cache"
    prepare_lidc(LidcPrepareConfig(root=tree.root, out=out, spacing=SPACING, crop=CROP))
    two = LidcPrepareConfig(root=tree.root, out=out, spacing=SPACING, crop=CROP, min_readers=2)

    def dies(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(lidc_prepare, "write_cache_info", dies)
    with pytest.raises(KeyboardInterrupt):
        prepare_lidc(two)
    with pytest.raises(CacheError, match="incomplete"):  # the old, complete cache.json is gone before arrays change
        open_cache(out, "lidc", "rebuild")
    monkeypatch.undo()
    summary = prepare_lidc(two)
    assert summary.series_resumed == 3  # staged by the killed run with the new parameters
    open_cache(out, "lidc", "rebuild", params=two.cache_params())
    manifest, _, _ = load_cache(out)
    assert (manifest["label"] == (manifest["n_readers"] >= 2)).all()
    assert json.loads((out / "cache.json").read_text())["params"]["min_readers"] == 2
