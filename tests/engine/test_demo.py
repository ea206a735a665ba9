# SPDX-License-Identifier: MIT
"""`ppi demo` end to end at toy sizes: every step runs and REPORT.md links only files that exist."""

from __future__ import annotations

import re

import pytest

from ppi_cli.engine.demo import DemoConfig, run_demo
from ppi_cli.models import load_model


@pytest.mark.slow
def test_demo_smoke_writes_a_report_whose_links_all_resolve(tmp_path, one_thread):
    cfg = DemoConfig(out=tmp_path / "demo", workers=0, device="cpu", folds=2, epochs=1, bootstrap=20,
                     lidc_patients=6, lidc_size=64, lidc_slices=8, ga_per_site=8, ga_bscans=4,
                     ga_size=(32, 64), ga_bscan_size=16)
    result = run_demo(cfg)
    text = result.report.read_text(encoding="utf-8")
    for heading in ("## LIDC-IDRI", "## GA OCT", "### With PPI", "### No PPI", "### In-site vs cross-site gap",
                    "## What this shows"):
        assert heading in text, heading
    assert re.search(r"\| baseline \(no PPI\) \| (\d\.\d{3} ± \d\.\d{3}|—)", text)
    assert re.search(r"\| PPI \+ WBP \| (\d\.\d{3} ± \d\.\d{3}|—)", text)
    assert "PPI is expected to stop the model reading the sites' diffuse brightness ramp" in text  # the default data
    assert re.search(r"Row by row \(\[cross_site\.md\]\([^)]+\)\): PPI − baseline, mean over the 4 training", text)
    links = re.findall(r"\]\(([^)#]+)\)", text)
    assert len(links) > 10
    for figure in ("roc_mean.png", "calibration.png", "confusion.png", "gallery.png"):  # issue 17's paper figures
        assert any(link.endswith(figure) for link in links), figure
    for link in links:
        assert (cfg.out / link).is_file(), link
    for name in ("lidc-ppi-wbp", "lidc-baseline", "ga-ppi-wbp", "ga-baseline"):
        model, meta = load_model(cfg.out / "models" / f"{name}.pt")
        assert meta["recipe"]["ppi"]["enabled"] == name.endswith("ppi-wbp")
    assert set(result.headlines) == {"lidc baseline", "lidc ppi-wbp", "ga baseline", "ga ppi-wbp"}


def test_demo_verdict_is_the_mean_per_fold_difference_and_its_t_interval():
    import numpy as np

    from ppi_cli.reports.demo_report import _verdict

    folds = np.array([-0.02, 0.0, -0.01, -0.01, 0.0])  # PPI a little worse in every fold
    worse = _verdict("GA", folds, -0.020, -0.0001)
    assert worse.startswith("GA: per fold, PPI + WBP's AUC was 0.008 lower than the baseline's")
    assert "mean of 5 paired differences, 95% t-interval [-0.020, -0.000], which excludes 0" in worse
    assert "pooled" not in worse and "DeLong" not in worse
    same = _verdict("LIDC", np.array([0.02, 0.0]), -0.117, 0.137)
    assert "0.010 higher" in same and "includes 0: no difference shown" in same
    assert "too few folds" in _verdict("X", np.array([0.1]), float("nan"), float("nan"))
    assert _verdict("X", np.array([np.nan]), 0.0, 1.0) == "X: the comparison could not be computed."


def test_shortcut_verdict_reads_the_training_sites_row():
    import pandas as pd

    from ppi_cli.reports.demo_report import shortcut_verdict

    def matrices(ppi_row, base_row):
        cols = ["A", "B", "C", "D"]
        return {"ppi": pd.DataFrame([ppi_row], index=["D"], columns=cols),
                "baseline": pd.DataFrame([base_row], index=["D"], columns=cols)}

    base = [0.65, 0.83, 0.20, 0.88]
    fixed = shortcut_verdict(matrices([0.70, 0.80, 0.60, 0.87], base))
    assert "Here it did: trained on D, the mean AUC over the other sites is 0.700 with PPI and 0.560 without" in fixed
    reverse = shortcut_verdict(matrices([0.70, 0.35, 0.62, 0.55], base))
    assert "Here it did not" in reverse and "learnt the ramp in reverse" in reverse
    flat = shortcut_verdict(matrices([0.64, 0.82, 0.22, 0.88], base))
    assert "Here it did not" in flat and "in reverse" not in flat
    assert flat.startswith("PPI is expected to stop the model reading")
    assert shortcut_verdict({"ppi": matrices(base, base)["ppi"]}) == ""  # no baseline matrix: nothing to say
