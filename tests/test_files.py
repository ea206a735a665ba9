# SPDX-License-Identifier: MIT
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ppi_cli.files import atomic_write, json_text, save_npy, sha256_file, write_json, write_text


def test_write_replaces_content(tmp_path):
    path = tmp_path / "a.txt"
    write_text(path, "one")
    write_text(path, "two")
    assert path.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_exception_mid_write_keeps_old_file(tmp_path):
    path = tmp_path / "a.txt"
    write_text(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as fh:
            fh.write("new, half")
            raise RuntimeError("disk on fire")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_killed_process_mid_write_keeps_old_file(tmp_path):
    path = tmp_path / "a.json"
    write_json(path, {"v": 1})
    script = textwrap.dedent(f"""
        import os
        from ppi_cli.files import atomic_write
        with atomic_write({str(path)!r}) as fh:
            fh.write('{{"v": 2, "trunc')
            fh.flush()
            os._exit(9)   # no cleanup, like SIGKILL
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert result.returncode == 9
    assert path.read_text().strip().endswith("}") and '"v": 1' in path.read_text()


def test_npy_is_never_pickled(tmp_path):
    arr = np.arange(6, dtype=np.int16).reshape(2, 3)
    path = save_npy(tmp_path / "a.npy", arr)
    assert np.array_equal(np.load(path, allow_pickle=False), arr)
    with pytest.raises(ValueError):
        save_npy(tmp_path / "b.npy", np.array([{"a": 1}], dtype=object))
    assert not (tmp_path / "b.npy").exists()


def test_sha256_changes_with_content(tmp_path):
    a = write_text(tmp_path / "a", "x")
    h1 = sha256_file(a)
    write_text(a, "y")
    assert sha256_file(a) != h1 and len(h1) == 64


def test_written_files_get_normal_permissions(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    os.umask(mask)
    path = write_text(tmp_path / "shared.txt", "x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_json_text_is_strict_json_with_null_for_nan_and_infinities(tmp_path):
    import json
    from pathlib import Path

    def refuse(name):
        raise AssertionError(f"{name} is not JSON")

    obj = {"b": [float("inf"), np.float32("nan"), np.float64(0.25)], "a": {"t": -float("inf")}, "p": Path("x/y"),
           "n": np.int64(3), "arr": np.array([1.0, np.inf])}
    text = json_text(obj)
    # what `--json` prints parses under a strict reader (a fold's Youden threshold can be inf)
    assert json.loads(text, parse_constant=refuse) == {"b": [None, None, 0.25], "a": {"t": None}, "p": "x/y",
                                                      "n": 3, "arr": [1.0, None]}
    assert list(json.loads(text)) == ["b", "a", "p", "n", "arr"]  # the caller's order unless asked
    assert list(json.loads(json_text(obj, sort_keys=True))) == ["a", "arr", "b", "n", "p"]
