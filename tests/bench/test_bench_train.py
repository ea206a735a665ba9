# SPDX-License-Identifier: MIT
"""`ppi bench train` reports the three steps and their ratios (measurements, never asserted as times)."""

from __future__ import annotations

import json

import pytest


def test_bench_train_reports_three_steps(cli):
    result = cli("bench", "train", "--model", "tiny", "--size", "16", "--batch", "4", "--rounds", "2", "--reference",
                 "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    steps = {s["step"]: s for s in data["steps"]}
    assert list(steps) == ["plain", "ppi create_graph", "ppi no graph", "straightforward"]
    assert steps["plain"]["time_ratio"] == pytest.approx(1.0)
    plain_rounds = steps["plain"]["seconds_all"]
    for s in steps.values():
        assert s["seconds"] > 0 and len(s["seconds_all"]) == 2
        assert s["time_ratio"] == pytest.approx(s["seconds"] / steps["plain"]["seconds"])
        # each round's ratio pairs the step with the plain step of the same round, not with the median
        assert s["round_ratios"] == pytest.approx([t / p for t, p in zip(s["seconds_all"], plain_rounds, strict=True)])
        assert s["images_per_s"] == pytest.approx(4 / s["seconds"])
    assert data["config"]["batch"] == 4 and data["device"] == "cpu"
    # peak memory from a separate process with glibc switched to one mapping per block (Linux)
    assert data["memory_method"].startswith("rise of VmHWM")
    for s in steps.values():
        assert s["peak_mb"] >= 0 and s["peak_mb_all"] == [s["peak_mb"]]
    assert data["config"]["adversarial_on"] == "auto"  # the recipes' default rows of L_ad
    table = cli("bench", "train", "--model", "tiny", "--size", "16", "--batch", "2", "--rounds", "2",
                "--adversarial-on", "all")
    assert table.exit_code == 0, table.stderr
    assert "rounds: × plain" in table.stdout and "1.00–1.00" in table.stdout  # the plain row against itself
    assert "L_ad on all" in table.stdout
    bad = cli("bench", "train", "--model", "tiny", "--adversarial-on", "positives")
    assert bad.exit_code == 2 and "--adversarial-on" in bad.stderr and "not auto, contrast or all" in bad.stderr


def test_bench_train_profile_and_errors(cli):
    profiled = cli("bench", "train", "--model", "tiny", "--size", "16", "--batch", "2", "--profile", "--json")
    assert profiled.exit_code == 0, profiled.stderr
    found = json.loads(profiled.stdout)
    rows = found["operators"]
    assert found["step"] == "ppi create_graph" and found["rounds"] == 3
    assert rows and {"op", "calls", "self_ms", "share"} <= set(rows[0]) and sum(r["share"] for r in rows) <= 1.0001
    assert not any(r["op"].startswith("ppi step: ") for r in rows)
    # tiny has train-mode batch norm: the map takes its own backward; x' goes in two halves with create_graph
    phases = {r["phase"]: r for r in found["phases"]}
    assert list(phases) == ["clean forward", "map backward", "masks", "x* forward", "x* backward", "x' forward",
                            "x' backward", "last backward", "update"], list(phases)
    assert phases["x' forward"]["calls"] == 2 and phases["last backward"]["calls"] == 1
    for r in phases.values():
        assert r["ms"] > 0 and r["x_plain"] == pytest.approx(r["ms"] / found["plain_ms"])


def test_bench_train_profile_without_graph(cli):
    """x* and x' share one forward; L_cls is back-propagated on its own, before them."""
    profiled = cli("bench", "train", "--model", "tiny", "--size", "16", "--batch", "4", "--profile", "--no-graph",
                   "--rounds", "1", "--json")
    assert profiled.exit_code == 0, profiled.stderr
    found = json.loads(profiled.stdout)
    assert found["step"] == "ppi no graph"
    assert [r["phase"] for r in found["phases"]] == ["clean forward", "map backward", "L_cls backward", "masks",
                                                     "x*, x' forward", "last backward", "update"]
    bad = cli("bench", "train", "--model", "resnet", "--rounds", "1")
    assert bad.exit_code == 1 and "no model 'resnet'" in bad.stderr
