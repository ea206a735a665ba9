# SPDX-License-Identifier: MIT
"""`ppi synth lidc` shortcut knobs: the cue's link to the label, the cue in prepared crops, the default untouched."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pydicom
import pytest

from ppi_cli.data.synth.lidc import MARK_HU, SynthLidcConfig, _Nodule, _readers_outlines, synth_lidc
from ppi_cli.errors import ConfigError

SPACING, CROP = 1.0, 64  # the prepare grid: 1 mm pixels, 64 mm crops around each lesion
# The pixels of `synth_lidc(SynthLidcConfig(patients=2, size=64, slices=8, seed=0))` before the cue options existed.
DEFAULT_PIXELS = "65daa9a2b1cf760c71f775e4df3521204b805d989977d7d6e3306d94e6262200"


def _slices(key: pd.DataFrame) -> pd.DataFrame:
    """One row per CT slice holding samples: positive when a sample on it is, and its cue."""
    return key.groupby(["series_uid", "z"]).agg(label=("label", "max"), cue=("cue", "max"),
                                                 labels=("label", "nunique")).reset_index()


def _pixel_hash(root) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.dcm")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(np.ascontiguousarray(pydicom.dcmread(path).pixel_array).tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("r", [0.9, -0.9])
def test_cue_follows_the_slice_label_at_the_requested_correlation(tmp_path, r):
    result = synth_lidc(SynthLidcConfig(out=tmp_path, patients=60, size=32, slices=8, seed=5, shortcut="diffuse",
                                        correlation=r, reader_agreement=0.0))  # drawn readers: both labels plenty
    key = pd.read_csv(result.answer_key, dtype={"series_uid": str})
    assert (key["cue_form"] == "ramp").all() and key["cue_box"].isna().all()
    slices = _slices(key)
    # Every sample on a slice shares the slice's cue.
    assert key.merge(slices, on=["series_uid", "z"], suffixes=("", "_slice")).eval("cue == cue_slice").all()
    positive, negative = slices[slices["label"] == 1], slices[slices["label"] == 0]
    assert len(positive) >= 200 and len(negative) >= 100
    for group, want in ((positive, (1 + r) / 2), (negative, (1 - r) / 2)):
        error = 3 * np.sqrt(want * (1 - want) / len(group)) + 1 / len(group)  # sampling error, and rounding
        assert abs(group["cue"].mean() - want) <= error
    realised = positive["cue"].mean() - negative["cue"].mean()  # = r: P(cue | +) - P(cue | -) = (1+r)/2 - (1-r)/2
    assert realised == pytest.approx(r, abs=0.05)
    # Samples on slices of one label follow r as well; on mixed slices the negatives take the positive's cue.
    pure = key.merge(slices[slices["labels"] == 1][["series_uid", "z"]], on=["series_uid", "z"])
    for label, want in ((1, (1 + r) / 2), (0, (1 - r) / 2)):
        cue = pure.loc[pure["label"] == label, "cue"]
        assert abs(cue.mean() - want) <= 3 * np.sqrt(want * (1 - want) / len(cue)) + 0.02
    assert result.cue_given_positive == pytest.approx(key.loc[key["label"] == 1, "cue"].mean())
    assert result.cued == key["cue"].sum()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The same synthetic patients without a cue, with the ramp and with the mark, each prepared, via the CLI (the
    cued cohorts with their default ranked readers, the cue-free one told to rank them too)."""
    from ppi_cli.cli.main import run

    base = tmp_path_factory.mktemp("lidc-cues")
    data = {}
    for shortcut in ("none", "diffuse", "mark"):
        synth, cache = base / shortcut, base / f"cache-{shortcut}"
        agreement = ["--reader-agreement", "1"] if shortcut == "none" else []
        assert run(["synth", "lidc", "--out", str(synth), "--patients", "6", "--size", "128", "--slices", "12",
                    "--seed", "2", "--shortcut", shortcut, "--diffuse", "ramp", *agreement]) == 0
        (root,) = synth.glob("manifest-*")
        assert run(["prepare", "lidc", "--root", str(root), "--out", str(cache), "--spacing", str(SPACING),
                    "--crop", str(CROP)]) == 0
        manifest = pd.read_csv(cache / "manifest.csv", dtype={"series_uid": str})
        key = pd.read_csv(synth / "answer_key.csv", dtype={"series_uid": str})
        cue_of = {(s, round(z, 3)): c for s, z, c in zip(key["series_uid"], key["z"], key["cue"], strict=True)}
        cue = np.array([cue_of[s, round(z, 3)] for s, z in zip(manifest["series_uid"], manifest["z"], strict=True)])
        data[shortcut] = (root, key, manifest, np.load(cache / "images.npy").astype(np.float64), cue)
    return data


def test_the_ramp_shows_in_the_prepared_crops(prepared):
    _, _, manifest0, images0, _ = prepared["none"]
    _, key, manifest, images, cue = prepared["diffuse"]
    assert manifest[["series_uid", "z", "label"]].equals(manifest0[["series_uid", "z", "label"]])
    assert cue.any() and not cue.all() and set(key["cue"]) == {0, 1}
    diff = images - images0  # the same phantom and noise: only the cue differs
    assert not diff[cue == 0].any()  # slices without the cue are written exactly as without --shortcut
    half = CROP // 2
    lateral = diff[:, :, half:].mean(axis=(1, 2)) - diff[:, :, :half].mean(axis=(1, 2))  # right minus left, HU
    assert (lateral[cue == 1] > 40).all()  # the ramp: about 1.8 HU per mm across a 300-380 mm field
    columns = diff[cue == 1].mean(axis=(0, 1))  # (CROP,) rising from left to right
    assert np.corrcoef(columns, np.arange(CROP))[0, 1] > 0.99

    def window(hu):  # the lung window the LIDC recipes train with
        return np.clip((hu + 1000) / 1400, 0, 1)

    seen = window(images) - window(images0)
    seen_lateral = seen[:, :, half:].mean(axis=(1, 2)) - seen[:, :, :half].mean(axis=(1, 2))
    assert (seen_lateral[cue == 1] > 0.025).all()  # it survives the window


def test_the_mark_falls_inside_the_nodules_crop(prepared):
    root, key, manifest, images, cue = prepared["mark"]
    _, _, _, images0, _ = prepared["none"]
    assert cue.any() and not cue.all()
    centre = images[:, 8:-8, 8:-8]  # the middle 48 mm: inside a training view of the crop
    assert (centre[cue == 1].max(axis=(1, 2)) >= MARK_HU - 1).all()
    assert (images[cue == 0].max(axis=(1, 2)) < MARK_HU / 2).all()
    assert np.array_equal(images[cue == 0], images0[cue == 0])
    marked = key[key["cue"] == 1]
    assert (key.loc[key["cue"] == 0, "cue_box"].isna()).all() and marked["cue_box"].notna().all()
    row = marked.iloc[0]  # its box holds the mark in the DICOM slice as written
    for path in root.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        if ds.SeriesInstanceUID == row["series_uid"] and abs(float(ds.SliceLocation) - row["z"]) < 1e-3:
            rows, cols = (tuple(map(int, part.split(":"))) for part in row["cue_box"].split(","))
            hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
            assert (hu[rows[0]:rows[1], cols[0]:cols[1]] == MARK_HU).all()
            break
    else:
        pytest.fail("no slice holds the marked sample")


def test_default_output_is_unchanged(tmp_path):
    default = synth_lidc(SynthLidcConfig(out=tmp_path / "default", patients=2, size=64, slices=8, seed=0))
    assert _pixel_hash(default.root) == DEFAULT_PIXELS
    explicit = synth_lidc(SynthLidcConfig(out=tmp_path / "explicit", patients=2, size=64, slices=8, seed=0,
                                          shortcut="none", diffuse="texture", correlation=-0.5, lesion_strength=1.0,
                                          reader_agreement=0.0))
    files = sorted(p.relative_to(default.root) for p in default.root.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(explicit.root) for p in explicit.root.rglob("*") if p.is_file())
    assert all((default.root / f).read_bytes() == (explicit.root / f).read_bytes() for f in files)
    key = pd.read_csv(default.answer_key)
    assert (key["cue"] == 0).all() and (key["cue_form"] == "none").all() and key["cue_box"].isna().all()


def test_lesion_strength_fades_the_nodules_and_keeps_the_labels(tmp_path):
    configs = {s: SynthLidcConfig(out=tmp_path / str(s), patients=2, size=64, slices=8, seed=3, lesion_strength=s)
               for s in (1.0, 0.3)}
    results = {s: synth_lidc(c) for s, c in configs.items()}
    keys = [pd.read_csv(r.answer_key) for r in results.values()]
    assert keys[0].equals(keys[1])
    strong = {p.relative_to(results[1.0].root): p for p in results[1.0].root.rglob("*.dcm")}
    changed = 0
    for relative, path in strong.items():
        a = pydicom.dcmread(path).pixel_array.astype(np.int64)
        b = pydicom.dcmread(results[0.3].root / relative).pixel_array.astype(np.int64)
        changed += int((a != b).sum())
        assert (a >= b).all()  # every nodule (-500..120 HU) is brighter than the lung it fades towards
    assert changed > 0


def test_agreeing_readers_outline_by_rank_as_computed_by_hand():
    # conspicuity (6 - 2.5) / 6 * 1 = 0.583, so p(detect) = 0.3 + 0.65 * 0.583 = 0.679: the readers ranked at
    # quantiles 0.125, 0.375 and 0.625 see the nodule and the fourth (0.875) misses it; reader r outlines a
    # cross-section of at least 1 + 1.2 * quantile px (1.15, 1.45, 1.75 px)
    nodule = _Nodule((32.0, 32.0, 0.0), radius_mm=6.0, hu=0.0)
    spacing, z = 2.0, np.arange(-6.0, 6.5, 0.5)
    sops = [f"sop-{k}" for k in range(len(z))]
    annotations, slices = _readers_outlines(np.random.default_rng(0), nodule, 0, spacing, z, sops, agreement=1.0)
    expected = {}
    for k, zk in enumerate(z):
        r_px = np.sqrt(max(36.0 - zk**2, 0.0)) / spacing
        readers = tuple(r for r, threshold in enumerate((1.15, 1.45, 1.75)) if abs(zk) < 6 and r_px >= threshold)
        if readers:
            expected[k] = readers
    assert {k: readers for k, readers, _ in slices} == expected
    assert {len(r) for r in expected.values()} == {1, 2, 3}  # every count occurs, so the ranks were tested
    assert sorted(a.reader for a in annotations) == [0, 1, 2]


def test_agreeing_readers_label_alike_whatever_the_seed_of_their_draws():
    # the same nodule drawn under two generators: the independent readers disagree somewhere, the ranked ones never
    nodule, z = _Nodule((32.0, 32.0, 0.0), radius_mm=5.0, hu=-200.0), np.arange(-5.0, 5.5, 0.5)
    sops = [f"sop-{k}" for k in range(len(z))]

    def counts(seed, agreement):
        slices = _readers_outlines(np.random.default_rng(seed), nodule, 0, 1.5, z, sops, agreement)[1]
        return {k: len(readers) for k, readers, _ in slices}

    assert len({str(counts(seed, 1.0)) for seed in range(8)}) == 1
    assert len({str(counts(seed, 0.0)) for seed in range(8)}) > 1


@pytest.mark.parametrize("change", [{"shortcut": "stripes"}, {"diffuse": "noise"}, {"correlation": 1.5},
                                    {"lesion_strength": -1.0}, {"reader_agreement": 1.5},
                                    {"reader_agreement": -0.1}])
def test_bad_cue_options_are_refused(tmp_path, change):
    with pytest.raises(ConfigError):
        SynthLidcConfig(out=tmp_path, **change).check()
