# SPDX-License-Identifier: MIT
"""The GA labels manifest: one CSV row per OCT volume, checked before anything is read.

Required columns: `path, subject_id, eye, site, label`; optional: `visit`, `mask_path`, `sample_id`;
any other column is kept and copied into the cache manifest. Paths are relative to the manifest and
must stay inside its folder (no `../` out of it, no absolute path elsewhere) unless
`allow_outside_root` (`--allow-outside-root`).
Every problem is one error naming the manifest line and the column (docs/prepare-ga.md#manifest).
Subject IDs never appear in a message.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from ppi_cli.data.parts import read_manifest_csv
from ppi_cli.errors import DataError

__all__ = ["ManifestRow", "read_ga_manifest", "REQUIRED_COLUMNS", "OPTIONAL_COLUMNS", "normalise_eye"]

REQUIRED_COLUMNS = ("path", "subject_id", "eye", "site", "label")
OPTIONAL_COLUMNS = ("visit", "mask_path", "sample_id")
_EYES = {"od": "OD", "r": "OD", "re": "OD", "right": "OD", "os": "OS", "l": "OS", "le": "OS", "left": "OS"}
_HINT = "see docs/prepare-ga.md#manifest"


@dataclass(frozen=True)
class ManifestRow:
    """One validated manifest row.

    Attributes:
        line: The CSV line number (the header is line 1), for messages.
        sample_id: From the `sample_id` column, else `<site>-<row number>`.
        path: The volume, resolved against the manifest's folder.
        rel_path: The path as written in the manifest.
        mask_path / rel_mask: The optional lesion mask volume, likewise (None / "" when absent).
        extra: Every other column, as text.
    """

    line: int
    sample_id: str
    path: Path
    rel_path: str
    subject_id: str
    eye: str
    site: str
    label: int
    visit: str = ""
    mask_path: Path | None = None
    rel_mask: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def read_ga_manifest(path: Path, sites: Collection[str], *,
                     allow_outside_root: bool = False) -> tuple[list[ManifestRow], list[str]]:
    """Read and validate a GA manifest.

    Args:
        path: The manifest CSV.
        sites: Site ids that have a config.
        allow_outside_root: Accept volume and mask paths outside the manifest's folder.

    Returns:
        The rows in file order, and the names of the extra columns (kept in the cache manifest).

    Raises:
        DataError: Unreadable CSV, missing column, bad label/eye/site, missing file, a path outside the
            manifest's folder, duplicate volume or id.
    """
    frame, extra_columns = read_manifest_csv(path, REQUIRED_COLUMNS, OPTIONAL_COLUMNS, noun="manifest",
                                             example="labels.csv", row_hint="add one row per OCT volume", hint=_HINT)
    root = path.parent
    rows: list[ManifestRow] = []
    seen_paths: dict[str, int] = {}
    seen_ids: dict[str, int] = {}
    for number, record in enumerate(frame.to_dict("records"), start=1):
        line = number + 1
        where = f"{path}:{line}"
        values = {k: str(v).strip() for k, v in record.items()}
        for column in ("path", "subject_id", "eye", "site", "label"):
            if not values[column]:
                raise DataError(f"{where}: column '{column}' is empty", hint=_HINT)
        label = _parse_label(values["label"], where)
        eye = normalise_eye(values["eye"])
        if eye is None:
            raise DataError(f"{where}: column 'eye': {values['eye']!r} is not an eye",
                            hint="use OD (right) or OS (left); R/L and right/left are accepted too")
        site = values["site"]
        if site not in sites:
            raise DataError(f"{where}: column 'site': no site config for {site!r} (known: {', '.join(sorted(sites))})",
                            hint=f"add {site}.yaml to the --sites folder, or fix the site")
        volume = _existing(root, values["path"], where, "path", allow_outside_root)
        key = os.path.realpath(volume)
        if key in seen_paths:
            raise DataError(f"{where}: column 'path': the same volume as line {seen_paths[key]} ({values['path']})",
                            hint="list each volume once; a second visit of an eye is its own file")
        seen_paths[key] = line
        mask = (_existing(root, values["mask_path"], where, "mask_path", allow_outside_root)
                if values.get("mask_path") else None)
        sample_id = values.get("sample_id") or f"{site}-{number:04d}"
        if sample_id in seen_ids:
            raise DataError(f"{where}: column 'sample_id': {sample_id!r} is used on line {seen_ids[sample_id]} too",
                            hint="sample ids must be unique")
        seen_ids[sample_id] = line
        rows.append(ManifestRow(
            line=line, sample_id=sample_id, path=volume, rel_path=values["path"], subject_id=values["subject_id"],
            eye=eye, site=site, label=label, visit=values.get("visit", ""), mask_path=mask,
            rel_mask=values.get("mask_path", ""), extra={c: values[c] for c in extra_columns},
        ))
    return rows, extra_columns


def normalise_eye(value: str) -> str | None:
    """`OD`/`OS` from the usual spellings (R, L, right, left, RE, LE; any case), else None."""
    return _EYES.get(value.strip().lower())


def _parse_label(text: str, where: str) -> int:
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if number not in (0.0, 1.0):
        raise DataError(f"{where}: column 'label': {text!r} is not 0 or 1",
                        hint="GA present = 1, absent = 0")
    return int(number)


def _existing(root: Path, relative: str, where: str, column: str, allow_outside_root: bool = False) -> Path:
    candidate = Path(relative).expanduser()
    resolved = candidate if candidate.is_absolute() else root / candidate
    # Lexically (`..` and absolute paths), not through links: a link inside the folder is the user's own layout.
    inside = os.path.normpath(os.path.abspath(resolved)).startswith(os.path.normpath(os.path.abspath(root)) + os.sep)
    if not inside and not allow_outside_root:
        raise DataError(f"{where}: column '{column}': {relative} lies outside the manifest's folder",
                        hint="move the file under the manifest's folder and give its path relative to it, or pass "
                             "--allow-outside-root if the path is meant")
    if not resolved.exists():
        raise DataError(f"{where}: column '{column}': no such file or folder: {relative}",
                        hint="paths are relative to the manifest's folder")
    return resolved
