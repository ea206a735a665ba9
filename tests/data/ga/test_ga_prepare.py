# SPDX-License-Identifier: MIT
"""`ppi prepare ga`: manifest validation, the cache it writes, errors.csv, --strict and resuming."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from helpers import ROOT

from ppi_cli.config.resources import bundled_dir
from ppi_cli.config.site import load_site_configs
from ppi_cli.data.ga import prepare as ga
from ppi_cli.data.ga.normalise import normalise_volume
from ppi_cli.data.ga.prepare import GaPrepareConfig, prepare_ga, resolve_sites_dir
from ppi_cli.errors import CacheError, DataError

SECRET = "SUBJ-SECRET-"  # subject ids must never reach the terminal
SITE_YAML = """site: {site}
geometry: {{n_bscans: 6, height: 12, width: 20}}
padding: {{rule: {rule}}}
intensity: {{method: percentile, low_percentile: 1, high_percentile: 99}}
"""


@pytest.fixture
def study(tmp_path, rng):
    """Six .npy volumes at two sites (B narrower, edge-repeat) and a manifest with an extra column."""
    root = tmp_path / "study"
    (root / "vols").mkdir(parents=True)
    (root / "sites").mkdir()
    for name, rule in (("A", "none"), ("B", "edge-repeat")):
        (root / "sites" / f"{name}.yaml").write_text(SITE_YAML.format(site=name, rule=rule))
    rows = []
    for k in range(6):
        width = 20 if k < 4 else 16
        np.save(root / "vols" / f"v{k}.npy", rng.integers(0, 200, size=(6, 12, width), dtype=np.uint8))
        rows.append({"path": f"vols/v{k}.npy", "subject_id": f"{SECRET}{k // 2}", "eye": "OD" if k % 2 else "L",
                     "site": "A" if k < 4 else "B", "label": k % 2, "visit": "y1", "scanner": f"s{k}"})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return root


def config(study, out, **kw) -> GaPrepareConfig:
    return GaPrepareConfig(manifest=study / "labels.csv", out=out, sites=study / "sites",
                           **{"bscan_size": (10, 20), "n_bscans": 4, **kw})


def edit_manifest(study, change) -> None:
    frame = pd.read_csv(study / "labels.csv", dtype=str, keep_default_na=False)
    change(frame)
    frame.to_csv(study / "labels.csv", index=False)


def test_cache_holds_normalised_volumes_and_the_manifest(study, tmp_path):
    out = tmp_path / "cache"
    result = prepare_ga(config(study, out))
    assert result.n_volumes == 6 and result.n_errors == 0
    assert result.per_site == {"A": {"volumes": 4, "positives": 2, "errors": 0},
                               "B": {"volumes": 2, "positives": 1, "errors": 0}}
    volumes = np.load(out / "volumes.npy", mmap_mode="r")
    assert volumes.shape == (6, 4, 10, 20) and volumes.dtype == np.uint8
    sites = load_site_configs(study / "sites")
    for k in range(6):
        raw = np.load(study / "vols" / f"v{k}.npy")
        expected, _ = normalise_volume(raw, sites["A" if k < 4 else "B"], 4, (10, 20))
        assert np.array_equal(volumes[k], expected)
    frame = pd.read_csv(out / "manifest.csv", dtype=str)
    assert frame["label"].astype(int).tolist() == [0, 1, 0, 1, 0, 1]
    assert frame["eye"].tolist() == ["OS", "OD"] * 3  # L normalised to OS
    assert frame["scanner"].tolist() == [f"s{k}" for k in range(6)] and (frame["visit"] == "y1").all()
    assert frame["subject_id"].str.startswith(SECRET).all()
    assert frame.loc[4, "padding"] == "edge-repeat 16->20 (2 left, 2 right)" and frame.loc[4, "orig_shape"] == "6x12x16"
    assert (frame["source_format"] == "npy").all() and not (out / "masks.npy").exists()
    info = json.loads((out / "cache.json").read_text())
    assert info["kind"] == "ga" and info["params"]["n_bscans"] == 4 and info["n_samples"] == 6
    assert not (out / ga.PARTS_DIR).exists()


def set_column(name, values):
    return lambda frame: frame.__setitem__(name, values)


@pytest.mark.parametrize("change, message", [
    (lambda f: f.pop("eye"), "missing column(s) eye"),
    (set_column("label", ["0", "1", "yes", "0", "1", "0"]), "labels.csv:4: column 'label': 'yes' is not 0 or 1"),
    (set_column("label", ["0", "1", "2", "0", "1", "0"]), "labels.csv:4: column 'label': '2'"),
    (set_column("site", ["A", "A", "A", "E", "B", "B"]), "labels.csv:5: column 'site': no site config for 'E'"),
    (set_column("path", ["vols/v0.npy", "vols/missing.npy"] + [f"vols/v{k}.npy" for k in range(2, 6)]),
     "labels.csv:3: column 'path': no such file or folder: vols/missing.npy"),
    (set_column("path", [f"vols/v{k}.npy" for k in range(5)] + ["./vols/../vols/v1.npy"]),
     "labels.csv:7: column 'path': the same volume as line 3"),
    (set_column("eye", ["OD", "OS", "up", "OD", "OS", "OD"]), "labels.csv:4: column 'eye'"),
    (set_column("subject_id", ["a", "b", "", "c", "d", "e"]), "labels.csv:4: column 'subject_id' is empty"),
])
def test_manifest_errors_name_row_and_column(study, cli, change, message):
    edit_manifest(study, change)
    result = cli("prepare", "ga", "--manifest", study / "labels.csv", "--sites", study / "sites",
                 "--bscan-size", "10x20", "--n-bscans", "4")
    assert result.exit_code == 1
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr and SECRET not in result.stderr + result.stdout


def test_unreadable_volume_goes_to_errors_csv_or_stops_with_strict(study, tmp_path, cli):
    (study / "vols" / "v2.npy").write_bytes(b"\x93NUMPY garbage")
    out = tmp_path / "cache"
    result = prepare_ga(config(study, out))
    assert result.n_volumes == 5 and result.n_errors == 1 and result.per_site["A"]["errors"] == 1
    errors = pd.read_csv(out / "errors.csv")
    assert errors["line"].tolist() == [4] and errors["path"].tolist() == ["vols/v2.npy"]
    assert "v2.npy" in errors.loc[0, "error"] and "subject_id" not in errors.columns
    assert np.load(out / "volumes.npy").shape[0] == 5
    assert "vols/v2.npy" not in pd.read_csv(out / "manifest.csv")["path"].tolist()
    strict = cli("prepare", "ga", "--manifest", study / "labels.csv", "--sites", study / "sites",
                 "--out", tmp_path / "strict", "--bscan-size", "10x20", "--n-bscans", "4", "--strict")
    assert strict.exit_code == 1 and "labels.csv:4 (A-0003)" in strict.stderr and "v2.npy" in strict.stderr
    assert not (tmp_path / "strict" / "cache.json").exists()


def test_interrupted_run_resumes_without_redoing_volumes(study, tmp_path, monkeypatch):
    real = ga._prepare_one
    calls = []

    def interrupt_third(task):
        calls.append(task.path.name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(task)

    out = tmp_path / "cache"
    monkeypatch.setattr(ga, "_prepare_one", interrupt_third)
    with pytest.raises(KeyboardInterrupt):
        prepare_ga(config(study, out))
    assert not (out / "cache.json").exists() and len(list((out / ga.PARTS_DIR).glob("*.npz"))) == 2

    calls.clear()
    monkeypatch.setattr(ga, "_prepare_one", lambda task: calls.append(task.path.name) or real(task))
    result = prepare_ga(config(study, out))
    assert calls == ["v2.npy", "v3.npy", "v4.npy", "v5.npy"] and result.reused == 2
    fresh = tmp_path / "fresh"
    monkeypatch.setattr(ga, "_prepare_one", real)
    prepare_ga(config(study, fresh))
    assert np.array_equal(np.load(out / "volumes.npy"), np.load(fresh / "volumes.npy"))

    calls.clear()
    monkeypatch.setattr(ga, "_prepare_one", lambda task: calls.append(task.path.name) or real(task))
    assert prepare_ga(config(study, out)).up_to_date and calls == []  # same manifest and parameters
    assert not prepare_ga(config(study, out, n_bscans=2)).up_to_date and len(calls) == 6
    assert np.load(out / "volumes.npy").shape == (6, 2, 10, 20)


def test_parts_of_other_parameters_are_discarded(study, tmp_path, monkeypatch):
    real = ga._prepare_one
    calls = []

    def interrupt_second(task):
        calls.append(task)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(task)

    out = tmp_path / "cache"
    monkeypatch.setattr(ga, "_prepare_one", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        prepare_ga(config(study, out))
    calls.clear()
    monkeypatch.setattr(ga, "_prepare_one", lambda task: calls.append(task) or real(task))
    result = prepare_ga(config(study, out, bscan_size=(12, 20)))
    assert len(calls) == 6 and result.reused == 0
    assert np.load(out / "volumes.npy").shape == (6, 4, 12, 20)


def test_masks_are_cached_beside_volumes(study, tmp_path):
    mask = np.zeros((6, 12, 16), np.uint8)
    mask[:, 5:7, 0] = 1  # touches the left edge of a narrow site-B volume
    np.save(study / "vols" / "m4.npy", mask)
    edit_manifest(study, lambda f: f.__setitem__("mask_path", ["", "", "", "", "vols/m4.npy", ""]))
    out = tmp_path / "cache"
    prepare_ga(config(study, out, bscan_size=(12, 20), n_bscans=6))
    masks = np.load(out / "masks.npy")
    assert masks.shape == (6, 6, 12, 20) and masks[[0, 1, 2, 3, 5]].sum() == 0
    assert masks[4, :, 5:7, :3].all() and masks[4].sum() == 6 * 2 * 3  # edge-repeat widened it by 2 columns
    frame = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    assert frame["has_mask"].tolist() == [0, 0, 0, 0, 1, 0]


def test_foreign_cache_is_not_overwritten(study, tmp_path):
    out = tmp_path / "cache"
    out.mkdir()
    (out / "cache.json").write_text(json.dumps({"kind": "lidc"}))
    with pytest.raises(CacheError, match="'lidc' cache"):
        prepare_ga(config(study, out))


def test_no_readable_volume_is_an_error(study, tmp_path):
    for k in range(6):
        (study / "vols" / f"v{k}.npy").write_bytes(b"junk")
    with pytest.raises(DataError, match="none of the 6 volumes"):
        prepare_ga(config(study, tmp_path / "cache"))
    assert (tmp_path / "cache" / "errors.csv").is_file()


def test_site_configs_default_beside_the_manifest_else_bundled(tmp_path):
    manifest = tmp_path / "labels.csv"
    assert resolve_sites_dir(None, manifest) == bundled_dir("site_configs")
    (tmp_path / "site_configs").mkdir()
    assert resolve_sites_dir(None, manifest) == tmp_path / "site_configs"
    assert resolve_sites_dir(tmp_path / "x", manifest) == tmp_path / "x"


def test_workers_give_the_same_cache(study, tmp_path, cli):
    result = cli("prepare", "ga", "--manifest", study / "labels.csv", "--sites", study / "sites", "--out",
                 tmp_path / "pool", "--bscan-size", "10x20", "--n-bscans", "4", "--workers", "2")
    assert result.exit_code == 0, result.stderr
    assert "all" in result.stdout and SECRET not in result.stdout + result.stderr
    prepare_ga(config(study, tmp_path / "serial"))
    assert np.array_equal(np.load(tmp_path / "pool" / "volumes.npy"), np.load(tmp_path / "serial" / "volumes.npy"))
    assert (pd.read_csv(tmp_path / "pool" / "manifest.csv").equals(pd.read_csv(tmp_path / "serial" / "manifest.csv")))


def test_documented_example_manifest_is_valid(tmp_path):
    import shutil

    from ppi_cli.data.ga.manifest import read_ga_manifest

    example = ROOT / "docs" / "ga-manifest-example.csv"
    shutil.copy(example, tmp_path / "labels.csv")
    frame = pd.read_csv(example, dtype=str, keep_default_na=False)
    for relative in list(frame["path"]) + [m for m in frame["mask_path"] if m]:
        target = tmp_path / relative
        if relative.endswith("/"):
            target.mkdir(parents=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(b"")
    rows, extra = read_ga_manifest(tmp_path / "labels.csv", {"A", "B", "C", "D"})
    assert len(rows) == 6 and extra == ["age"]
    assert [r.eye for r in rows] == ["OD", "OS", "OD", "OS", "OD", "OS"] and rows[2].mask_path is not None
