# SPDX-License-Identifier: MIT
"""scripts/gpu_check.py, the prepared device check, dry-run on the CPU so it cannot rot between leases."""

from __future__ import annotations

import json

import pytest
from helpers import load_script


@pytest.mark.slow
def test_gpu_check_dry_run_on_the_cpu(tmp_path, monkeypatch, capsys):
    script = load_script("gpu_check")
    monkeypatch.setenv("OUT", str(tmp_path))
    code = script.main(["--device", "cpu", "--model", "tiny", "--batches", "2", "--rounds", "1",
                        "--check-models", "tiny"])
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert code == 0, report["failed"]
    assert report["failed"] == [] and report["card"] == "cpu"
    # float64 steps: channels_last gives the contiguous step's gradients, with and without create_graph
    assert [r["check"] for r in report["checks"]] == [
        "float64 channels_last = contiguous cpu (tiny, create_graph=True)",
        "float64 channels_last = contiguous cpu (tiny, create_graph=False)"]
    assert all(r["relative_error"] < 1e-9 for r in report["checks"])
    steps = {s["step"]: s for s in report["bench"][0]["steps"]}
    assert set(steps) == {"plain", "ppi create_graph", "ppi no graph"}
    assert all(s["images_per_s"] == pytest.approx(2 / s["seconds"]) for s in steps.values())
    # torchrun with one rank trains under DDP and its checkpoint says so
    assert report["ddp"]["ok"] and report["ddp"]["distributed"]["world_size"] == 1
    assert "images/s" in capsys.readouterr().out
