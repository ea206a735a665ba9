# SPDX-License-Identifier: MIT
"""The cohort table of `ppi prepare table`: one CSV row per image, every row checked on its own.

Required columns: `path, subject_id, label`; optional: `site`, `mask_path`, `split`, `sample_id`;
any other column is kept and copied into the cache manifest. Paths are relative to the CSV's folder
(absolute paths are taken as they are). A bad row (empty subject, a label that is not 0 or 1, a
missing file, the same image twice, a subject given two different `split` values) does not stop the
run: it is returned with its reason and lands in `errors.csv`. Only a table that cannot be read at
all, or that lacks a required column, is an error. Subject IDs never appear in a reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ppi_cli.data.parts import read_manifest_csv

__all__ = ["TableRow", "BadRow", "read_table_manifest", "REQUIRED_COLUMNS", "OPTIONAL_COLUMNS"]

REQUIRED_COLUMNS = ("path", "subject_id", "label")
OPTIONAL_COLUMNS = ("site", "mask_path", "split", "sample_id")
_HINT = "see docs/prepare-table.md#the-cohort-table"


@dataclass(frozen=True)
class TableRow:
    """One usable row: `line` is the CSV line (the header is line 1); paths are resolved against the CSV."""

    line: int
    sample_id: str
    path: Path
    rel_path: str
    subject_id: str
    label: int
    site: str = "na"
    split: str = ""
    mask_path: Path | None = None
    rel_mask: str = ""
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BadRow:
    """A row left out, with why (an `errors.csv` line)."""

    line: int
    path: str
    site: str
    reason: str


def read_table_manifest(path: Path) -> tuple[list[TableRow], list[BadRow], list[str]]:
    """Read a cohort table: the usable rows, the bad rows with their reasons, and the extra columns.

    Raises:
        DataError: No such file, not a CSV, a required column missing, or no rows at all.
    """
    frame, extra_columns = read_manifest_csv(path, REQUIRED_COLUMNS, OPTIONAL_COLUMNS, noun="cohort table",
                                             example="cohort.csv", row_hint="add one row per image", hint=_HINT)
    rows: list[TableRow] = []
    bad: list[BadRow] = []
    seen_paths: dict[str, int] = {}
    seen_ids: set[str] = set()
    for number, record in enumerate(frame.to_dict("records"), start=1):
        values = {k: str(v).strip() for k, v in record.items()}
        row_or_reason = _row(path.parent, number, values, extra_columns, seen_paths, seen_ids)
        if isinstance(row_or_reason, str):
            bad.append(BadRow(number + 1, values["path"], values.get("site") or "na", row_or_reason))
        else:
            rows.append(row_or_reason)
    rows, split_bad = _one_split_per_subject(rows)
    return rows, sorted(bad + split_bad, key=lambda b: b.line), extra_columns


def _row(root: Path, number: int, values: dict[str, str], extra_columns: list[str], seen_paths: dict[str, int],
         seen_ids: set[str]) -> TableRow | str:
    """The row, or the reason it is bad."""
    line = number + 1
    for column in REQUIRED_COLUMNS:
        if not values[column]:
            return f"column '{column}' is empty"
    label = _label(values["label"])
    if label is None:
        return f"column 'label': {values['label']!r} is not 0 or 1"
    image = _resolve(root, values["path"])
    if not image.exists():
        return "no such file or folder (paths are relative to the table's folder)"
    key = os.path.realpath(image)
    if key in seen_paths:
        return f"the same image as line {seen_paths[key]}"
    mask = _resolve(root, values["mask_path"]) if values.get("mask_path") else None
    if mask is not None and not mask.exists():
        return f"column 'mask_path': no such file or folder: {values['mask_path']}"
    sample_id = values.get("sample_id") or f"s{number:05d}"
    if sample_id in seen_ids:
        return f"column 'sample_id': {sample_id!r} is used on an earlier line"
    seen_paths[key] = line
    seen_ids.add(sample_id)
    return TableRow(line=line, sample_id=sample_id, path=image, rel_path=values["path"],
                    subject_id=values["subject_id"], label=label, site=values.get("site") or "na",
                    split=values.get("split", "").lower(), mask_path=mask, rel_mask=values.get("mask_path", ""),
                    extra={c: values[c] for c in extra_columns})


def _one_split_per_subject(rows: list[TableRow]) -> tuple[list[TableRow], list[BadRow]]:
    """Rows whose subject the `split` column puts on two sides are bad: that would leak the subject."""
    splits: dict[str, set[str]] = {}
    for row in rows:
        if row.split:
            splits.setdefault(row.subject_id, set()).add(row.split)
    leaking = {s for s, names in splits.items() if len(names) > 1}
    if not leaking:
        return rows, []
    bad = [BadRow(r.line, r.rel_path, r.site, f"column 'split': this row's subject is in splits "
                  f"{', '.join(sorted(splits[r.subject_id]))}; a subject belongs to one split") for r in rows
           if r.subject_id in leaking]
    return [r for r in rows if r.subject_id not in leaking], bad


def _label(text: str) -> int | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number in (0.0, 1.0) else None


def _resolve(root: Path, relative: str) -> Path:
    candidate = Path(relative).expanduser()
    return candidate if candidate.is_absolute() else root / candidate
