# SPDX-License-Identifier: MIT
"""Reliability probes (issue 19, docs/reliability.md): nothing lost, nothing silently wrong.

Each test is one probe of the sweep: an output pointed at an input, a truncated or hostile input, an
edited cache, non-finite values, a second run into a folder in use, a full disk (a patched writer).
Every refusal is one line on stderr, exit 1, and leaves the inputs and any previous output as they were.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from helpers import checkpoint_2d, ct_with_patient

SITE_YAML = """site: {site}
geometry: {{n_bscans: 6, height: 12, width: 20}}
padding: {{rule: none}}
intensity: {{method: percentile, low_percentile: 1, high_percentile: 99}}
"""


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("ppi:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.fixture
def study(tmp_path, rng):
    """A GA study: four .npy volumes at site A, a site config and a manifest (labels.csv)."""
    root = tmp_path / "study"
    (root / "vols").mkdir(parents=True)
    (root / "sites").mkdir()
    (root / "sites" / "A.yaml").write_text(SITE_YAML.format(site="A"))
    rows = []
    for k in range(4):
        np.save(root / "vols" / f"v{k}.npy", rng.integers(0, 200, size=(6, 12, 20), dtype=np.uint8))
        rows.append({"path": f"vols/v{k}.npy", "subject_id": f"S{k}", "eye": "OD", "site": "A", "label": k % 2})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return root


def prepare_args(study: Path, out: Path) -> list:
    return ["prepare", "ga", "--manifest", study / "labels.csv", "--sites", study / "sites", "--out", out,
            "--bscan-size", "10x20", "--n-bscans", "4"]


# --- outputs never overwrite inputs -------------------------------------------------------------------------


@pytest.fixture
def explain_inputs(tmp_path):
    scan = ct_with_patient(tmp_path / "scan.dcm")
    model = checkpoint_2d(tmp_path / "model.pt")
    return scan, model


@pytest.mark.parametrize("case", ["out=input", "json=checkpoint", "dicom-out=input", "dicom-out=link-to-input",
                                  "out-in-input-folder", "json=out"])
def test_explain_refuses_an_output_that_is_an_input_before_writing(cli, tmp_path, explain_inputs, case):
    scan, model = explain_inputs
    series = tmp_path / "series"
    series.mkdir()
    (series / "1.dcm").write_bytes(scan.read_bytes())
    link = tmp_path / "link.dcm"
    link.symlink_to(scan)
    png = tmp_path / "overlay.png"
    argv = {
        "out=input": ["explain", scan, "-m", model, "--out", scan],
        "json=checkpoint": ["explain", scan, "-m", model, "--out", png, "--json", model],
        "dicom-out=input": ["explain", scan, "-m", model, "--out", png, "--dicom-out", scan],
        "dicom-out=link-to-input": ["explain", scan, "-m", model, "--out", png, "--dicom-out", link],
        "out-in-input-folder": ["explain", series, "-m", model, "--out", series / "overlay.png"],
        "json=out": ["explain", scan, "-m", model, "--out", png, "--json", png],
    }[case]
    before = {p: digest(p) for p in (scan, model, series / "1.dcm")}
    listing = sorted(tmp_path.rglob("*"))
    result = cli(*argv)
    assert result.exit_code == 1
    assert "nothing was written" in one_line(result)
    assert {p: digest(p) for p in before} == before
    assert sorted(tmp_path.rglob("*")) == listing  # not one byte, not one folder


def test_prepare_ga_refuses_the_manifests_folder_as_out(cli, study):
    before = digest(study / "labels.csv")
    listing = sorted(study.rglob("*"))
    result = cli(*prepare_args(study, study))
    assert result.exit_code == 1
    assert "--out is the folder of the manifest" in one_line(result)
    assert digest(study / "labels.csv") == before and sorted(study.rglob("*")) == listing


def test_prepare_ga_refuses_a_cache_file_that_is_an_input(cli, study, tmp_path):
    out = tmp_path / "cache"
    out.mkdir()
    (out / "manifest.csv").symlink_to(study / "labels.csv")  # the cache manifest would land on the labels
    before = digest(study / "labels.csv")
    result = cli(*prepare_args(study, out))
    assert result.exit_code == 1 and "would overwrite the manifest" in one_line(result)
    assert digest(study / "labels.csv") == before


# --- unreadable inputs become errors.csv rows -----------------------------------------------------------------


def test_truncated_nii_gz_is_one_errors_csv_row_and_the_rest_is_cached(cli, study, tmp_path):
    full = tmp_path / "full.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((20, 12, 6), np.float32), np.eye(4)), full)
    (study / "vols" / "bad.nii.gz").write_bytes(full.read_bytes()[:20])
    frame = pd.read_csv(study / "labels.csv")
    frame.loc[len(frame)] = {"path": "vols/bad.nii.gz", "subject_id": "S9", "eye": "OS", "site": "A", "label": 1}
    frame.to_csv(study / "labels.csv", index=False)
    out = tmp_path / "cache"
    result = cli(*prepare_args(study, out))
    assert result.exit_code == 0, result.stderr
    errors = pd.read_csv(out / "errors.csv")
    assert errors["path"].tolist() == ["vols/bad.nii.gz"] and errors["line"].tolist() == [6]
    assert "EOFError" in errors["error"][0]
    assert len(pd.read_csv(out / "manifest.csv")) == 4
    assert np.load(out / "volumes.npy").shape[0] == 4


def test_an_eof_error_is_not_reported_as_an_interrupt(cli, monkeypatch, study, tmp_path):
    from ppi_cli.data.ga import prepare as ga

    def boom(*args, **kwargs):
        raise EOFError("Compressed file ended")

    monkeypatch.setattr(ga, "read_ga_manifest", boom)
    result = cli(*prepare_args(study, tmp_path / "cache"))
    assert result.exit_code == 1
    line = one_line(result)
    assert "EOFError" in line and "interrupted" not in line


def test_ctrl_c_is_still_130(cli, monkeypatch, study, tmp_path):
    from ppi_cli.data.ga import prepare as ga

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ga, "read_ga_manifest", interrupt)
    result = cli(*prepare_args(study, tmp_path / "cache"))
    assert result.exit_code == 130 and "interrupted" in result.stderr


def test_a_fifo_is_refused_instead_of_read(study, tmp_path):
    from ppi_cli.data.oct.readers import read_volume
    from ppi_cli.errors import DataError

    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="not a regular file"):
        read_volume(fifo)




# --- an edited cache is refused ---------------------------------------------------------------------------------


@pytest.fixture
def ga_cache(cli, study, tmp_path):
    out = tmp_path / "cache"
    result = cli(*prepare_args(study, out))
    assert result.exit_code == 0, result.stderr
    return out


def test_a_cache_manifest_with_a_row_deleted_is_refused_with_the_rebuild_command(cli, ga_cache):
    lines = (ga_cache / "manifest.csv").read_text().splitlines(keepends=True)
    (ga_cache / "manifest.csv").write_text("".join(lines[:2] + lines[3:]))
    result = cli("train", "--data", ga_cache, "--dataset", "ga")
    assert result.exit_code == 1
    line = one_line(result)
    assert "manifest.csv: size changed since the cache was built" in line and "ppi prepare ga" in line


def test_verify_rehashes_every_file(ga_cache):
    from ppi_cli.data.cache import open_cache
    from ppi_cli.errors import CacheError

    data = bytearray((ga_cache / "volumes.npy").read_bytes())
    data[-1] ^= 0xFF  # same size, other content: only the full check sees it
    (ga_cache / "volumes.npy").write_bytes(bytes(data))
    open_cache(ga_cache, "ga", "rebuild")
    with pytest.raises(CacheError, match="volumes.npy: content changed"):
        open_cache(ga_cache, "ga", "rebuild", verify=True)


@pytest.mark.parametrize("edit", ["label maybe", "duplicated row"])
def test_a_bad_manifest_in_a_consistent_cache_is_one_line(cli, ga_cache, edit):
    import json

    from ppi_cli.data.cache import write_cache_info

    frame = pd.read_csv(ga_cache / "manifest.csv", dtype=str)
    if edit == "label maybe":
        frame.loc[1, "label"] = "maybe"
    else:
        frame = pd.concat([frame, frame.iloc[[0]]], ignore_index=True)
    frame.to_csv(ga_cache / "manifest.csv", index=False)
    info = json.loads((ga_cache / "cache.json").read_text())
    write_cache_info(ga_cache, "ga", info["params"], len(frame), info["files"], info["extra"])  # as if built so
    result = cli("train", "--data", ga_cache, "--dataset", "ga")
    assert result.exit_code == 1
    line = one_line(result)
    assert "data error" in line and "internal error" not in line and "maybe" not in line


# --- non-finite values never reach an output --------------------------------------------------------------------


def test_a_checkpoint_with_nan_weights_is_refused_in_one_line(cli, tmp_path, explain_inputs):
    import torch

    scan, model = explain_inputs
    payload = torch.load(model, weights_only=True)
    first = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][first] = torch.full_like(payload["state_dict"][first], float("nan"))
    torch.save(payload, model)
    result = cli("explain", scan, "-m", model, "--out", tmp_path / "o.png", "--json", tmp_path / "o.json")
    assert result.exit_code == 1
    line = one_line(result)
    assert f"weight {first} holds NaN" in line
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "o.json").exists()


def test_an_all_nan_input_is_refused_in_one_line(cli, tmp_path, explain_inputs):
    _scan, model = explain_inputs
    scan = tmp_path / "nan.npy"
    np.save(scan, np.full((32, 32), np.nan, np.float32))
    result = cli("explain", scan, "-m", model, "--out", tmp_path / "o.png", "--json", tmp_path / "o.json")
    assert result.exit_code == 1
    assert "100% of the pixels are NaN or infinite" in one_line(result)
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "o.json").exists()


def test_a_nan_score_is_refused_before_anything_is_drawn(cli, monkeypatch, tmp_path, explain_inputs):
    from ppi_cli.engine import explain as engine

    scan, model = explain_inputs
    monkeypatch.setattr(engine, "_decide", lambda logits, classes, threshold: (float("nan"), classes[0], 0))
    result = cli("explain", scan, "-m", model, "--out", tmp_path / "o.png", "--json", tmp_path / "o.json")
    assert result.exit_code == 1 and "NaN score" in one_line(result)
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "o.json").exists()


# --- one run per output folder ----------------------------------------------------------------------------------


def test_a_second_prepare_into_a_folder_in_use_exits_1_naming_the_lock(cli, study, tmp_path):
    from ppi_cli.files import LOCK_FILE, output_lock

    out = tmp_path / "cache"
    with output_lock(out):  # the first run, still writing
        result = cli(*prepare_args(study, out))
    assert result.exit_code == 1
    line = one_line(result)
    assert f"pid {os.getpid()}" in line and str(out / LOCK_FILE) in line
    assert sorted(p.name for p in out.iterdir()) == []  # the second run wrote nothing
    assert cli(*prepare_args(study, out)).exit_code == 0  # released: the next run goes ahead


def test_two_concurrent_prepare_processes_one_runs_the_other_exits_1(study, tmp_path):
    import subprocess
    import sys
    import time

    out, holding, go = tmp_path / "cache", tmp_path / "holding", tmp_path / "go"
    # The first run pauses inside its work (the lock held) until the test lets it go on.
    first_script = (
        "import sys, time, pathlib\n"
        "from ppi_cli.data.ga import prepare as ga\n"
        "real = ga._run\n"
        "def paused(*a, **k):\n"
        f"    pathlib.Path({str(holding)!r}).touch()\n"
        f"    while not pathlib.Path({str(go)!r}).exists(): time.sleep(0.05)\n"
        "    return real(*a, **k)\n"
        "ga._run = paused\n"
        "from ppi_cli.cli.main import run\n"
        "sys.exit(run(sys.argv[1:]))\n")
    args = [str(a) for a in prepare_args(study, out)]
    first = subprocess.Popen([sys.executable, "-c", first_script, *args], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not holding.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert holding.exists(), first.communicate()[1]
    second = subprocess.run([sys.executable, "-c", "import sys; from ppi_cli.cli.main import run; "
                             "sys.exit(run(sys.argv[1:]))", *args], stderr=subprocess.PIPE, text=True)
    go.touch()
    first_err = first.communicate(timeout=120)[1]
    assert (first.returncode, second.returncode) == (0, 1), (first_err, second.stderr)
    lines = [line for line in second.stderr.splitlines() if line.startswith("ppi:")]
    assert len(lines) == 1 and str(out / ".ppi.lock") in lines[0] and f"pid {first.pid}" in lines[0]
    assert (out / "cache.json").is_file()


def test_a_stale_lock_of_a_dead_run_is_taken_over(cli, study, tmp_path):
    import json
    import socket

    out = tmp_path / "cache"
    out.mkdir()
    (out / ".ppi.lock").write_text(json.dumps({"pid": 2 ** 22 + 1, "host": socket.gethostname()}))  # killed run
    result = cli(*prepare_args(study, out))
    assert result.exit_code == 0, result.stderr
    assert not (out / ".ppi.lock").exists()


# --- a full disk ------------------------------------------------------------------------------------------------


def _enospc(*args, **kwargs):
    raise OSError(28, "No space left on device")


def test_enospc_while_a_cache_is_assembled_keeps_the_old_cache_and_prints_one_line(cli, monkeypatch, study, tmp_path):
    from ppi_cli.data.cache import open_cache

    out = tmp_path / "cache"
    assert cli(*prepare_args(study, out)).exit_code == 0
    before = {p.name: digest(p) for p in out.iterdir() if p.is_file()}
    (out / ".volumes.npy.abc123.tmp").write_bytes(b"left by a killed run")
    frame = pd.read_csv(study / "labels.csv")
    frame.loc[0, "label"] = 1 - frame.loc[0, "label"]  # a changed manifest: the cache must be rebuilt
    frame.to_csv(study / "labels.csv", index=False)
    monkeypatch.setattr(os, "posix_fallocate", _enospc)
    result = cli(*prepare_args(study, out))
    assert result.exit_code == 1
    line = one_line(result)
    assert "no space left on" in line and "needs" in line and "GB" in line
    assert {p.name: digest(p) for p in out.iterdir() if p.is_file()} == before  # the old cache, whole
    assert open_cache(out, "ga", "rebuild", verify=True).n_samples == 4
    assert not list(out.rglob("*.tmp"))  # neither the killed run's nor this one's


def test_enospc_in_the_middle_of_a_buffered_write_raises_and_leaves_no_tmp(monkeypatch, tmp_path):
    from ppi_cli.errors import DiskFullError
    from ppi_cli.files import write_npy_rows

    target = tmp_path / "a.npy"
    np.save(target, np.zeros(3))
    monkeypatch.setattr(os, "posix_fallocate", lambda *a: (_ for _ in ()).throw(OSError(95, "not supported")))

    def rows():
        yield np.ones((1, 4), np.uint8)
        raise OSError(28, "No space left on device")

    with pytest.raises(DiskFullError, match="no space left on"):
        write_npy_rows(target, (2, 4), np.uint8, rows())
    assert np.load(target).tolist() == [0, 0, 0] and sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]


def test_the_cache_round_trips_through_the_buffered_writer(tmp_path, rng):
    from ppi_cli.files import write_npy_rows

    array = rng.integers(0, 255, size=(5, 3, 4), dtype=np.uint8)
    write_npy_rows(tmp_path / "a.npy", array.shape, np.uint8, (array[i:i + 2] for i in range(0, 5, 2)))
    assert np.array_equal(np.load(tmp_path / "a.npy"), array)


def test_the_buffered_writer_takes_empty_blocks(tmp_path, rng):
    # A LIDC series whose slices hold no sample gives a (0, crop, crop) block; it once crashed the merge.
    from ppi_cli.files import write_npy_rows

    array = rng.integers(-1000, 400, size=(3, 4, 4)).astype(np.int16)
    blocks = [array[:0], array[:2], np.empty((0, 4, 4), np.int16), array[2:], array[:0]]
    write_npy_rows(tmp_path / "a.npy", array.shape, np.int16, iter(blocks))
    assert np.array_equal(np.load(tmp_path / "a.npy"), array)


# --- header values never reach a message ------------------------------------------------------------------------


def _malformed_ct(path: Path) -> Path:
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds["RescaleIntercept"].VR = "LO"  # so pydicom writes the text as it is
    ds.RescaleIntercept = "PHIMARKSLOPE"
    ds.save_as(path)
    return path


def test_a_malformed_header_value_never_appears_in_a_message(cli, tmp_path, explain_inputs, monkeypatch):
    from ppi_cli.data.dicom.headers import read_slice_hu
    from ppi_cli.errors import DataError

    _scan, model = explain_inputs
    scan = _malformed_ct(tmp_path / "bad.dcm")
    with pytest.raises(DataError) as err:
        read_slice_hu(scan)
    assert "PHIMARKSLOPE" not in err.value.one_line() and "RescaleIntercept" in err.value.one_line()
    for debug in ("0", "1"):
        monkeypatch.setenv("PPI_DEBUG", debug)
        result = cli("explain", scan, "-m", model, "--out", tmp_path / "o.png")
        if debug == "0":
            assert result.exit_code == 1 and "PHIMARKSLOPE" not in one_line(result)
        assert "PHIMARKSLOPE" not in [line for line in result.stderr.splitlines() if line.startswith("ppi:")][0]


def test_an_internal_error_names_its_type_and_place_never_its_message(cli, monkeypatch, study, tmp_path):
    from ppi_cli.data.ga import prepare as ga

    def bug(*args, **kwargs):
        raise ValueError("could not convert string to float: 'PHIMARKSLOPE'")

    monkeypatch.setattr(ga, "read_ga_manifest", bug)
    result = cli(*prepare_args(study, tmp_path / "cache"))
    line = one_line(result)
    assert result.exit_code == 1 and "internal error: ValueError at" in line and "PHIMARKSLOPE" not in line


# --- files meant for sharing never carry full paths ----------------------------------------------------------


def test_shareable_path_is_relative_to_the_root_else_the_base_name(tmp_path):
    from ppi_cli.files import shareable_path, shareable_text

    root = tmp_path / "DOE_JOHN" / "export"
    assert shareable_path(root / "vols" / "v1.npy", root) == "vols/v1.npy"
    assert shareable_path(tmp_path / "elsewhere" / "v2.npy", root) == "v2.npy"
    assert shareable_path(root / ".." / "v3.npy", root) == "v3.npy"
    assert shareable_path(tmp_path / "DOE_JOHN" / "best.pt") == "best.pt"
    line = f"{root / 'vols' / 'x'}: B-scan {root / 'vols' / 'x' / '2.png'} differs"
    assert shareable_text(line, [root / "vols" / "x"], root) == "vols/x: B-scan vols/x/2.png differs"


def test_ga_errors_csv_names_volumes_relative_to_the_manifest(cli, study, tmp_path):
    (study / "vols" / "bad.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    frame = pd.read_csv(study / "labels.csv")
    frame.loc[len(frame)] = {"path": "vols/bad.nii.gz", "subject_id": "S9", "eye": "OS", "site": "A", "label": 1}
    frame.to_csv(study / "labels.csv", index=False)
    out = tmp_path / "cache"
    result = cli(*prepare_args(study.resolve(), out))  # an absolute --manifest: its folders must not leak
    assert result.exit_code == 0, result.stderr
    errors = pd.read_csv(out / "errors.csv")
    assert errors["path"].tolist() == ["vols/bad.nii.gz"]
    assert "vols/bad.nii.gz" in errors["error"][0] and str(tmp_path) not in (out / "errors.csv").read_text()


def test_folder_errors_csv_names_images_relative_to_the_root(cli, tmp_path, rng):
    from PIL import Image

    root = tmp_path / "DOE_JOHN" / "photos"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    (root / "cat" / "bad.png").write_bytes(b"junk")
    result = cli("prepare", "folder", "--root", root, "--out", tmp_path / "cache")
    assert result.exit_code == 0, result.stderr
    errors = pd.read_csv(tmp_path / "cache" / "errors.csv")
    assert errors["source"].tolist() == ["cat/bad.png"] and "'cat/bad.png'" in errors["reason"][0]
    assert "DOE_JOHN" not in (tmp_path / "cache" / "errors.csv").read_text()


# --- size guards ------------------------------------------------------------------------------------------------


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims `width` × `height` (no pixel data): what a decoder sees before decoding."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IEND", b""))
    return path


def test_a_400_megapixel_png_is_one_line_not_an_internal_error(cli, tmp_path, explain_inputs):
    _scan, model = explain_inputs
    png = _png_header_only(tmp_path / "huge.png", 20000, 20000)
    result = cli("explain", png, "-m", model, "--out", tmp_path / "o.png")
    line = one_line(result)
    assert result.exit_code == 1 and "huge.png" in line and "100-megapixel limit" in line
    assert "PPI_MAX_IMAGE_PIXELS" in line and not (tmp_path / "o.png").exists()


def test_a_lowered_image_limit_refuses_a_small_png_and_names_the_variable(cli, tmp_path, explain_inputs, monkeypatch):
    from PIL import Image

    _scan, model = explain_inputs
    png = tmp_path / "small.png"
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(png)
    monkeypatch.setenv("PPI_MAX_IMAGE_PIXELS", "1000")
    result = cli("explain", png, "-m", model, "--out", tmp_path / "o.png")
    line = one_line(result)
    assert result.exit_code == 1 and "50×40 image" in line and "0.001-megapixel limit" in line
    monkeypatch.setenv("PPI_MAX_IMAGE_PIXELS", "many")
    assert "PPI_MAX_IMAGE_PIXELS=many" in one_line(cli("explain", png, "-m", model, "--out", tmp_path / "o.png"))
    monkeypatch.setenv("PPI_MAX_IMAGE_PIXELS", "2000")  # raised: the same image is read
    assert cli("explain", png, "-m", model, "--out", tmp_path / "o.png").exit_code == 0


def test_an_image_over_the_limit_is_an_errors_csv_row_in_prepare_folder(cli, tmp_path, rng, monkeypatch):
    from PIL import Image

    root = tmp_path / "photos"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    Image.fromarray(rng.integers(0, 255, (8, 40, 3), dtype=np.uint8)).save(root / "dog" / "wide.png")
    monkeypatch.setenv("PPI_MAX_IMAGE_PIXELS", "100")
    result = cli("prepare", "folder", "--root", root, "--out", tmp_path / "cache", "--size", "8")
    assert result.exit_code == 0, result.stderr
    errors = pd.read_csv(tmp_path / "cache" / "errors.csv")
    assert errors["source"].tolist() == ["dog/wide.png"] and "megapixel limit" in errors["reason"][0]


def test_a_volume_over_the_voxel_limit_is_an_errors_csv_row_in_prepare_ga(cli, study, tmp_path, monkeypatch):
    np.save(study / "vols" / "big.npy", np.zeros((6, 12, 40), np.uint8))  # 2880 voxels; the others 1440
    frame = pd.read_csv(study / "labels.csv")
    frame.loc[len(frame)] = {"path": "vols/big.npy", "subject_id": "S9", "eye": "OS", "site": "A", "label": 1}
    frame.to_csv(study / "labels.csv", index=False)
    monkeypatch.setenv("PPI_MAX_VOLUME_VOXELS", "2000")
    out = tmp_path / "cache"
    result = cli(*prepare_args(study, out))
    assert result.exit_code == 0, result.stderr
    errors = pd.read_csv(out / "errors.csv")
    assert errors["path"].tolist() == ["vols/big.npy"] and "million-voxel limit" in errors["error"][0]
    assert len(pd.read_csv(out / "manifest.csv")) == 4


def test_a_bscan_folder_and_a_dicom_are_checked_before_decoding(tmp_path, monkeypatch):
    import pydicom
    from PIL import Image
    from pydicom.data import get_testdata_file

    from ppi_cli.data.dicom.headers import read_slice_hu
    from ppi_cli.data.oct.readers import read_volume
    from ppi_cli.errors import DataError

    folder = tmp_path / "bscans"
    folder.mkdir()
    for k in range(3):
        Image.fromarray(np.zeros((10, 20), np.uint8)).save(folder / f"b{k}.png")
    monkeypatch.setenv("PPI_MAX_VOLUME_VOXELS", "500")
    with pytest.raises(DataError, match="million-voxel limit"):
        read_volume(folder)
    monkeypatch.setenv("PPI_MAX_IMAGE_PIXELS", "1000")
    ct = tmp_path / "ct.dcm"
    pydicom.dcmread(get_testdata_file("CT_small.dcm")).save_as(ct)  # 128 × 128
    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(lambda self: pytest.fail("decoded")))
    with pytest.raises(DataError, match="megapixel limit"):
        read_slice_hu(ct)


# --- manifest paths stay inside the manifest's folder ---------------------------------------------------------


@pytest.mark.parametrize("escape", ["dotdot", "absolute"])
def test_a_manifest_path_outside_its_folder_is_refused_unless_allowed(cli, study, tmp_path, rng, escape):
    outside = tmp_path / "elsewhere.npy"
    np.save(outside, rng.integers(0, 200, size=(6, 12, 20), dtype=np.uint8))
    frame = pd.read_csv(study / "labels.csv")
    frame.loc[0, "path"] = "../elsewhere.npy" if escape == "dotdot" else str(outside)
    frame.to_csv(study / "labels.csv", index=False)
    out = tmp_path / "cache"
    result = cli(*prepare_args(study, out))
    line = one_line(result)
    assert result.exit_code == 1 and "labels.csv:2: column 'path'" in line and "outside the manifest's folder" in line
    assert "--allow-outside-root" in line and not (out / "cache.json").exists()
    allowed = cli(*prepare_args(study, out), "--allow-outside-root")
    assert allowed.exit_code == 0, allowed.stderr
    assert len(pd.read_csv(out / "manifest.csv")) == 4


def test_an_absolute_manifest_path_inside_its_folder_is_accepted(cli, study, tmp_path):
    frame = pd.read_csv(study / "labels.csv")
    frame.loc[0, "path"] = str(study / "vols" / "v0.npy")
    frame.to_csv(study / "labels.csv", index=False)
    assert cli(*prepare_args(study, tmp_path / "cache")).exit_code == 0


# --- the secondary capture keeps the side and the frame of reference ------------------------------------------


@pytest.mark.parametrize("where", ["image-level", "per-frame only"])
def test_the_capture_of_a_multiframe_oct_keeps_laterality_and_frame_of_reference(cli, tmp_path, rng, where):
    import pydicom
    from helpers import PHI, checkpoint_volume, opt_with_patient

    scan, _volume = opt_with_patient(tmp_path / "oct.dcm", rng, n=12)
    ds = pydicom.dcmread(scan)
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.4242"
    if where == "image-level":
        ds.ImageLaterality, ds.Laterality = "R", "R"
    else:  # the side only in each frame's Frame Anatomy
        del ds.ImageLaterality
        for item in ds.PerFrameFunctionalGroupsSequence:
            item.FrameAnatomySequence[0].FrameLaterality = "R"
    ds.save_as(scan)
    ckpt = checkpoint_volume(tmp_path / "ga.pt", n_bscans=10)
    sc = tmp_path / "sc.dcm"
    result = cli("explain", scan, "-m", ckpt, "-o", tmp_path / "o.png", "--dicom-out", sc)
    assert result.exit_code == 0, result.stderr
    back = pydicom.dcmread(sc)
    assert back.ImageLaterality == "R" and back.FrameOfReferenceUID == ds.FrameOfReferenceUID
    assert back.get("Laterality") == ("R" if where == "image-level" else None)
    assert "PositionReferenceIndicator" in back
    assert str(back.PatientID) == PHI["PatientID"]  # the patient module, as before: filing needs it


def test_the_capture_of_a_ct_slice_keeps_laterality_and_frame_of_reference(cli, tmp_path, explain_inputs):
    import pydicom

    scan, model = explain_inputs
    ds = pydicom.dcmread(scan)
    ds.ImageLaterality = "L"
    ds.save_as(scan)
    sc = tmp_path / "sc.dcm"
    result = cli("explain", scan, "-m", model, "-o", tmp_path / "o.png", "--dicom-out", sc)
    assert result.exit_code == 0, result.stderr
    back = pydicom.dcmread(sc)
    assert back.ImageLaterality == "L" and back.FrameOfReferenceUID == ds.FrameOfReferenceUID


# --- prepare folder keeps the previous cache until the new one is complete -------------------------------------


@pytest.mark.parametrize("fails", ["work file", "assembly"])
def test_prepare_folder_keeps_the_old_cache_valid_until_the_new_one_is_complete(cli, monkeypatch, tmp_path, rng,
                                                                                fails):
    from PIL import Image

    from ppi_cli.data.cache import open_cache
    from ppi_cli.data.folder import prepare as folder
    from ppi_cli.files import disk_full_error

    root = tmp_path / "photos"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    out = tmp_path / "cache"
    assert cli("prepare", "folder", "--root", root, "--out", out).exit_code == 0
    before = {p.name: digest(p) for p in out.iterdir() if p.is_file()}
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / "dog" / "new.png")  # a rebuild
    if fails == "work file":
        monkeypatch.setattr(os, "posix_fallocate", _enospc)
    else:
        def full(path, *args, **kwargs):
            raise disk_full_error(Path(path).parent, 1 << 30)

        monkeypatch.setattr(folder, "write_npy_rows", full)
    result = cli("prepare", "folder", "--root", root, "--out", out)
    assert result.exit_code == 1 and "no space left on" in one_line(result)
    after = {p.name: digest(p) for p in out.iterdir() if p.is_file() and p.name not in ("progress.json",
                                                                                         "images.partial.npy")}
    assert after == before and open_cache(out, "folder", "rebuild", verify=True).n_samples == 6
    assert not (out / ".assembled").exists()
    monkeypatch.undo()
    assert cli("prepare", "folder", "--root", root, "--out", out).exit_code == 0
    assert open_cache(out, "folder", "rebuild", verify=True).n_samples == 7


# --- --resume says when there is nothing to resume --------------------------------------------------------------


def test_resume_on_a_missing_folder_is_refused_and_on_an_empty_one_warns(cli, tmp_path, one_thread):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text("extends: synthetic-ppi-wbp-cpu\nschedule:\n  epochs: 1\ndata:\n  synthetic_size: 32\n"
                      "  crop: 16\n  batch_size: 16\nmodel:\n  input_size: 16\nppi:\n  enabled: false\n")
    missing = tmp_path / "runs" / "typo"
    result = cli("train", "--recipe", recipe, "--out", missing, "--resume", "--device", "cpu")
    line = one_line(result)
    assert result.exit_code == 1 and "does not exist" in line and "drop --resume" in line and not missing.exists()
    empty = tmp_path / "runs" / "empty"
    empty.mkdir(parents=True)
    result = cli("train", "--recipe", recipe, "--out", empty, "--resume", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if "--resume" in line]
    assert len(warning) == 1 and "holds no last.pt" in warning[0] and "starting from epoch 1" in warning[0]
