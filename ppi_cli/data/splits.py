# SPDX-License-Identifier: MIT
"""Splits as data: subject-grouped, label-stratified, seeded, and saved with every run.

No subject (patient or eye) ever appears on both sides of a split. Splits are index arrays into
the cache manifest's rows, written to `split.json` in the run folder so results can be audited.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from sklearn.model_selection import StratifiedGroupKFold

from ppi_cli.console import log
from ppi_cli.errors import ConfigError, DataError
from ppi_cli.files import write_json

__all__ = ["Split", "subject_folds", "holdout_split", "save_split", "load_split", "check_disjoint"]


@dataclass(frozen=True)
class Split:
    """One train/validation/test partition of manifest rows (sorted index arrays)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    fold: int | None = None

    def to_dict(self) -> dict:
        """Plain data for `split.json`."""
        return {"fold": self.fold, "train": self.train.tolist(), "val": self.val.tolist(), "test": self.test.tolist()}


def subject_folds(labels: npt.ArrayLike, subjects: npt.ArrayLike, n_folds: int, seed: int) -> list[np.ndarray]:
    """Row indices of each test fold: stratified by label, grouped by subject, seeded.

    Raises:
        DataError: Fewer subjects than folds, so some fold would be empty.
    """
    labels = np.asarray(labels)
    subjects = np.asarray(subjects).astype(str)
    n_subjects = len(np.unique(subjects))
    if n_subjects < n_folds:
        raise DataError(f"only {n_subjects} subjects for {n_folds} folds", hint=f"use --folds {max(2, n_subjects)}")
    rows = np.arange(len(labels))
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a rare class: we stratify as well as it allows
            return [np.sort(test) for _, test in splitter.split(rows, labels, groups=subjects)]
    except ValueError:  # scikit-learn: every class has fewer members than folds
        pass
    log(f"too few samples per class to stratify {n_folds} folds; subjects dealt to folds at random")
    order = np.random.default_rng(seed).permutation(np.unique(subjects))
    fold_of = {s: i % n_folds for i, s in enumerate(order)}
    assigned = np.array([fold_of[s] for s in subjects])
    return [rows[assigned == k] for k in range(n_folds)]


def holdout_split(rows: np.ndarray, labels: npt.ArrayLike, subjects: npt.ArrayLike, fraction: float,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split `rows` into (kept, held_out) with about `fraction` of the subjects held out.

    `labels` and `subjects` are indexed by manifest row (full length), `rows` selects the candidates.
    The hold-out is stratified by label when every class has enough subjects for it; on tiny data
    the held-out subjects are drawn at random instead (logged). A subject is never split, and a
    fraction of 0 holds nothing out.
    """
    if not 0 <= fraction < 1:
        raise ConfigError(f"hold-out fraction {fraction} must be in [0, 1)")
    rows = np.asarray(rows)
    if fraction == 0:
        return np.sort(rows), np.array([], dtype=np.int64)
    sub_labels = np.asarray(labels)[rows]
    sub_subjects = np.asarray(subjects).astype(str)[rows]
    unique_subjects = np.unique(sub_subjects)
    if unique_subjects.size < 2:
        raise DataError(f"only {unique_subjects.size} subject(s): cannot hold any out",
                        hint="add subjects, or set the validation fraction to 0")
    n_splits = max(2, min(int(round(1 / fraction)), unique_subjects.size))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    try:
        keep, held = next(splitter.split(rows, sub_labels, groups=sub_subjects))
        return np.sort(rows[keep]), np.sort(rows[held])
    except ValueError:  # scikit-learn: a class has fewer members than the splitter's folds
        pass
    rng = np.random.default_rng(seed)
    held_subjects = rng.permutation(unique_subjects)[: max(1, int(round(fraction * unique_subjects.size)))]
    held_mask = np.isin(sub_subjects, held_subjects)
    log(f"too few samples per class to stratify a hold-out of {rows.size} rows; held out subjects at random")
    return np.sort(rows[~held_mask]), np.sort(rows[held_mask])


def save_split(path: Path, split: Split, subjects: npt.ArrayLike) -> Path:
    """Write a split as JSON (`split.json`), after checking that no subject crosses sides.

    `subjects` holds the subject of every manifest row. The one writer of split files.

    Raises:
        DataError: A subject on two sides of the split.
    """
    check_disjoint(split, subjects)
    return write_json(path, split.to_dict())


def load_split(path: Path) -> Split:
    """Read a split written by `save_split`."""
    try:
        raw = json.loads(Path(path).read_text())
        return Split(*(np.asarray(raw[k], dtype=np.int64) for k in ("train", "val", "test")), fold=raw.get("fold"))
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: unreadable split file ({exc})", hint="re-run the study to write it again") from None


def check_disjoint(split: Split, subjects: npt.ArrayLike) -> None:
    """Raise if a subject appears in two parts of a split (a leak would inflate every metric)."""
    subjects = np.asarray(subjects).astype(str)
    parts = {name: set(subjects[getattr(split, name)]) for name in ("train", "val", "test")}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        shared = parts[a] & parts[b]
        if shared:
            raise DataError(f"split leaks {len(shared)} subject(s) between {a} and {b}")
