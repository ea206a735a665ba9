# SPDX-License-Identifier: MIT
"""`ppi bench train` reports the three steps and their ratios (measurements, never asserted as times)."""

from __future__ import annotations

import json

import pytest


def test_bench_train_reports_three_steps(cli):
    result = cli("bench", "train", "--model", "tiny", "--size", "16", "--batch", "4", "--rounds", "1", "--reference",
                 "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    steps = {s["step"]: s for s in data["steps"]}
    assert list(steps) == ["plain", "ppi create_graph", "ppi no graph", "straightforward"]
    assert steps["plain"]["time_ratio"] == pytest.approx(1.0)
    for s in steps.values():
        assert s["seconds"] > 0 and len(s["seconds_all"]) == 1
        assert s["time_ratio"] == pytest.approx(s["seconds"] / steps["plain"]["seconds"])
    assert data["config"]["batch"] == 4 and data["device"] == "cpu"
    # peak memory from a separate process with glibc switched to one mapping per block (Linux)
    assert data["memory_method"].startswith("rise of VmHWM")
    for s in steps.values():
        assert s["peak_mb"] >= 0 and s["peak_mb_all"] == [s["peak_mb"]]


def test_bench_train_profile_and_errors(cli):
    profiled = cli("bench", "train", "--model", "tiny", "--size", "16", "--batch", "2", "--profile", "--json")
    assert profiled.exit_code == 0, profiled.stderr
    rows = json.loads(profiled.stdout)
    assert rows and {"op", "calls", "self_ms", "share"} <= set(rows[0]) and sum(r["share"] for r in rows) <= 1.0001
    bad = cli("bench", "train", "--model", "resnet", "--rounds", "1")
    assert bad.exit_code == 1 and "no model 'resnet'" in bad.stderr
