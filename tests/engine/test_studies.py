# SPDX-License-Identifier: MIT
"""Study orchestration (crossval, cross-site) with the training step replaced by a fast stand-in.

The stand-in "model" scores a row from its label and a per-row seed, so every number downstream is
reproducible and checkable; the real trainer is exercised in tests/test_studies_train.py.
"""

from __future__ import annotations

import json
import types

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ppi_cli.engine.cross_site as xs
import ppi_cli.engine.crossval as cv
import ppi_cli.engine.study as study
from ppi_cli.config import load_recipe
from ppi_cli.data.splits import check_disjoint, load_split
from ppi_cli.engine.study import DEFAULT_RECIPES, StudyData, default_recipe, fold_splits, resolve_study, study_split
from ppi_cli.errors import CacheError, ConfigError, DataError
from ppi_cli.reports.metrics import roc_auc


def make_data(n_subjects=40, sites=("A", "B", "C", "D"), seed=0):
    rng = np.random.default_rng(seed)
    per = rng.integers(1, 4, n_subjects)
    subjects = np.repeat([f"S{i:03d}" for i in range(n_subjects)], per)
    labels = np.repeat(rng.integers(0, 2, n_subjects), per)
    site_of = np.array(sites)[np.arange(n_subjects) % len(sites)]
    return StudyData("synthetic", None, labels, subjects, np.repeat(site_of, per), "hash0")


class _Trained(list):
    """(run folder, PPI on) per training run, in order; `arms`: the `without_ppi` folder each was offered."""

    def __init__(self) -> None:
        super().__init__()
        self.arms: list = []


@pytest.fixture
def fake_training(monkeypatch):
    """Replace the trainer's `fit` and the prediction step; record every training run (and, in `arms`, the run
    without PPI each was offered for its collapse guard)."""
    trained = _Trained()

    def fit(recipe, *, cache_dir, split, out_dir, device="auto", resume=False, without_ppi=None):
        trained.append((out_dir.relative_to(out_dir.parents[1]).as_posix(), recipe.ppi.enabled))
        trained.arms.append(without_ppi)
        (out_dir / "split.json").write_text(json.dumps(split.to_dict()))  # as the real fit's save_split does
        (out_dir / "best.pt").write_text(json.dumps({"strength": 1.5 if recipe.ppi.enabled else 0.7}))
        return types.SimpleNamespace(best_checkpoint=out_dir / "best.pt", best_epoch=0, best_metric=0.5)

    def predict_rows(checkpoint, recipe, data, rows, *, device):
        strength = json.loads(checkpoint.read_text())["strength"]
        rows = np.sort(rows)
        noise = np.array([np.random.default_rng(int(r)).normal() for r in rows])
        return rows, data.labels[rows], strength * data.labels[rows] + noise

    monkeypatch.setattr(study, "fit", fit)
    for module in (cv, xs):
        monkeypatch.setattr(module, "predict_rows", predict_rows)
    return trained


RECIPE = load_recipe("synthetic-ppi-wbp-cpu")


@st.composite
def manifests(draw):
    n_subjects = draw(st.integers(6, 30))
    per = draw(st.lists(st.integers(1, 5), min_size=n_subjects, max_size=n_subjects))
    labels = draw(st.lists(st.integers(0, 1), min_size=n_subjects, max_size=n_subjects))
    subjects = np.repeat([f"P{i}" for i in range(n_subjects)], per)
    # A subject's rows may carry different labels (lesions of one patient): grouping must still hold.
    flips = draw(st.lists(st.booleans(), min_size=len(subjects), max_size=len(subjects)))
    y = np.repeat(labels, per) ^ np.array(flips, dtype=int)
    return StudyData("synthetic", None, y, subjects, np.full(len(y), "na"), "h")


@settings(max_examples=30, deadline=None)
@given(manifests(), st.integers(2, 5), st.integers(0, 100), st.sampled_from([0.0, 0.2]))
def test_no_subject_leaks_across_folds_or_into_validation(data, n_folds, seed, val_fraction):
    splits = fold_splits(data, n_folds, seed, val_fraction)
    tests = [s.test for s in splits]
    assert np.array_equal(np.sort(np.concatenate(tests)), np.arange(len(data.labels)))
    owner = {}
    for k, test in enumerate(tests):
        for subject in set(data.subjects[test]):
            assert owner.setdefault(subject, k) == k, f"subject {subject} in test folds {owner[subject]} and {k}"
    for split in splits:
        check_disjoint(split, data.subjects)  # raises on a leak between train, val and test
        assert split.train.size + split.val.size + split.test.size == len(data.labels)


def test_single_folds_plus_collect_equal_one_full_run(tmp_path, fake_training):
    data = make_data()
    full = cv.run_crossval(cv.CrossvalConfig(RECIPE, data, tmp_path / "full", folds=4, seed=3, bootstrap=100))
    assert full.ran == [0, 1, 2, 3] and full.summary is not None
    for k in (2, 0, 3, 1):  # any order, as a job array would
        part = cv.run_crossval(cv.CrossvalConfig(RECIPE, data, tmp_path / "jobs", folds=4, seed=3, fold=k))
        assert part.summary is None and part.ran == [k]
    collected = cv.collect_crossval(tmp_path / "jobs", bootstrap=100)
    for name in ("predictions.csv", "folds.csv", "summary.md", "folds.json"):
        assert (tmp_path / "full" / name).read_bytes() == (tmp_path / "jobs" / name).read_bytes(), name
    assert collected.summary.headline == full.summary.headline
    folds = pd.read_csv(tmp_path / "full" / "folds.csv")
    preds = pd.read_csv(tmp_path / "full" / "predictions.csv")
    for k, row in folds.iterrows():
        part = preds[preds["part"] == f"fold-{k}"]
        assert row["auc"] == pytest.approx(roc_auc(part["label"], part["score"]))
        assert row["n"] == len(part)
    split = load_split(tmp_path / "full" / "fold-1" / "split.json")
    assert np.array_equal(split.test, np.sort(part_rows(preds, 1)))
    summary = (tmp_path / "full" / "summary.md").read_text()
    mean, std = folds["auc"].mean(), folds["auc"].std(ddof=1)
    assert f"AUC {mean:.3f} ± {std:.3f} (95% bootstrap interval [" in summary and "![ROC" in summary
    assert (tmp_path / "full" / "roc.png").is_file()
    # a fold whose PPI model ppi.fallback_drop rejected is flagged, in folds.csv and in the summary
    (tmp_path / "full" / "fold-2" / "ppi-rejected.json").write_text("{}")
    cv.collect_crossval(tmp_path / "full", bootstrap=0)
    folds = pd.read_csv(tmp_path / "full" / "folds.csv", keep_default_na=False)
    assert folds.loc[folds["flag"].str.contains("PPI rejected: trained without PPI"), "fold"].tolist() == ["fold-2"]
    assert "fold-2: PPI rejected: trained without PPI" in (tmp_path / "full" / "summary.md").read_text()


def part_rows(preds, k):
    return preds.loc[preds["part"] == f"fold-{k}", "index"].to_numpy()


def test_resume_skips_finished_folds_and_refuses_other_settings(tmp_path, fake_training):
    data = make_data()
    cv.run_crossval(cv.CrossvalConfig(RECIPE, data, tmp_path / "s", folds=3, seed=0, fold=1))
    with pytest.raises(DataError, match=r"fold\(s\) 0, 2 of 3 have not finished"):
        cv.collect_crossval(tmp_path / "s")
    again = cv.run_crossval(cv.CrossvalConfig(RECIPE, data, tmp_path / "s", folds=3, seed=0, bootstrap=0))
    assert again.ran == [0, 2]
    assert sum(1 for name, _ in fake_training if name.startswith("s/fold-1")) == 1
    with pytest.raises(ConfigError, match=r"other settings \(seed\)"):
        cv.run_crossval(cv.CrossvalConfig(RECIPE, data, tmp_path / "s", folds=3, seed=1))


def test_a_study_begun_before_a_field_was_added_resumes_unless_the_field_is_moved(tmp_path, fake_training):
    import yaml

    from ppi_cli.config import config_hash

    data = make_data()
    cv.run_crossval(cv.CrossvalConfig(RECIPE, data, tmp_path / "s", folds=3, seed=0, fold=1))
    # As an older toolkit wrote it: its recipe had no `ppi.look_to`, so its hash was another.
    recorded = yaml.safe_load((tmp_path / "s" / "recipe.yaml").read_text())
    del recorded["ppi"]["look_to"]
    (tmp_path / "s" / "recipe.yaml").write_text(yaml.safe_dump(recorded))
    record = json.loads((tmp_path / "s" / "study.json").read_text())
    record["recipes"] = {name: config_hash(recorded) for name in record["recipes"]}
    (tmp_path / "s" / "study.json").write_text(json.dumps(record))
    moved = RECIPE.replace(**{"ppi.look_to": "random"})
    with pytest.raises(ConfigError, match=r"other settings \(recipes\)"):
        cv.run_crossval(cv.CrossvalConfig(moved, data, tmp_path / "s", folds=3, seed=0, bootstrap=0))
    again = cv.run_crossval(cv.CrossvalConfig(RECIPE, data, tmp_path / "s", folds=3, seed=0, bootstrap=0))
    assert again.ran == [0, 2]  # the new field at its default: the same study


def test_crossval_compare_pairs_two_recipes_on_the_same_folds(tmp_path, fake_training):
    data = make_data()
    base = RECIPE.replace(**{"ppi.enabled": False})
    cv.run_crossval(cv.CrossvalConfig(base, data, tmp_path / "base", folds=3, bootstrap=0))
    out = cv.run_crossval(cv.CrossvalConfig(RECIPE, data, tmp_path / "ppi", folds=3, bootstrap=50,
                                            compare=tmp_path / "base"))
    assert out.comparison.table["part"].tolist() == ["fold-0", "fold-1", "fold-2"]
    assert out.comparison.headline["difference"] > 0  # the stand-in PPI model separates the classes better
    assert out.comparison.headline["n_pairs"] == 3
    assert (tmp_path / "ppi" / "compare-base" / "comparison.md").is_file()


def test_cross_site_cells_alone_then_full_matrix_with_baseline(tmp_path, fake_training):
    data = make_data(n_subjects=48)
    one = xs.run_cross_site(xs.CrossSiteConfig(RECIPE, data, tmp_path / "xs", ("A",), ("B",), bootstrap=0))
    assert one.ran == ["ppi:A>A", "ppi:A>B"]
    assert np.isnan(one.matrices["ppi"].loc["A", "C"])
    full = xs.run_cross_site(xs.CrossSiteConfig(RECIPE, data, tmp_path / "xs", None, None, baseline=True,
                                                bootstrap=50))
    assert "ppi:A>B" not in full.ran and "ppi:A>C" in full.ran and "baseline:A>B" in full.ran
    assert [n for n, _ in fake_training].count("ppi/train-A") == 1  # A's model trained once, reused by its cells
    cells = pd.read_csv(tmp_path / "xs" / "cells.csv")
    assert len(cells) == 32
    preds = pd.read_csv(tmp_path / "xs" / "ppi" / "predictions.csv", dtype={"part": str})
    cell = preds[preds["part"] == "C>B"]
    assert set(cell["index"]) == set(np.flatnonzero(data.sites == "B"))
    matrix = pd.read_csv(tmp_path / "xs" / "matrix-ppi.csv", index_col=0)
    assert matrix.loc["C", "B"] == pytest.approx(roc_auc(cell["label"], cell["score"]))
    row = matrix.loc["D", ["A", "B", "C", "D"]].to_numpy()
    assert matrix.loc["D", "STD"] == pytest.approx(np.std(row, ddof=1))
    split = load_split(tmp_path / "xs" / "ppi" / "train-D" / "split.json")
    assert set(data.sites[np.r_[split.train, split.val, split.test]]) == {"D"}
    held = preds[preds["part"] == "D>D"]["index"].to_numpy()
    assert np.array_equal(np.sort(held), split.test)
    for name in ("cross_site.md", "gap.csv", "heatmap.png", "matrix-baseline.md", "compare/comparison.md"):
        assert (tmp_path / "xs" / name).is_file(), name
    again = xs.collect_cross_site(tmp_path / "xs", bootstrap=0)
    assert again.matrices["baseline"].equals(full.matrices["baseline"])
    # a PPI run that ppi.fallback_drop rejected flags its own cells and no other
    (tmp_path / "xs" / "ppi" / "train-C" / "ppi-rejected.json").write_text("{}")
    xs.collect_cross_site(tmp_path / "xs", bootstrap=0)
    cells = pd.read_csv(tmp_path / "xs" / "cells.csv", keep_default_na=False)
    rejected = cells["flag"].str.contains("PPI rejected: trained without PPI")
    assert set(cells[rejected]["variant"] + ":" + cells[rejected]["train_site"]) == {"ppi:C"}
    assert rejected.sum() == 4
    rows = {line.split("|")[1].strip(): line.split("|")[-2].strip()
            for line in (tmp_path / "xs" / "cross_site.md").read_text().splitlines()
            if line.startswith("| ") and line.split("|")[1].strip() in "ABCD"}
    assert rows["C"] == "PPI rejected" and "PPI rejected" not in (rows["A"], rows["B"], rows["D"])


def test_each_ppi_run_is_offered_the_run_without_ppi_trained_before_it(tmp_path, fake_training):
    """The collapse guard's run without PPI is the study's baseline arm: with --baseline each site's arm trains just
    before its PPI run (so the study's ETA mixes both), which is offered it; a sweep's cross-site row or crossval
    gets its seed's arm (`baseline_from`); a cross-site study without either its own folder's (the baseline recipe
    may have run into it before); a crossval the run it is compared with (`--compare`), or none."""
    data = make_data(n_subjects=48)
    xs.run_cross_site(xs.CrossSiteConfig(RECIPE, data, tmp_path / "xs", ("A", "B"), ("C",), baseline=True,
                                         bootstrap=0))
    arm = tmp_path / "xs" / "baseline"
    assert list(zip(fake_training, fake_training.arms, strict=True)) == [
        (("baseline/train-A", False), None), (("ppi/train-A", True), arm / "train-A"),
        (("baseline/train-B", False), None), (("ppi/train-B", True), arm / "train-B")]
    del fake_training[:], fake_training.arms[:]
    xs.run_cross_site(xs.CrossSiteConfig(RECIPE, data, tmp_path / "row", ("D",), bootstrap=0,
                                         baseline_from=tmp_path / "arm"))
    xs.run_cross_site(xs.CrossSiteConfig(RECIPE, data, tmp_path / "alone", ("D",), bootstrap=0))
    cv.run_crossval(cv.CrossvalConfig(RECIPE, data, tmp_path / "cv", folds=3, bootstrap=0,
                                      baseline_from=tmp_path / "cv-arm"))
    plain = RECIPE.replace(**{"ppi.enabled": False})
    cv.run_crossval(cv.CrossvalConfig(plain, data, tmp_path / "cv-plain", folds=3, bootstrap=0))
    cv.run_crossval(cv.CrossvalConfig(RECIPE, data, tmp_path / "cv-ppi", folds=3, bootstrap=0,
                                      compare=tmp_path / "cv-plain"))
    assert fake_training.arms == [tmp_path / "arm" / "baseline" / "train-D",
                                  tmp_path / "alone" / "baseline" / "train-D",
                                  *(tmp_path / "cv-arm" / f"fold-{k}" for k in range(3)), None, None, None,
                                  *(tmp_path / "cv-plain" / f"fold-{k}" for k in range(3))]


def test_cross_site_errors(tmp_path, fake_training):
    data = make_data()
    with pytest.raises(ConfigError, match="--train E: no such site"):
        xs.run_cross_site(xs.CrossSiteConfig(RECIPE, data, tmp_path / "x", ("E",)))
    single = StudyData("synthetic", None, data.labels, data.subjects, np.full(data.labels.size, "A"), "h")
    with pytest.raises(DataError, match="needs two or more"):
        xs.run_cross_site(xs.CrossSiteConfig(RECIPE, single, tmp_path / "y", ("A",)))


def fake_cache(folder, kind, sites=("A", "B")):
    from ppi_cli.data.cache import write_cache_info

    folder.mkdir(parents=True)
    rows = [{"sample_id": f"v{i}", "subject_id": f"s{i // 2}", "site": sites[i % len(sites)], "label": i % 2}
            for i in range(16)]
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    write_cache_info(folder, kind, {"p": 1}, 16, ["manifest.csv"])


def test_workspace_defaults(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    recipe, data = resolve_study(None, workspace=ws)  # no cache anywhere: the generated task, for every verb
    assert recipe.name == "synthetic-ppi-wbp-cpu" and data.kind == "synthetic" and data.cache_dir is None
    with pytest.raises(CacheError, match="not a prepared cache"):
        resolve_study(None, data=tmp_path / "nothing", workspace=ws)
    fake_cache(ws / "cache" / "ga", "ga")
    recipe, data = resolve_study(None, workspace=ws)
    assert recipe.name == "ga-ppi-wbp-cpu" and data.kind == "ga" and sorted(set(data.sites)) == ["A", "B"]
    fake_cache(ws / "cache" / "lidc", "lidc")
    with pytest.raises(ConfigError, match=r"several prepared caches \(lidc, ga\)"):
        resolve_study(None, workspace=ws)
    recipe, data = resolve_study(None, dataset="lidc", workspace=ws)
    assert recipe.name == "lidc-ppi-wbp-cpu" and data.cache_dir == ws / "cache" / "lidc"
    with pytest.raises(ConfigError, match="--dataset ga: recipe 'lidc-baseline-cpu' trains on 'lidc'"):
        resolve_study("lidc-baseline-cpu", dataset="ga", workspace=ws)


def test_cli_errors_are_one_line(cli, tmp_path):
    result = cli("crossval", "--fold", "1")
    assert result.exit_code == 1 and "--fold needs --out" in result.stderr and result.stderr.count("\n") == 1
    result = cli("cross-site", "--train", "A", "--test", "B,C,D")
    assert result.exit_code == 1 and "no cache here" in result.stderr and "ppi prepare ga" in result.stderr
    result = cli("crossval", "--collect")
    assert result.exit_code == 1 and "no crossval run to collect" in result.stderr


def test_one_default_recipe_rule_for_every_dataset(tmp_path):
    assert [default_recipe(kind, cuda=False) for kind in ("lidc", "ga", "folder", "synthetic")] == [
        "lidc-ppi-wbp-cpu", "ga-ppi-wbp-cpu", "cub-ppi-wbp-cpu", "synthetic-ppi-wbp-cpu"]
    assert default_recipe("folder", cuda=True) == DEFAULT_RECIPES["folder"] == "cub-ppi-wbp"
    with pytest.raises(ConfigError, match="no default recipe"):
        default_recipe("mystery", cuda=False)
    ws = tmp_path / "ws"
    fake_cache(ws / "cache" / "folder", "folder")  # crossval used to refuse a folder cache that train accepted
    recipe, data = resolve_study(None, workspace=ws)
    assert recipe.name == "cub-ppi-wbp-cpu" and data.kind == "folder" and data.cache_dir == ws / "cache" / "folder"


@settings(max_examples=10, deadline=None)
@given(manifests(), st.integers(2, 5), st.integers(0, 99), st.sampled_from([0.0, 0.25]))
def test_train_fold_k_is_crossval_fold_k(data, n_folds, seed, val_fraction):
    for k, split in enumerate(fold_splits(data, n_folds, seed, val_fraction)):
        alone = study_split(data, fold=k, folds=n_folds, seed=seed, val_fraction=val_fraction)
        assert alone.to_dict() == split.to_dict()
    with pytest.raises(ConfigError, match=f"--fold {n_folds}"):
        study_split(data, fold=n_folds, folds=n_folds, seed=seed, val_fraction=val_fraction)


def test_study_clock_estimates_the_rest_from_the_mean_training(monkeypatch):
    ticks = iter([100.0, 110.0, 130.0, 160.0])
    clock = study.StudyClock(3)
    clock._now = lambda: next(ticks)  # started at 100 s
    clock.started = clock._now()
    assert clock.done() == "study: 1 of 3 trainings done, 10 s; ETA 20 s"
    assert clock.done() == "study: 2 of 3 trainings done, 30 s; ETA 15 s"
    assert clock.done() == "study: 3 of 3 trainings done, 60 s; all trained"


def test_crossval_and_cross_site_print_a_study_eta_per_training(tmp_path, fake_training, capsys):
    data = make_data(n_subjects=48)
    cv.run_crossval(cv.CrossvalConfig(RECIPE, data, tmp_path / "cv", folds=3, seed=0, bootstrap=0))
    err = capsys.readouterr().err
    assert "study: 1 of 3 trainings done" in err and "ETA" in err and "study: 3 of 3 trainings done" in err
    xs.run_cross_site(xs.CrossSiteConfig(RECIPE, data, tmp_path / "xs", ("A", "B"), ("C",), bootstrap=0))
    assert "study: 2 of 2 trainings done" in capsys.readouterr().err


def test_cross_site_trains_on_a_twin_and_tests_on_the_data(tmp_path, fake_training, monkeypatch):
    import dataclasses

    data = make_data(n_subjects=24, sites=("A", "B"))  # in memory: named "synthetic"
    twin = dataclasses.replace(data, cache_dir=tmp_path / "twin", data_hash="hash-twin")
    fits, fake_fit = [], study.fit
    monkeypatch.setattr(study, "fit", lambda recipe, **kw: (fits.append(kw["cache_dir"]), fake_fit(recipe, **kw))[1])
    outcome = xs.run_cross_site(xs.CrossSiteConfig(RECIPE, data, tmp_path / "xs", ("A",), ("B",), bootstrap=0,
                                                   train_data=twin))
    assert fits == [tmp_path / "twin"] and outcome.ran == ["ppi:A>A", "ppi:A>B"]
    assert json.loads((tmp_path / "xs" / "study.json").read_text())["train_data_hash"] == "hash-twin"
    split = load_split(tmp_path / "xs" / "ppi" / "train-A" / "split.json")
    assert np.array_equal(split.test, xs.site_split(data, "A", RECIPE.eval.holdout_fraction,
                                                    RECIPE.data.val_fraction, 0).test)  # the data's own split
    preds = pd.read_csv(tmp_path / "xs" / "ppi" / "predictions.csv", dtype={"part": str})
    assert set(preds[preds["part"] == "A>B"]["index"]) == set(np.flatnonzero(data.sites == "B"))
    relabelled = dataclasses.replace(twin, labels=np.r_[data.labels[:3], 1 - data.labels[3], data.labels[4:]])
    with pytest.raises(DataError, match=f"{tmp_path / 'twin'}: row 4 has another label than in synthetic"):
        xs.run_cross_site(xs.CrossSiteConfig(RECIPE, data, tmp_path / "x2", ("A",), bootstrap=0,
                                             train_data=relabelled))
    shorter = dataclasses.replace(twin, labels=data.labels[:-1], subjects=data.subjects[:-1], sites=data.sites[:-1])
    with pytest.raises(DataError, match=f"{tmp_path / 'twin'}: {data.labels.size - 1} rows where synthetic"):
        xs.run_cross_site(xs.CrossSiteConfig(RECIPE, data, tmp_path / "x3", ("A",), bootstrap=0, train_data=shorter))
    assert not (tmp_path / "x2").exists()  # refused before anything was written
