# SPDX-License-Identifier: MIT
"""`ppi sweep`: variant and seed parsing, and the paired summary against a hand computation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import lidc_nodule_cache
from scipy import stats

from ppi_cli.config import NULL, load_recipe
from ppi_cli.engine.sweep import BASELINE, parse_seeds, parse_variant, summarise_sweep
from ppi_cli.errors import ConfigError, DataError
from ppi_cli.reports.sweep_reading import CROSS_SITE, against_ceiling, sweep_reading


def test_variants_and_seeds_parse_and_bad_ones_are_refused():
    v = parse_variant("big-mask: ppi.mask=top-k, ppi.coverage=0.1,ppi.create_graph=false")
    assert v.name == "big-mask" and v.overrides == {"ppi.mask": "top-k", "ppi.coverage": 0.1,
                                                    "ppi.create_graph": False}
    assert parse_seeds("0-4") == (0, 1, 2, 3, 4) and parse_seeds("3,1,3") == (3, 1)
    off = parse_variant("off:ppi.fallback_drop=null").overrides  # null sets the field, not "left out"
    assert off == {"ppi.fallback_drop": NULL} and load_recipe("ga-ppi-wbp-cpu", off).ppi.fallback_drop is None
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
    # a hold-out of one class has no AUC: without any in-site cell the other sites are still summarised
    other = summarise_sweep(runs[runs["test_site"] != "D"], "D").set_index(["variant", "site"])
    assert list(other.loc[BASELINE].index) == ["A", "C", CROSS_SITE]
    assert other.loc[("ppi", CROSS_SITE), "delta"] == pytest.approx(diffs.mean())


def test_the_room_is_one_minus_the_baselines_auc_on_the_seeds_a_variant_is_paired_on():
    """`room`: 1 − the baseline's mean AUC over the seeds each row is paired on (the baseline's row: its own), the
    most any variant could gain there; summary.md gives the baseline's under its row. The variant misses seed 2."""
    from ppi_cli.reports.sweep_tables import sweep_markdown

    base = {0: (0.95, 0.60), 1: (1.00, 0.70), 2: (0.90, 0.20)}  # seed -> (D hold-out, C)
    cells = [{"variant": BASELINE, "seed": s, "train_site": "D", "test_site": t, "auc": v}
             for s, values in base.items() for t, v in zip("DC", values, strict=True)]
    cells += [{"variant": "ppi", "seed": s, "train_site": "D", "test_site": t, "auc": 1.0}
              for s in (0, 1) for t in "DC"]
    runs = pd.DataFrame(cells)
    summary = summarise_sweep(runs, "D").set_index(["variant", "site"])
    assert summary.loc[(BASELINE, "C"), "room"] == pytest.approx(1 - (0.60 + 0.70 + 0.20) / 3)
    assert summary.loc[("ppi", "C"), "room"] == pytest.approx(1 - (0.60 + 0.70) / 2)  # seeds 0 and 1
    assert summary.loc[("ppi", "C"), "delta"] == pytest.approx(summary.loc[("ppi", "C"), "room"])  # all of it
    assert summary.loc[("ppi", "in-site"), "room"] == pytest.approx(0.025)
    text = sweep_markdown("demo", "seeds", summary.reset_index(), runs, matrix=False, overrides={"ppi": {}},
                          common={})
    lines = text.splitlines()
    at = lines.index("| baseline | 0.950 | 0.500 | 0.500 |")
    assert lines[at + 1] == "| room (1 − baseline) | +0.050 | +0.500 | +0.500 |"
    assert sum(line.startswith("| room") for line in lines) == 1  # under the baseline only


def _part(**intervals):
    """A variant's summary rows: site -> (delta, low, high); `cross` is the mean over the other sites."""
    names = {"cross": CROSS_SITE, "in_site": "in-site"}
    return pd.DataFrame([{"variant": "v", "site": names.get(k, k), "delta": d, "low": lo, "high": hi}
                         for k, (d, lo, hi) in intervals.items()])


@pytest.mark.parametrize(("intervals", "expected"), [
    # The ramp at 40 epochs: C and A up, B down, each interval clear of 0, the mean up too.
    ({"in_site": (0.008, -0.018, 0.034), "A": (0.139, 0.106, 0.173), "B": (-0.138, -0.259, -0.017),
      "C": (0.308, 0.205, 0.411), "cross": (0.103, 0.055, 0.151)},
     "opposite moves: A +0.139, C +0.308 rose while B -0.138 fell"),
    ({"in_site": (0.0, -0.02, 0.02), "A": (0.05, 0.01, 0.09), "B": (0.01, -0.03, 0.05),
      "cross": (0.03, 0.01, 0.05)}, "helped: cross-site mean +0.030 (A +0.050)"),
    ({"in_site": (-0.05, -0.08, -0.02), "A": (0.05, -0.01, 0.11), "cross": (0.04, 0.01, 0.07)},
     "trade-off: the other sites rose (cross-site mean +0.040) and in-site fell (in-site -0.050)"),
    ({"in_site": (0.0, -0.02, 0.02), "A": (0.05, 0.01, 0.09), "B": (-0.04, -0.07, -0.01),
      "cross": (0.005, -0.03, 0.04)}, "opposite moves: A +0.050 rose while B -0.040 fell"),
    ({"in_site": (-0.03, -0.05, -0.01), "A": (-0.02, -0.06, 0.02), "cross": (-0.02, -0.06, 0.02)},
     "cost: in-site -0.030"),
    ({"in_site": (0.0, -0.02, 0.02), "A": (-0.06, -0.09, -0.03), "cross": (-0.06, -0.09, -0.03)},
     "cost: cross-site mean -0.060, A -0.060"),
    ({"in_site": (0.0, -0.02, 0.02), "A": (0.02, -0.03, 0.07), "cross": (0.02, -0.03, 0.07)},
     "not shown: cross-site mean +0.020, its interval across 0"),
])
def test_sweep_reading_says_what_the_intervals_clear_of_zero_say(intervals, expected):
    assert sweep_reading(_part(**intervals)) == expected


def test_against_the_ceiling_gives_each_move_as_a_share_of_the_ceilings():
    # LIDC's ramp cohort (docs/ppi.md): the ceiling loses in-site what the cue was worth there
    ppi = _part(in_site=(-0.132, -0.185, -0.079), rev=(0.285, 0.234, 0.336), cross=(0.162, 0.133, 0.191))
    ceiling = _part(in_site=(-0.292, -0.341, -0.244), rev=(0.507, 0.478, 0.536), cross=(0.322, 0.303, 0.340))
    assert against_ceiling(ppi, ceiling) == (
        "against the ceiling: +0.162 of its +0.322 over the other sites (50 %), in-site -0.132 of its -0.292 "
        "(45 %), less than a model that never leant on the cue loses there")
    # a fall past the ceiling's is not called smaller; an in-site change of the ceiling's not clear of 0 is
    # given beside the variant's, not as a share
    worse = _part(in_site=(-0.35, -0.40, -0.30), cross=(0.10, 0.05, 0.15))
    assert against_ceiling(worse, ceiling).endswith("in-site -0.350 of its -0.292 (120 %)")
    flat = _part(in_site=(0.016, -0.01, 0.04), cross=(0.234, 0.192, 0.276))
    assert against_ceiling(_part(in_site=(-0.002, -0.01, 0.006), cross=(0.145, 0.111, 0.180)), flat) == (
        "against the ceiling: +0.145 of its +0.234 over the other sites (62 %), in-site -0.002 where it has +0.016")
    # an in-site change not clear of 0 is no fall (the LIDC study recipe's soft masks at 64 px)
    soft = _part(in_site=(-0.002, -0.017, 0.013), cross=(0.010, -0.008, 0.029))
    assert against_ceiling(soft, ceiling).endswith("in-site -0.002 of its -0.292 (1 %)")
    # no headroom (the ceiling's gain not clear of 0): nothing to measure against
    assert against_ceiling(ppi, _part(in_site=(0.0, -0.01, 0.01), cross=(0.01, -0.02, 0.04))) == ""


def test_a_crossval_sweep_without_test_caches_is_read_on_its_test_folds_alone(tmp_path):
    """No --test: no other site, so no cross-site mean; the summary and its readings stand on the folds."""
    from ppi_cli.engine.sweep import CEILING, SweepConfig, SweepVariant, _write_tables

    in_site = {BASELINE: (0.60, 0.70, 0.65, 0.75), "lift": (0.66, 0.74, 0.70, 0.81), "flat": (0.62, 0.68, 0.66, 0.74),
               CEILING: (0.50, 0.55, 0.52, 0.60)}
    runs = pd.DataFrame([{"variant": v, "seed": k // 2, "fold": k % 2, "train_site": "cohort", "test_site": "cohort",
                          "auc": auc} for v, values in in_site.items() for k, auc in enumerate(values)])
    summary = summarise_sweep(runs, "cohort")
    assert set(summary["site"]) == {"in-site"}
    lift = summary[summary["variant"] == "lift"].iloc[0]
    diffs = np.array(in_site["lift"]) - np.array(in_site[BASELINE])  # 0.06, 0.04, 0.05, 0.06
    half = stats.t.ppf(0.975, 3) * diffs.std(ddof=1) / 2
    assert (lift["delta"], lift["low"], lift["high"]) == pytest.approx((0.0525, 0.0525 - half, 0.0525 + half))
    assert sweep_reading(summary[summary["variant"] == "lift"]) == (
        f"helped: in-site +0.053 [{0.0525 - half:+.3f}, {0.0525 + half:+.3f}]")
    assert sweep_reading(summary[summary["variant"] == "flat"]).startswith("not shown: in-site +0.000")
    cfg = SweepConfig("demo", tmp_path, tmp_path, None, (SweepVariant("lift"), SweepVariant("flat")), seeds=(0, 1),
                      twin=tmp_path / "twin")
    _write_tables(cfg, runs, summary)
    text = (tmp_path / "summary.md").read_text()
    assert "| variant | in-site |" in text and "- `lift`: helped: in-site +0.053" in text
    assert f"- `{CEILING}`: the baseline trained on the twin" in text
    assert "on these test folds: in-site -0.132 [" in text  # 0.5425 - 0.675


def test_summary_md_carries_each_variants_reading(tmp_path):
    from ppi_cli.engine.sweep import SweepConfig, SweepVariant, _write_tables

    base = {0: (0.90, 0.60, 0.20), 1: (0.92, 0.70, 0.30), 2: (0.88, 0.65, 0.10)}
    lifted = {s: (d, a + 0.10 + 0.01 * s, c + 0.20) for s, (d, a, c) in base.items()}  # A and C up in every seed
    runs = pd.DataFrame([{"variant": v, "seed": s, "train_site": "D", "test_site": site, "auc": value}
                         for v, seeds in ((BASELINE, base), ("lift", lifted)) for s, values in seeds.items()
                         for site, value in zip("DAC", values, strict=True)])
    cfg = SweepConfig("demo", tmp_path, tmp_path, "D", (SweepVariant("lift"),), seeds=(0, 1, 2))
    summary = summarise_sweep(runs, "D")
    _write_tables(cfg, runs, summary)
    text = (tmp_path / "summary.md").read_text()
    expected = sweep_reading(summary[summary["variant"] == "lift"])
    assert expected == "helped: cross-site mean +0.155 (A +0.110, C +0.200)" and f"- `lift`: {expected}" in text
    assert f"`{BASELINE}`:" not in text.split("Readings")[1].split("Variants")[0]
    assert "PPI rejected" not in text
    # a run that ppi.fallback_drop rejected is named under the table (its rows hold the recipe without PPI)
    runs["rejected"] = (runs["variant"] == "lift") & (runs["seed"] == 1)
    _write_tables(cfg, runs, summary)
    text = (tmp_path / "summary.md").read_text()
    assert "PPI rejected (`ppi.fallback_drop`" in text and "- `lift`: 1 run(s), seed 1\n" in text


def test_more_seeds_join_a_finished_sweep_and_fewer_say_what_the_summary_leaves_out(tmp_path, monkeypatch, capsys):
    """runs.csv covers the seeds asked; a sweep into a folder holding other seeds warns in one line naming them and
    the --seeds that reads them all; asked for all of them, it reads every seed (the jobs skip finished studies)."""
    import ppi_cli.engine.sweep as sweep
    from ppi_cli.engine.sweep import SweepConfig, SweepVariant, format_seeds, run_sweep

    def job(recipe_ref, data, out, train, overrides, seed, *args):
        (tmp_path / "sw").joinpath(*out.split("/")[-2:]).mkdir(parents=True, exist_ok=True)
        return [{"train_site": train, "test_site": site, "auc": 0.5 + 0.01 * seed} for site in ("A", "D")]

    monkeypatch.setattr(sweep, "_job", job)

    def seeds_of(*seeds):
        run_sweep(SweepConfig("demo", tmp_path / "cache", tmp_path / "sw", "D", (SweepVariant("demo"),), seeds=seeds))
        err = " ".join(capsys.readouterr().err.split())
        return sorted(set(pd.read_csv(tmp_path / "sw" / "runs.csv")["seed"])), err

    seeds, err = seeds_of(0, 1, 2, 3, 4)
    assert seeds == [0, 1, 2, 3, 4] and "warning" not in err
    seeds, err = seeds_of(5, 6)
    assert seeds == [5, 6] and (f"warning: {tmp_path / 'sw'} also holds seed(s) 0-4 of an earlier sweep; runs.csv "
                                "and the summary cover the seeds asked (5,6): ask --seeds 0-6 to read them all "
                                "(finished studies do not train again)") in err
    seeds, err = seeds_of(*range(7))
    assert seeds == [0, 1, 2, 3, 4, 5, 6] and "warning" not in err
    assert (format_seeds([4, 0, 2]), format_seeds([3, 2, 1]), format_seeds([1, 2])) == ("0,2,4", "1-3", "1,2")


def test_train_all_summarises_each_row_and_the_whole_matrix_against_a_hand_computation(tmp_path, monkeypatch):
    """--train all: each job trains every row; the summary holds each row's own summary and the whole matrix, per
    seed the mean over rows of their other-site means. Baseline: row A reads D at 0.6 + 0.01·s, row D reads A at
    0.5 + 0.02·s; the variant adds 0.1 on row A and 0.2 + 0.01·s on row D, so the matrix gains 0.15 + 0.005·s:
    +0.155 over seeds 0-2, ± t(0.975, 2) · 0.005 / √3. A rejected run names its row."""
    import ppi_cli.engine.sweep as sweep
    from ppi_cli.engine.sweep import ALL, MATRIX, SweepConfig, SweepVariant, run_sweep

    def job(recipe_ref, data, out, train, overrides, seed, *args):
        assert train == ALL
        lift = 0.0 if overrides.get("ppi.enabled") is False else 1.0
        auc = {("A", "A"): 0.9, ("A", "D"): 0.6 + 0.01 * seed + 0.1 * lift, ("D", "D"): 0.95,
               ("D", "A"): 0.5 + 0.02 * seed + (0.2 + 0.01 * seed) * lift}
        return [{"train_site": row, "test_site": test, "auc": value,
                 "rejected": bool(lift) and seed == 1 and row == "D"} for (row, test), value in auc.items()]

    monkeypatch.setattr(sweep, "_job", job)
    outcome = run_sweep(SweepConfig("demo", tmp_path / "cache", tmp_path / "sw", ALL, (SweepVariant("demo"),),
                                    seeds=(0, 1, 2)))
    summary = outcome.summary
    whole = summary[(summary["variant"] == "demo") & (summary["site"] == MATRIX)].iloc[0]
    half = stats.t.ppf(0.975, 2) * 0.005 / np.sqrt(3)
    assert (whole["train_site"], whole["pairs"]) == (ALL, 3)
    assert (whole["delta"], whole["low"], whole["high"]) == pytest.approx((0.155, 0.155 - half, 0.155 + half))
    base = summary[(summary["variant"] == BASELINE) & (summary["site"] == MATRIX)].iloc[0]
    assert base["mean"] == pytest.approx(np.mean([(0.6 + 0.01 * s + 0.5 + 0.02 * s) / 2 for s in range(3)]))
    row_d = summary[(summary["train_site"] == "D") & (summary["variant"] == "demo")].set_index("site")
    assert row_d.loc["in-site", "delta"] == pytest.approx(0.0) and row_d.loc["A", "delta"] == pytest.approx(0.21)
    text = (tmp_path / "sw" / "summary.md").read_text()
    assert "## Trained on site A" in text and "## Trained on site D" in text and "## The whole matrix" in text
    assert "- `demo`: 1 run(s), D seed 1\n" in text
    assert "over the whole matrix" not in text  # no twin, no ceiling line


def test_train_all_with_a_twin_trains_every_rows_ceiling_on_it_and_reads_the_matrix_against_it(tmp_path,
                                                                                            monkeypatch):
    """--train all --twin: the ceiling's job trains every row on the twin (no cue effects: four rows' models); its
    whole matrix is paired with the baseline's like a variant's, and each variant's gain is given as a share of
    it. Baseline: every other-site cell 0.6 + 0.01·s; the variant +0.05, the ceiling +0.2 + 0.02·s, so the
    matrix's ceiling gains +0.22 ± t(0.975, 2)·0.02/√3 and the variant's +0.05 is 23 % of it."""
    import ppi_cli.engine.sweep as sweep
    from ppi_cli.engine.sweep import ALL, CEILING, MATRIX, SweepConfig, SweepVariant, run_sweep

    calls = []

    def job(recipe_ref, data, out, train, overrides, seed, device, twin=None, tests=(), effects_twin=None,
            carrying=(), arm=None, energy=None):
        name = out.split("/")[-2]
        calls.append((name, train, twin, effects_twin))
        lift = {BASELINE: 0.0, "demo": 0.05, CEILING: 0.2 + 0.02 * seed}[name]
        return [{"train_site": row, "test_site": test, "auc": 0.95 if row == test else 0.6 + 0.01 * seed + lift}
                for row in "AD" for test in "AD"]

    monkeypatch.setattr(sweep, "_job", job)
    monkeypatch.setattr(sweep, "_check_twin_early", lambda cfg: None)
    outcome = run_sweep(SweepConfig("demo", tmp_path / "cache", tmp_path / "sw", ALL, (SweepVariant("demo"),),
                                    seeds=(0, 1, 2), twin=tmp_path / "twin"))
    assert {(n, t, w, e) for n, t, w, e in calls} == {(BASELINE, ALL, None, None), ("demo", ALL, None, None),
                                                      (CEILING, ALL, str(tmp_path / "twin"), None)}
    whole = outcome.summary[outcome.summary["site"] == MATRIX].set_index("variant")
    half = stats.t.ppf(0.975, 2) * 0.02 / np.sqrt(3)
    assert (whole.loc[CEILING, "delta"], whole.loc[CEILING, "low"]) == pytest.approx((0.22, 0.22 - half))
    assert whole.loc["demo", "delta"] == pytest.approx(0.05)
    text = (tmp_path / "sw" / "summary.md").read_text().split("## The whole matrix")[1]
    assert f"- `{CEILING}`: the baseline trained on the twin at every site, +0.220 [" in text
    assert "- `demo`: +0.050 [+0.050, +0.050]; against the ceiling: +0.050 of its +0.220 over the whole matrix " \
           "(23 %)" in text
    assert not (tmp_path / "sw" / "cue_effect.csv").exists()


def test_a_twin_adds_the_ceiling_row_trained_on_the_twin_alone(tmp_path, monkeypatch):
    import ppi_cli.engine.sweep as sweep
    from ppi_cli.engine.sweep import CEILING, SweepConfig, SweepVariant, run_sweep

    calls, arms = [], []
    level = {BASELINE: 0.6, "demo": 0.62, CEILING: 0.9}

    def job(recipe_ref, data, out, train, overrides, seed, device, twin=None, tests=(), effects_twin=None,
            carrying=(), arm=None, energy=None):
        name = out.split("/")[-2]
        calls.append((name, seed, twin, overrides.get("ppi.enabled", True)))
        arms.append((name, seed, arm))
        threads.append(torch.get_num_threads())
        assert effects_twin == str(tmp_path / "twin")  # every variant's model is measured on the twin
        assert carrying == (0, 3)  # on the rows found once for the whole sweep
        return [{"train_site": train, "test_site": site, "auc": level[name] + 0.01 * seed + (0.05 if site == train
                                                                                            else 0.0)}
                for site in ("A", "D")] + [{"train_site": train, "test_site": "A", "label": label, "n": 1 + label,
                                            "effect": level[name] * (1 + label) + seed} for label in (0, 1)]

    monkeypatch.setattr(sweep, "_job", job)
    monkeypatch.setattr(sweep, "_check_twin_early", lambda cfg: calls.append(("check", None, cfg.twin, None)))
    monkeypatch.setattr(sweep, "_carrying_rows", lambda cfg: (0, 3))  # the rows carrying the cue, found once
    threads, before = [], torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        outcome = run_sweep(SweepConfig("demo", tmp_path / "cache", tmp_path / "sw", "D", (SweepVariant("demo"),),
                                        seeds=(0, 1, 2), twin=tmp_path / "twin"))
        # one worker trains in this process on one thread, as each of several workers does (the same AUCs
        # whatever --workers), and gives the process its threads back
        assert threads == [1] * 9 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert calls[0] == ("check", None, tmp_path / "twin", None)  # the twin is checked before any study
    assert {(n, t, e) for n, _, t, e in calls[1:]} == {(BASELINE, None, False), ("demo", None, True),
                                                       (CEILING, str(tmp_path / "twin"), False)}
    # each seed's baseline arm runs before its PPI variant, whose collapse guard may read it (the ceiling is no arm)
    assert arms == [(name, s, str(tmp_path / "sw" / BASELINE / f"seed-{s}") if name == "demo" else None)
                    for s in (0, 1, 2) for name in (BASELINE, "demo", CEILING)]
    row = outcome.summary[(outcome.summary["variant"] == CEILING) & (outcome.summary["site"] == "A")].iloc[0]
    assert row["delta"] == pytest.approx(0.30) and row["pairs"] == 3
    text = (tmp_path / "sw" / "summary.md").read_text()
    assert f"- `{CEILING}`: the baseline trained on the twin" in text and "+0.300 [+0.300, +0.300]" in text
    assert ("- `demo`: helped: cross-site mean +0.020 (A +0.020); against the ceiling: +0.020 of its +0.300 over "
            "the other sites (7 %), in-site +0.020 where it has +0.300\n") in text
    assert f"`trained on={tmp_path / 'twin'}`" in text
    assert json.loads((tmp_path / "sw" / "sweep.json").read_text())["twin"] == str(tmp_path / "twin")
    # the cue's effect: per seed the rows' weighted mean at A (0.6·1 + 1.2·2) / 3 + seed = 1.0 + seed for the
    # baseline; over seeds 0-2 the mean 2.0 with the t-interval 2 ± 4.303 · 1 / √3
    effects = pd.read_csv(tmp_path / "sw" / "cue_effect.csv")
    assert len(effects) == 3 * 3 * 2 and set(effects["variant"]) == {BASELINE, "demo", CEILING}
    assert "| baseline | +2.00 [-0.48, +4.48] |" in text.split("The cue's effect")[1]
    with pytest.raises(ConfigError, match="names must differ"):
        run_sweep(SweepConfig("demo", tmp_path / "cache", tmp_path / "sw2", "D", (SweepVariant(CEILING),),
                              twin=tmp_path / "twin"))


def test_a_twin_with_other_rows_is_refused_in_one_line_before_any_study(cli, tmp_path):
    from ppi_cli.data.ga.prepare import GaPrepareConfig, prepare_ga
    from ppi_cli.data.synth.ga import SynthGaConfig, synth_ga

    for name, per_site in (("data", 2), ("twin", 4)):
        raw = synth_ga(SynthGaConfig(out=tmp_path / name / "raw", sites=("A", "D"), per_site=per_site, n_bscans=2,
                                     size=(16, 16), shortcut="diffuse"))
        prepare_ga(GaPrepareConfig(manifest=raw.manifest, out=tmp_path / name / "cache", bscan_size=(16, 16),
                                   n_bscans=2))
    result = cli("sweep", "--recipe", "demo-ga-site-ppi-wbp", "--data", tmp_path / "data" / "cache", "--twin",
                 tmp_path / "twin" / "cache", "--train", "D", "--seeds", "0-1", "--out", tmp_path / "sw")
    lines = [line for line in result.stderr.splitlines() if line.startswith("ppi:")]
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.stderr
    assert f"--twin {tmp_path / 'twin' / 'cache'}: 8 rows where {tmp_path / 'data' / 'cache'} has 4" in lines[0]
    assert "same `ppi synth` options" in lines[0]
    assert not (tmp_path / "sw").exists()


def test_a_crossval_sweep_pairs_by_seed_and_fold_and_scores_every_fold_model_on_the_test_caches(tmp_path,
                                                                                                one_thread):
    """Without a training site each study is a cross-validation: in-site cells are the folds' own test AUCs, the
    test caches are scored whole by every fold's model, and the ceiling trains on the twin and is scored on the
    data's test rows of each fold; --energy measures every fold model on the cross-validated cohort."""
    from ppi_cli.engine.crossval import fold_checkpoint
    from ppi_cli.engine.study import predict_rows, resolve_study
    from ppi_cli.engine.sweep import CEILING, SweepConfig, SweepVariant, run_sweep
    from ppi_cli.reports.metrics import binary_metrics

    data = lidc_nodule_cache(tmp_path / "cohort", side=48, patients=6)
    other = lidc_nodule_cache(tmp_path / "reversed", side=48, patients=4, seed=1)
    twin = lidc_nodule_cache(tmp_path / "twin", side=48, patients=6, seed=5)  # the same rows, other pixels
    common = {"schedule.epochs": 2, "eval.folds": 2, "ppi.start_epoch": 1}
    cfg = SweepConfig("demo-lidc-ppi-wbp", data, tmp_path / "sw", None, (SweepVariant("demo-lidc-ppi-wbp"),),
                      seeds=(0, 1), common=common, twin=twin, tests=(other,), energy="wbp")
    outcome = run_sweep(cfg)
    runs = outcome.runs
    energies = pd.read_csv(tmp_path / "sw" / "energy.csv")  # each fold model's, on the cross-validated cohort
    assert list(energies.columns) == ["variant", "seed", "fold", "train_site", "energy"] and len(energies) == 12
    assert set(energies["train_site"]) == {"cohort"} and energies["energy"].between(0, 1).all()
    assert "| variant | trained on cohort |" in (tmp_path / "sw" / "summary.md").read_text()
    assert list(runs.columns) == ["variant", "seed", "fold", "train_site", "test_site", "auc", "rejected"]
    assert not runs["rejected"].any()  # no run here has ppi.fallback_drop
    assert len(runs) == 3 * 2 * 2 * 2  # (baseline, recipe, ceiling) × seeds × folds × (cohort, reversed)
    for seed in (0, 1):
        study = tmp_path / "sw" / "demo-lidc-ppi-wbp" / f"seed-{seed}"
        folds = pd.read_csv(study / "folds.csv").set_index("fold")["auc"]
        mine = runs[(runs["variant"] == "demo-lidc-ppi-wbp") & (runs["seed"] == seed)]
        in_site = mine[mine["test_site"] == "cohort"].set_index("fold")["auc"]
        assert in_site.to_dict() == pytest.approx({k: folds[f"fold-{k}"] for k in (0, 1)})  # crossval's own
        recipe, reversed_data = resolve_study("demo-lidc-ppi-wbp", data=other, overrides={**common, "seed": seed})
        _, labels, scores = predict_rows(fold_checkpoint(study, 1), recipe, reversed_data,
                                         np.arange(len(reversed_data.labels)), device="cpu")
        scored = mine[(mine["test_site"] == "reversed") & (mine["fold"] == 1)]["auc"].item()
        assert scored == pytest.approx(binary_metrics(labels.tolist(), scores.tolist()).auc)
    # the ceiling's folds trained on the twin; its in-site cells score the data's test rows of the same fold
    study = tmp_path / "sw" / CEILING / "seed-0"
    recipe, cohort = resolve_study("demo-lidc-ppi-wbp", data=data, overrides={**common, "seed": 0})
    twin_hash = resolve_study("demo-lidc-ppi-wbp", data=twin, overrides=common)[1].data_hash
    assert json.loads((study / "study.json").read_text())["data_hash"] == twin_hash != cohort.data_hash
    rows = np.asarray(json.loads((study / "folds.json").read_text())["fold-0"])
    _, labels, scores = predict_rows(fold_checkpoint(study, 0), recipe, cohort, rows, device="cpu")
    ceiling = runs[(runs["variant"] == CEILING) & (runs["seed"] == 0) & (runs["fold"] == 0)]
    assert ceiling[ceiling["test_site"] == "cohort"]["auc"].item() == pytest.approx(
        binary_metrics(labels.tolist(), scores.tolist()).auc)
    summary = outcome.summary
    row = summary[(summary["variant"] == CEILING) & (summary["site"] == CROSS_SITE)].iloc[0]
    assert row["pairs"] == 4  # two seeds × two folds
    text = (tmp_path / "sw" / "summary.md").read_text()
    assert "cross-validated on cohort" in text and "other sites: reversed, scored whole" in text
    with pytest.raises(ConfigError, match="--test: further test caches belong to a cross-validation sweep"):
        run_sweep(SweepConfig("demo-lidc-ppi-wbp", data, tmp_path / "sw2", "A", (), tests=(other,)))
    (tmp_path / "raw").mkdir()  # not a cache: refused before any study trains or the sweep folder exists
    with pytest.raises(DataError, match=f"^--test {tmp_path / 'raw'}"):
        run_sweep(SweepConfig("demo-lidc-ppi-wbp", data, tmp_path / "sw3", None, (), tests=(tmp_path / "raw",)))
    assert not (tmp_path / "sw3").exists()


def test_the_cue_effect_is_each_kept_models_logit_shift_on_the_images_that_carry_the_cue(tmp_path, one_thread):
    """On a diffuse-ramp cohort and its twin without the cue (the same synth options and seed): the rows whose
    images differ are the answer key's cue rows, and each cell is the mean logit shift a hand computation gives
    with the study's own best.pt."""
    from ppi_cli.data.ga.prepare import GaPrepareConfig, prepare_ga
    from ppi_cli.data.synth.ga import SynthGaConfig, synth_ga
    from ppi_cli.engine.cue_effect import EFFECTS_FILE
    from ppi_cli.engine.study import predict_rows, resolve_study
    from ppi_cli.engine.sweep import CEILING, SweepConfig, SweepVariant, run_sweep

    caches = {}
    for name, shortcut in (("data", "diffuse"), ("twin", "none")):
        raw = synth_ga(SynthGaConfig(out=tmp_path / name / "raw", sites=("A", "D"), per_site=4, n_bscans=2,
                                     size=(16, 16), shortcut=shortcut))
        caches[name] = prepare_ga(GaPrepareConfig(manifest=raw.manifest, out=tmp_path / name / "cache",
                                                  bscan_size=(16, 16), n_bscans=2)).out
    key = pd.read_csv(tmp_path / "data" / "raw" / "answer_key.csv")
    common = {"schedule.epochs": 2, "ppi.start_epoch": 1}
    run_sweep(SweepConfig("demo-ga-site-ppi-wbp", caches["data"], tmp_path / "sw", "D",
                          (SweepVariant("demo-ga-site-ppi-wbp"),), seeds=(0, 1), common=common, twin=caches["twin"]))
    effects = pd.read_csv(tmp_path / "sw" / EFFECTS_FILE)
    assert set(effects["variant"]) == {BASELINE, "demo-ga-site-ppi-wbp", CEILING}
    manifest = pd.read_csv(caches["data"] / "manifest.csv")
    cue = manifest["path"].map(key.set_index("path")["cue"]).to_numpy().astype(bool)
    assert 0 < cue.sum() < len(cue)
    for variant, sub in ((BASELINE, "baseline"), ("demo-ga-site-ppi-wbp", "ppi"), (CEILING, "baseline")):
        recipe, data = resolve_study("demo-ga-site-ppi-wbp", data=caches["data"], overrides={**common, "seed": 1})
        twin = resolve_study("demo-ga-site-ppi-wbp", data=caches["twin"], overrides={**common, "seed": 1})[1]
        best = tmp_path / "sw" / variant / "seed-1" / sub / "train-D" / "best.pt"
        rows = np.flatnonzero(cue)
        _, labels, with_cue = predict_rows(best, recipe, data, rows, device="cpu")
        _, _, without = predict_rows(best, recipe, twin, rows, device="cpu")
        p, q = (np.clip(v, 1e-6, 1 - 1e-6) for v in (with_cue, without))
        shift = np.log(p / (1 - p)) - np.log(q / (1 - q))
        mine = effects[(effects["variant"] == variant) & (effects["seed"] == 1)]
        for (site, label), part in pd.DataFrame({"site": data.sites[rows], "label": labels.astype(int),
                                                 "shift": shift}).groupby(["site", "label"]):
            cell = mine[(mine["test_site"] == site) & (mine["label"] == label)].iloc[0]
            assert cell["n"] == len(part) and cell["effect"] == pytest.approx(part["shift"].mean(), abs=1e-5)
        assert mine["n"].sum() == cue.sum()  # no row without the cue is counted
    assert "The cue's effect on the kept model's logit" in (tmp_path / "sw" / "summary.md").read_text()


def test_the_whole_matrix_gives_each_sites_column_over_the_rows_trained_elsewhere_against_a_hand_computation():
    """--train all: each test site's column is, per seed, the mean of its AUCs over the rows trained elsewhere,
    paired with the baseline's over the seeds with every row. Three sites; the variant lifts cell (R, T) by
    0.01·rank(R) + 0.1·[T = C] + 0.01·s (ranks A 0, B 1, C 2), so column C (rows A and B) gains
    0.105 + 0.01·s and column A (rows B and C) 0.015 + 0.01·s. Seed 2 has no row B: it joins no column."""
    from ppi_cli.engine.sweep import ALL, MATRIX
    from ppi_cli.reports.sweep_summary import summarise_matrix
    from ppi_cli.reports.sweep_tables import sweep_markdown

    rank = {"A": 0, "B": 1, "C": 2}
    cells = []
    for seed in range(3):
        for variant, lift in ((BASELINE, 0.0), ("demo", 1.0)):
            for row in "ABC":
                if seed == 2 and row == "B":
                    continue
                for test in "ABC":
                    gain = 0.01 * rank[row] + 0.1 * (test == "C") + 0.01 * seed
                    cells.append({"variant": variant, "seed": seed, "train_site": row, "test_site": test,
                                  "auc": 0.6 + 0.05 * rank[test] + lift * gain, "rejected": False})
    runs = pd.DataFrame(cells)
    table = summarise_matrix(runs)
    columns = table[table["train_site"] == ALL].set_index(["variant", "site"])
    assert [s for s in columns.loc["demo"].index] == ["A", "B", "C", MATRIX]
    half = stats.t.ppf(0.975, 1) * np.std([0.0, 0.01], ddof=1) / np.sqrt(2)
    for site, others in (("A", "BC"), ("C", "AB")):
        expect = np.mean([0.01 * rank[r] + 0.1 * (site == "C") for r in others]) + 0.005  # seeds 0, 1
        cell = columns.loc[("demo", site)]
        assert (cell["pairs"], cell["delta"], cell["low"], cell["high"]) == pytest.approx(
            (2, expect, expect - half, expect + half))
        assert columns.loc[(BASELINE, site), "mean"] == pytest.approx(0.6 + 0.05 * rank[site])
    # the whole matrix as before: per seed the mean over rows of each row's mean over its other sites
    whole = np.mean([np.mean([0.01 * rank[r] + 0.1 * (t == "C") for t in "ABC" if t != r]) for r in "ABC"]) + 0.005
    assert columns.loc[("demo", MATRIX), "delta"] == pytest.approx(whole)
    text = sweep_markdown("demo", "seeds", table, runs, matrix=True, overrides={"demo": {}}, common={})
    matrix = text.split("## The whole matrix")[1]
    assert "| variant | at A | at B | at C | whole matrix |" in matrix
    assert columns.loc[("demo", "C"), "room"] == pytest.approx(1 - (0.6 + 0.05 * rank["C"]))
    assert "| room (1 − baseline) | +0.400 | +0.350 | +0.300 | +0.350 |" in matrix
    assert f"| Δ vs baseline | +{columns.loc[('demo', 'A'), 'delta']:.3f} [" in matrix
    assert "## Trained on site all" not in text


def test_the_whole_matrix_reads_no_share_where_the_ceilings_interval_reaches_zero():
    """A ceiling whose whole-matrix interval is not clear of 0 shows no headroom to take a share of."""
    from ppi_cli.engine.sweep import CEILING, MATRIX
    from ppi_cli.reports.sweep_tables import matrix_ceiling_lines

    matrix = pd.DataFrame([{"variant": BASELINE, "site": MATRIX, "delta": np.nan, "low": np.nan, "high": np.nan},
                           {"variant": "demo", "site": MATRIX, "delta": 0.02, "low": 0.01, "high": 0.03},
                           {"variant": CEILING, "site": MATRIX, "delta": 0.05, "low": -0.01, "high": 0.11}])
    lines = matrix_ceiling_lines(matrix)
    assert lines[-1] == "- `demo`: +0.020 [+0.010, +0.030]; the ceiling shows no headroom"
    assert matrix_ceiling_lines(matrix[matrix["variant"] != CEILING]) == []  # no twin, no lines


def test_the_energy_summary_pairs_each_seed_and_reads_the_whole_matrix_against_a_hand_computation():
    """--energy: per row the mean energy and the paired Δ with its t-interval; the whole matrix is per seed the mean
    over the rows, over the seeds that have every row. Baseline: row A 0.2 + 0.01·s, row D 0.3; the variant adds
    0.1 on A and 0.02·s on D, so the matrix gains 0.05 + 0.01·s. Seed 3 has no row D: it joins row A alone."""
    from ppi_cli.engine.sweep import MATRIX, summarise_energy

    cells = []
    for seed in range(4):
        for variant, lift in ((BASELINE, 0.0), ("demo", 1.0)):
            cells.append({"variant": variant, "seed": seed, "train_site": "A",
                          "energy": 0.2 + 0.01 * seed + 0.1 * lift})
            if seed < 3:
                cells.append({"variant": variant, "seed": seed, "train_site": "D",
                              "energy": 0.3 + 0.02 * seed * lift})
    table = summarise_energy(pd.DataFrame(cells)).set_index(["variant", "train_site"])
    assert list(table.index.get_level_values(1).unique()) == ["A", "D", MATRIX]
    assert (table.loc[("demo", "A"), "delta"], table.loc[("demo", "A"), "pairs"]) == pytest.approx((0.1, 4))
    half = stats.t.ppf(0.975, 2) * 0.02 / np.sqrt(3)  # row D: 0, 0.02, 0.04
    assert table.loc[("demo", "D"), ["delta", "low", "high"]].tolist() == pytest.approx([0.02, 0.02 - half,
                                                                                        0.02 + half])
    whole = table.loc[("demo", MATRIX)]
    half = stats.t.ppf(0.975, 2) * 0.01 / np.sqrt(3)
    assert (whole["pairs"], whole["delta"], whole["low"]) == pytest.approx((3, 0.06, 0.06 - half))
    assert table.loc[(BASELINE, MATRIX), "mean"] == pytest.approx(np.mean([(0.2 + 0.01 * s + 0.3) / 2
                                                                           for s in range(3)]))
    assert np.isnan(table.loc[(BASELINE, "A"), "delta"])


def test_energy_is_segment_evals_share_inside_the_masks_for_each_kept_model_and_is_read_back(tmp_path, one_thread):
    """A sweep with --energy on a generated GA cohort: each kept model's energy is what `ppi segment-eval` reports
    for that checkpoint (energy pointing game, all points), it is kept beside best.pt with the data's hash and read
    back by a rerun, and summary.md carries the table; data without masks or an unknown method are refused in one
    line before anything is written."""
    from ppi_cli.data.ga.prepare import GaPrepareConfig, prepare_ga
    from ppi_cli.data.synth.ga import SynthGaConfig, synth_ga
    from ppi_cli.engine.segment_eval import SegmentEvalConfig, segment_eval
    from ppi_cli.engine.sweep import SweepConfig, SweepVariant, run_sweep
    from ppi_cli.errors import CacheError

    raw = synth_ga(SynthGaConfig(out=tmp_path / "raw", sites=("A", "D"), per_site=4, n_bscans=2, size=(16, 16),
                                 shortcut="diffuse"))
    cache = prepare_ga(GaPrepareConfig(manifest=raw.manifest, out=tmp_path / "cache", bscan_size=(16, 16),
                                       n_bscans=2)).out
    recipe = "demo-ga-site-ppi-wbp"
    cfg = SweepConfig(recipe, cache, tmp_path / "sw", "D", (SweepVariant(recipe),), seeds=(0, 1),
                      common={"schedule.epochs": 2, "ppi.start_epoch": 1}, energy="wbp")
    run_sweep(cfg)
    energies = pd.read_csv(tmp_path / "sw" / "energy.csv")
    assert len(energies) == 4 and set(energies["train_site"]) == {"D"}
    for variant, sub in ((BASELINE, "baseline"), (recipe, "ppi")):
        best = tmp_path / "sw" / variant / "seed-1" / sub / "train-D" / "best.pt"
        shown = segment_eval(SegmentEvalConfig(best, data=cache, methods=("wbp",), out=tmp_path / f"se-{sub}",
                                               gallery=0)).summary.loc["energy pointing game, all points", "wbp"]
        mine = energies[(energies["variant"] == variant) & (energies["seed"] == 1)]["energy"].item()
        assert 0 < shown < 1 and mine == pytest.approx(shown, abs=1e-9)
    kept = tmp_path / "sw" / recipe / "seed-1" / "ppi" / "train-D" / "energy-wbp.json"
    held = json.loads(kept.read_text())
    assert (held["method"], held["data"]) == ("wbp", "cache") and held["samples"] > 0
    kept.write_text(json.dumps({**held, "energy": 0.125}))  # a rerun reads it instead of measuring again
    run_sweep(cfg)
    energies = pd.read_csv(tmp_path / "sw" / "energy.csv")
    assert energies[(energies["variant"] == recipe) & (energies["seed"] == 1)]["energy"].item() == 0.125
    text = (tmp_path / "sw" / "summary.md").read_text()
    assert "## Energy inside the lesion (wbp)" in text and "| variant | trained on D |" in text
    with pytest.raises(ConfigError, match="^--energy: saliency method 'nope' is unknown"):
        run_sweep(SweepConfig(recipe, cache, tmp_path / "sw2", "D", (), energy="nope"))
    (cache / "masks.npy").rename(cache / "masks.off")
    with pytest.raises(CacheError, match=f"^--energy: {cache} holds no expert masks"):
        run_sweep(SweepConfig(recipe, cache, tmp_path / "sw3", "D", (), energy="wbp"))
    assert not (tmp_path / "sw2").exists() and not (tmp_path / "sw3").exists()
