# SPDX-License-Identifier: MIT
"""`ppi sweep`: variant and seed parsing, and the paired summary against a hand computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ppi_cli.engine.sweep import BASELINE, CROSS_SITE, parse_seeds, parse_variant, summarise_sweep
from ppi_cli.errors import ConfigError


def test_variants_and_seeds_parse_and_bad_ones_are_refused():
    v = parse_variant("big-mask: ppi.mask=top-k, ppi.coverage=0.1,ppi.create_graph=false")
    assert v.name == "big-mask" and v.overrides == {"ppi.mask": "top-k", "ppi.coverage": 0.1,
                                                    "ppi.create_graph": False}
    assert parse_seeds("0-4") == (0, 1, 2, 3, 4) and parse_seeds("3,1,3") == (3, 1)
    for bad in ("nocolon", "baseline:ppi.alpha=1", "x:ppi.alpha"):
        with pytest.raises(ConfigError, match="--variant"):
            parse_variant(bad)
    for bad in ("7", "a-b"):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(bad)


def test_summary_pairs_each_seed_with_the_baseline_and_gives_a_t_interval():
    auc = {  # variant -> seed -> (D hold-out, A, C)
        BASELINE: {0: (0.90, 0.60, 0.20), 1: (0.92, 0.70, 0.30), 2: (0.88, 0.65, 0.10)},
        "ppi": {0: (0.85, 0.70, 0.50), 1: (0.90, 0.75, 0.40), 2: (0.86, 0.60, 0.45)},
    }
    runs = pd.DataFrame([{"variant": v, "seed": s, "train_site": "D", "test_site": site, "auc": value}
                         for v, seeds in auc.items() for s, values in seeds.items()
                         for site, value in zip("DAC", values, strict=True)])
    summary = summarise_sweep(runs, "D").set_index(["variant", "site"])
    assert list(summary.loc[BASELINE].index) == ["in-site", "A", "C", CROSS_SITE]
    diffs = np.array([(a + c) / 2 - (ba + bc) / 2 for (_, a, c), (_, ba, bc)
                      in zip(auc["ppi"].values(), auc[BASELINE].values(), strict=True)])  # 0.2, 0.075, 0.15
    half = stats.t.ppf(0.975, 2) * diffs.std(ddof=1) / np.sqrt(3)
    row = summary.loc[("ppi", CROSS_SITE)]
    assert row["mean"] == pytest.approx(np.mean([(a + c) / 2 for _, a, c in auc["ppi"].values()]))
    assert (row["delta"], row["low"], row["high"]) == pytest.approx((diffs.mean(), diffs.mean() - half,
                                                                      diffs.mean() + half))
    assert summary.loc[("ppi", "in-site"), "delta"] == pytest.approx(np.mean([-0.05, -0.02, -0.02]))
    assert np.isnan(summary.loc[(BASELINE, "C"), "delta"]) and row["pairs"] == 3
