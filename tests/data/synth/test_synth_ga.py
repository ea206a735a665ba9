# SPDX-License-Identifier: MIT
"""`ppi synth ga` and `ppi prepare ga` on its output: formats, answer key, padding, masks and cues."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ppi_cli.data.synth.ga import SITE_STYLES, SynthGaConfig, synth_ga, synth_volume

N_BSCANS, HEIGHT, WIDTH = 8, 32, 64
NARROW = int(round(WIDTH * SITE_STYLES["D"].width_fraction))  # 48
PAD = (WIDTH - NARROW) // 2  # 8 columns each side


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Synthetic data for A-D and the cache prepared from it, both through the CLI."""
    from ppi_cli.cli.main import run

    root = tmp_path_factory.mktemp("synth")
    synth, cache = root / "synth", root / "cache"
    assert run(["synth", "ga", "--out", str(synth), "--per-site", "4", "--n-bscans", str(N_BSCANS),
                "--size", f"{HEIGHT}x{WIDTH}", "--seed", "3"]) == 0
    assert run(["prepare", "ga", "--manifest", str(synth / "manifest.csv"), "--out", str(cache),
                "--bscan-size", f"{HEIGHT}x{WIDTH}", "--n-bscans", str(N_BSCANS)]) == 0
    key = pd.read_csv(synth / "answer_key.csv")
    manifest = pd.read_csv(cache / "manifest.csv", keep_default_na=False)
    return synth, cache, key, manifest


def test_prepare_reproduces_the_answer_key(prepared):
    synth, cache, key, manifest = prepared
    assert len(manifest) == len(key) == 16
    merged = manifest.merge(key, on="path", suffixes=("", "_key"))
    assert len(merged) == 16
    assert (merged["label"] == merged["label_key"]).all() and (merged["site"] == merged["site_key"]).all()
    assert np.load(cache / "volumes.npy", mmap_mode="r").shape == (16, N_BSCANS, HEIGHT, WIDTH)
    formats = dict(zip(manifest["site"], manifest["source_format"], strict=True))
    assert formats == {"A": "duke-mat", "B": "dicom", "C": "nifti", "D": "image-folder"}
    shapes = manifest.groupby("site")["orig_shape"].unique().to_dict()
    assert shapes["D"].tolist() == [f"{N_BSCANS}x{HEIGHT}x{NARROW}"]
    assert shapes["A"].tolist() == [f"{N_BSCANS}x{HEIGHT}x{WIDTH}"]
    assert manifest.groupby("site")["label"].sum().tolist() == [2, 2, 2, 2]


def test_narrow_site_is_padded_by_edge_repetition(prepared):
    from PIL import Image

    synth, cache, _, manifest = prepared
    volumes = np.load(cache / "volumes.npy", mmap_mode="r")
    rows = manifest.index[manifest["site"] == "D"].tolist()
    assert rows and (manifest.loc[rows, "pad_left"] == PAD).all() and (manifest.loc[rows, "pad_right"] == PAD).all()
    for row in rows:
        cached = np.asarray(volumes[row])
        assert np.array_equal(cached[..., :PAD], np.repeat(cached[..., PAD:PAD + 1], PAD, axis=2))
        assert np.array_equal(cached[..., -PAD:], np.repeat(cached[..., -PAD - 1:-PAD], PAD, axis=2))
        folder = synth / manifest.loc[row, "path"]
        raw = np.stack([np.asarray(Image.open(folder / f"bscan_{k}.png")) for k in range(1, N_BSCANS + 1)])
        low, high = int(manifest.loc[row, "intensity_low"]), int(manifest.loc[row, "intensity_high"])
        expected = np.clip(np.rint((raw.astype(float) - low) * 255 / (high - low)), 0, 255).astype(np.uint8)
        assert np.array_equal(cached[..., PAD:-PAD], expected)


def test_masks_follow_their_volumes(prepared):
    synth, cache, key, manifest = prepared
    masks = np.load(cache / "masks.npy")
    assert (manifest["has_mask"] == 1).all()
    for row, entry in manifest.iterrows():
        raw = np.load(synth / entry["mask_path"])
        if entry["site"] == "D":
            raw = np.pad(raw, ((0, 0), (0, 0), (PAD, PAD)), mode="edge")
        assert np.array_equal(masks[row], raw)
        assert (masks[row].sum() > 0) == bool(entry["label"])
    lesions = key[key["label"] == 1]
    assert (lesions["lesion_last_bscan"] - lesions["lesion_first_bscan"] >= 1).all()  # spans neighbouring B-scans


def test_scanner_mark_follows_each_sites_proportions(prepared):
    from scipy.io import loadmat

    synth, _, key, _ = prepared
    for site, group in key.groupby("site"):
        style = SITE_STYLES[site]
        for label, share in ((1, style.cue_given_ga), (0, style.cue_given_no_ga)):
            members = group[group["label"] == label]
            assert members["cue"].sum() == round(share * len(members))
    for _, entry in key[key["site"] == "A"].iterrows():  # the mark is in the pixels, read with scipy itself
        images = loadmat(synth / entry["path"])["images"]  # (H, W, n)
        assert bool((images[2:5, 2:5, :] == 255).all()) == bool(entry["cue"])


def test_scanner_mark_is_a_strong_cue_at_d_and_reversed_at_c(tmp_path):
    result = synth_ga(SynthGaConfig(tmp_path, sites=("A", "C", "D"), per_site=20, n_bscans=2, size=(16, 16)))
    key = pd.read_csv(result.answer_key)
    gap = {site: g.loc[g["label"] == 1, "cue"].mean() - g.loc[g["label"] == 0, "cue"].mean()
           for site, g in key.groupby("site")}
    assert gap == pytest.approx({"A": 0.0, "C": -0.4, "D": 0.8})


def test_lesion_is_brighter_below_the_lost_rpe():
    style = SITE_STYLES["A"]
    for seed in range(3):  # same seed: same layers, with and without the lesion
        with_ga, mask, facts = synth_volume(np.random.default_rng(seed), style, N_BSCANS, (HEIGHT, WIDTH), True, False)
        without, empty, _ = synth_volume(np.random.default_rng(seed), style, N_BSCANS, (HEIGHT, WIDTH), False, False)
        region = mask == 1
        assert facts["lesion_voxels"] == region.sum() > 0 and empty.sum() == 0
        assert with_ga[region].mean() > without[region].mean() + 10  # hypertransmission outweighs the RPE loss


def test_same_seed_same_data_and_unknown_site(tmp_path):
    first = synth_ga(SynthGaConfig(tmp_path / "a", sites=("C",), per_site=2, n_bscans=4, size=(16, 16), seed=7))
    second = synth_ga(SynthGaConfig(tmp_path / "b", sites=("C",), per_site=2, n_bscans=4, size=(16, 16), seed=7))
    assert first.manifest.read_text() == second.manifest.read_text()
    for name in pd.read_csv(first.manifest)["mask_path"]:
        assert np.array_equal(np.load(tmp_path / "a" / name), np.load(tmp_path / "b" / name))
    from ppi_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="no synthetic style for E"):
        synth_ga(SynthGaConfig(tmp_path / "c", sites=("E",)))


def test_dicom_site_never_leaks_its_patient_id(tmp_path, cli):
    synth = tmp_path / "s"
    assert cli("synth", "ga", "--out", synth, "--sites", "B", "--per-site", "2", "--n-bscans", "4",
               "--size", "16x32").exit_code == 0
    result = cli("prepare", "ga", "--manifest", synth / "manifest.csv", "--bscan-size", "16", "--n-bscans", "4")
    assert result.exit_code == 0, result.stderr
    assert "SYN-" not in result.stdout + result.stderr
    assert (tmp_path / "ws" / "cache" / "ga" / "cache.json").is_file()  # default --out: the workspace's cache/ga


@pytest.mark.parametrize("form", ["ramp", "texture"])
def test_diffuse_cue_follows_the_requested_correlation_per_site(tmp_path, form):
    """P(cue | GA) − P(cue | no GA) equals the r asked for (defaults: D 0.9, B 0.5, A 0, C −0.9)."""
    result = synth_ga(SynthGaConfig(tmp_path, per_site=40, n_bscans=2, size=(16, 32), shortcut="diffuse",
                                    diffuse=form, correlation={"B": 0.2}))
    key = pd.read_csv(result.answer_key)
    gap = {site: g.loc[g["label"] == 1, "cue"].mean() - g.loc[g["label"] == 0, "cue"].mean()
           for site, g in key.groupby("site")}
    assert gap == pytest.approx({"A": 0.0, "B": 0.2, "C": -0.9, "D": 0.9})
    assert set(key["cue_form"]) == {form} and key["cue_box"].isna().all()


def test_ramp_and_texture_cover_the_whole_b_scan_and_mark_only_its_corner():
    """The same volume with and without each cue: the diffuse gain changes every column, the mark a corner."""
    style = SITE_STYLES["A"]

    def volume(cue, form):
        return synth_volume(np.random.default_rng(5), style, 2, (32, 64), False, cue, form=form)[0].astype(float)

    plain = volume(False, "ramp")
    ramp = volume(True, "ramp")
    left, right = ramp[..., :16].mean() / plain[..., :16].mean(), ramp[..., -16:].mean() / plain[..., -16:].mean()
    assert left < 0.8 and right > 1.2  # dark on one side, bright on the other
    texture = volume(True, "texture") / np.maximum(plain, 1)
    columns = texture[:, 10:26].mean(axis=(0, 1))  # well inside the tissue: the periodic column gain
    assert np.ptp(columns) > 0.3 and np.corrcoef(columns[:-4], columns[4:])[0, 1] < -0.5  # half a period apart
    mark = volume(True, "mark")
    changed = np.argwhere(mark != plain)
    assert changed[:, 1].max() < 8 and changed[:, 2].max() < 8  # only the top-left corner square


def test_lesion_strength_scales_the_lesion_contrast():
    style = SITE_STYLES["A"]
    contrast = []
    for strength in (1.0, 0.4, 0.0):
        with_ga, mask, _ = synth_volume(np.random.default_rng(2), style, N_BSCANS, (HEIGHT, WIDTH), True, False,
                                        lesion_strength=strength)
        without, _, _ = synth_volume(np.random.default_rng(2), style, N_BSCANS, (HEIGHT, WIDTH), False, False)
        contrast.append(with_ga[mask == 1].mean() - without[mask == 1].mean())
    # 0: GA's mask, but next to nothing to see (what is left is speckle: the GA draw shifts the random stream)
    assert contrast[0] > contrast[1] > 3 * abs(contrast[2])


def test_bad_shortcut_and_correlation_are_refused_in_one_line(tmp_path, cli):
    bad = cli("synth", "ga", "--out", tmp_path / "s", "--shortcut", "diffuse", "--correlation", "D=1.5")
    assert bad.exit_code == 1 and "--correlation" in bad.stderr and "Traceback" not in bad.stderr
    assert cli("synth", "ga", "--out", tmp_path / "t", "--shortcut", "stripes").exit_code == 1
    ok = cli("synth", "ga", "--out", tmp_path / "u", "--shortcut", "diffuse", "--diffuse", "texture", "--sites", "A,C",
             "--per-site", "4", "--n-bscans", "2", "--size", "16x32", "--correlation", "A=0.5")
    assert ok.exit_code == 0, ok.stderr
    key = pd.read_csv(tmp_path / "u" / "answer_key.csv")
    assert key.groupby("site")["cue"].sum().to_dict() == {"A": 2, "C": 2}  # (1 ± 0.5)/2 of 2 + 2; C: 0.05·2 + 0.95·2


def test_the_marks_box_reaches_the_cached_training_samples(tmp_path):
    """`--shortcut mark`: the manifest's cue_box survives prepare (padding, resizing) onto the mark's pixels."""
    from ppi_cli.data.ga.dataset import GaDataset
    from ppi_cli.data.ga.prepare import GaPrepareConfig, prepare_ga

    synth_ga(SynthGaConfig(tmp_path / "s", per_site=4, n_bscans=4, size=(32, 64), seed=1))
    prepare_ga(GaPrepareConfig(manifest=tmp_path / "s" / "manifest.csv", out=tmp_path / "c", n_bscans=4,
                               bscan_size=(32, 32)))
    from ppi_cli.config.recipe import Recipe

    recipe = Recipe().replace(**{"data.dataset": "ga", "data.flips": True, "data.noise_std": 0.0,
                                 "model.multiview.slices_per_volume": 2})
    ds = GaDataset(tmp_path / "c", None, recipe, train=True, seed=0)
    key = pd.read_csv(tmp_path / "s" / "answer_key.csv").set_index("path")
    marked = 0
    for item in range(len(ds)):
        sample = ds[item]
        carries = bool(key.loc[ds.manifest.loc[item, "path"], "cue"])
        assert bool(sample["cue"].any()) == carries
        if carries:  # the box covers the saturated corner square, on whichever side the flip put it
            marked += 1
            inside = sample["image"][sample["cue"] > 0]
            # bilinear resizing blends the mark's edge column: its core is near white, the box well above the rest
            assert float(inside.max()) > 0.85 and float(inside.mean()) > float(sample["image"].mean()) + 0.3
    assert marked >= 4
    unasked = GaDataset(tmp_path / "c", None, recipe, train=True, seed=0, regions=False)
    assert not {"cue", "mask"} & set(unasked[0])  # epochs whose step reads no region get none
