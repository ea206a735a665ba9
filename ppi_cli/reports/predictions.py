# SPDX-License-Identifier: MIT
"""Prediction files: what every evaluated fold or cross-site cell leaves behind, so that collecting
and comparing work from files alone, on another machine, long after training.

`predictions.csv` has one row per evaluated sample:

    part    which fold or cell produced it (`fold-0`, `A>B` = trained on A, tested on B)
    index   the sample's manifest row in the cache (the pairing key; never a patient ID)
    label   the true label (0/1 for binary tasks, the class number otherwise)
    score   the positive-class probability (binary); multi-class files have score_0 … score_{K-1}

A run folder holds either a collected `predictions.csv` or one per sub-folder (`fold-k/`, cells).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ppi_cli.errors import DataError
from ppi_cli.files import write_csv

__all__ = ["PREDICTIONS_FILE", "predictions_frame", "write_predictions", "read_predictions", "run_predictions",
           "score_columns"]

PREDICTIONS_FILE = "predictions.csv"
_REQUIRED = ("part", "index", "label")


def predictions_frame(part: str, indices: npt.ArrayLike, labels: npt.ArrayLike, scores: np.ndarray) -> Any:
    """A predictions DataFrame from arrays: `scores` is (N,) for binary tasks or (N, K) for K classes."""
    import pandas as pd

    idx = np.asarray(indices, dtype=np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).ravel()
    if s.shape[0] != idx.size or labels.size != idx.size:
        raise DataError(f"{idx.size} indices, {labels.size} labels and {s.shape[0]} scores do not match")
    frame = pd.DataFrame({"part": part, "index": idx, "label": labels})
    if s.ndim == 1 or (s.ndim == 2 and s.shape[1] == 1):
        frame["score"] = s.reshape(-1)
    else:
        for k in range(s.shape[1]):
            frame[f"score_{k}"] = s[:, k]
    return frame


def write_predictions(path: Path, part: str, indices: npt.ArrayLike, labels: npt.ArrayLike,
                      scores: np.ndarray) -> Path:
    """Write one fold's or cell's predictions atomically."""
    return write_csv(path, predictions_frame(part, indices, labels, scores), float_format="%.8g")


def score_columns(frame: Any) -> list[str]:
    """`["score"]` for binary predictions, `["score_0", …]` for multi-class ones."""
    if "score" in frame.columns:
        return ["score"]
    cols = sorted((c for c in frame.columns if c.startswith("score_")), key=lambda c: int(c.split("_")[1]))
    return cols


def read_predictions(path: Path) -> Any:
    """Read and check a predictions file.

    Raises:
        DataError: Missing file or columns, or the same (part, index) twice.
    """
    import pandas as pd

    if not path.is_file():
        raise DataError(f"{path}: no predictions file", hint="run the fold or cell first, or point at its run folder")
    try:
        frame = pd.read_csv(path, dtype={"part": str})
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: unreadable predictions ({exc})", hint="re-run the evaluation") from None
    missing = [c for c in _REQUIRED if c not in frame.columns]
    if missing or not score_columns(frame):
        raise DataError(f"{path}: missing column(s) {', '.join(missing or ['score'])}",
                        hint="the file must be written by ppi crossval / cross-site / train")
    duplicated = frame.duplicated(["part", "index"])
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        raise DataError(f"{path}: row {int(row['index'])} of part {row['part']} appears twice",
                        hint="re-run --collect on the run folder")
    return frame


def run_predictions(run: Path) -> Any:
    """All predictions of a run folder: its collected `predictions.csv`, else every sub-folder's, concatenated.

    Raises:
        DataError: The folder has no predictions at all.
    """
    import pandas as pd

    run = Path(run)
    if (run / PREDICTIONS_FILE).is_file():
        return read_predictions(run / PREDICTIONS_FILE)
    parts = sorted(run.glob(f"*/{PREDICTIONS_FILE}"))
    if not parts:
        raise DataError(f"{run}: no {PREDICTIONS_FILE} here or in its sub-folders",
                        hint="give a crossval, cross-site or train run folder whose folds have finished")
    frame = pd.concat([read_predictions(p) for p in parts], ignore_index=True)
    if frame.duplicated(["part", "index"]).any():
        raise DataError(f"{run}: two sub-folders hold predictions of the same part", hint="remove stale sub-folders")
    return frame
