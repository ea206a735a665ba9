# SPDX-License-Identifier: MIT
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ppi_cli.data.splits import Split, check_disjoint, holdout_split, load_split, save_split, subject_folds
from ppi_cli.errors import DataError


@st.composite
def manifests(draw):
    n_subjects = draw(st.integers(5, 30))
    rows_per = draw(st.lists(st.integers(1, 6), min_size=n_subjects, max_size=n_subjects))
    subject_label = draw(st.lists(st.integers(0, 1), min_size=n_subjects, max_size=n_subjects))
    subjects, labels = [], []
    for s, (k, y) in enumerate(zip(rows_per, subject_label, strict=True)):
        subjects += [f"S{s:03d}"] * k
        labels += [y] * k
    return np.array(labels), np.array(subjects)


@settings(max_examples=40, deadline=None)
@given(manifests(), st.integers(2, 5), st.integers(0, 1000))
def test_folds_never_share_a_subject_and_cover_every_row(manifest, n_folds, seed):
    labels, subjects = manifest
    folds = subject_folds(labels, subjects, n_folds, seed)
    assert len(folds) == n_folds
    assert np.array_equal(np.sort(np.concatenate(folds)), np.arange(len(labels)))
    seen: dict[str, int] = {}
    for k, fold in enumerate(folds):
        for s in set(subjects[fold]):
            assert seen.setdefault(s, k) == k, f"subject {s} in folds {seen[s]} and {k}"


def test_folds_are_seeded_and_stratified():
    labels = np.array([0, 1] * 50)
    subjects = np.array([f"S{i}" for i in range(100)])
    a = subject_folds(labels, subjects, 5, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, subject_folds(labels, subjects, 5, seed=1), strict=True))
    assert any(not np.array_equal(x, y) for x, y in zip(a, subject_folds(labels, subjects, 5, seed=2), strict=True))
    assert all(abs(labels[f].mean() - 0.5) < 0.15 for f in a)


def test_too_few_subjects():
    with pytest.raises(DataError, match="only 2 subjects for 5 folds"):
        subject_folds([0, 1, 0], ["a", "b", "a"], 5, 0)


def test_holdout_and_round_trip(tmp_path):
    labels = np.array([0, 1] * 20)
    subjects = np.array([f"S{i // 2}" for i in range(40)])
    rows = np.arange(40)
    keep, held = holdout_split(rows, labels, subjects, 0.25, seed=0)
    assert set(subjects[keep]).isdisjoint(subjects[held]) and len(keep) + len(held) == 40
    split = Split(keep, held, np.array([], dtype=np.int64), fold=0)
    loaded = load_split(save_split(tmp_path / "split.json", split, subjects))
    assert np.array_equal(loaded.train, keep) and np.array_equal(loaded.val, held) and loaded.fold == 0
    with pytest.raises(DataError, match="leaks"):
        check_disjoint(Split(np.array([0]), np.array([1]), np.array([], dtype=np.int64)), ["x", "x"])


def test_holdout_on_tiny_data_falls_back_to_a_random_subject_draw():
    # One positive subject: stratifying into folds is impossible, yet a subject-level hold-out is not.
    labels = np.array([0, 0, 0, 0, 1, 1])
    subjects = np.array(["a", "a", "b", "c", "d", "d"])
    keep, held = holdout_split(np.arange(6), labels, subjects, 0.5, seed=3)
    assert len(keep) + len(held) == 6 and len(held) > 0
    assert set(subjects[keep]).isdisjoint(subjects[held])
    keep, held = holdout_split(np.arange(6), labels, subjects, 0.0, seed=3)
    assert np.array_equal(keep, np.arange(6)) and held.size == 0


def test_folds_when_no_class_can_be_stratified():
    labels = np.array([0, 0, 0, 0, 1])
    subjects = np.array(["a", "b", "c", "d", "e"])
    folds = subject_folds(labels, subjects, 5, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(5)) and all(len(f) == 1 for f in folds)
