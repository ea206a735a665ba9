# SPDX-License-Identifier: MIT
"""What `ppi predict` scores and with which models: inputs from files, folders and manifests, and the
checkpoints of `--model` (a file, or a study folder whose fold or site models form an ensemble).

Inputs:
- a prepared cache (its folder, or its `manifest.csv` beside `cache.json`): every row, read through the
  dataset class the studies use, so the scores are the ones `crossval` / `cross-site` compute;
- a manifest CSV with a `path` column (the GA manifest is one): every row, the path relative to the
  manifest, the row's `site` (when the column exists) choosing the site config;
- a file: one input; a folder: one input where it is one scan (a DICOM series or a folder of B-scan
  images for a volume model), else every scan file beneath it.

The `path` written for an input is relative to its manifest or to the folder given, so that
`ppi evaluate` can pair it with a labels file written the same way; a manifest path that leaves the
manifest's folder is written by its base name (`files.shareable_path`: export folders carry patient
names), and it never holds a subject id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ppi_cli.data.cache import INFO_FILE, cache_kind
from ppi_cli.data.dicom.headers import is_dicom_file
from ppi_cli.data.dicom.images import read_dicom_header
from ppi_cli.data.explain_input import VOLUME_SUFFIXES
from ppi_cli.errors import DataError, ModelError
from ppi_cli.files import IMAGE_SUFFIXES, shareable_path

__all__ = ["ScanInput", "CacheInput", "collect_inputs", "study_checkpoints", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "best.pt"  # the model of a run folder (the kept epoch)
_SCAN_SUFFIXES = IMAGE_SUFFIXES + VOLUME_SUFFIXES + (".dcm", ".mha", ".mhd", ".nrrd")


@dataclass(frozen=True)
class ScanInput:
    """One scan file or folder to score, the `path` it is written as, and its site (None: unknown)."""

    source: Path
    path: str
    site: str | None = None
    manifest: Path | None = None  # the manifest it came from (its folder holds the site configs)
    root: Path | None = None  # the folder `path` is relative to (the manifest's, or the folder given)


@dataclass(frozen=True)
class CacheInput:
    """A prepared cache: every manifest row is scored through the cache's dataset class."""

    cache_dir: Path
    kind: str


def study_checkpoints(model: Path) -> list[Path]:
    """The checkpoints `--model` names: a file, a run folder's `best.pt`, or every `fold-*/best.pt` of a study.

    Raises:
        ModelError: A folder holding none of these.
    """
    if not model.is_dir():
        return [model]
    if (model / CHECKPOINT_NAME).is_file():
        return [model / CHECKPOINT_NAME]
    folds = sorted(model.glob(f"fold-*/{CHECKPOINT_NAME}"), key=lambda p: p.parent.name)
    if folds:
        return folds
    raise ModelError(f"{model}: no {CHECKPOINT_NAME} here nor in fold-*/ sub-folders",
                     hint="pass --model with a checkpoint, a training run folder, a crossval study folder or a "
                          "cross-site train-X folder")


def collect_inputs(paths: tuple[Path, ...], volume_model: bool) -> list[ScanInput | CacheInput]:
    """Expand the PATH arguments of `ppi predict` into scans and caches, in the order given.

    Raises:
        DataError: A missing path, a manifest without a `path` column, a folder without scans, or two
            inputs written as the same path.
    """
    found: list[ScanInput | CacheInput] = []
    for path in paths:
        if not path.exists():
            raise DataError(f"{path}: no such file or folder", hint="check the PATH arguments")
        if path.is_dir() and (path / INFO_FILE).is_file():
            found.append(_cache(path))
        elif path.is_file() and path.suffix.lower() == ".csv":
            found.extend([_cache(path.parent)] if (path.parent / INFO_FILE).is_file() else _manifest(path))
        elif path.is_file():
            found.append(ScanInput(path, path.name, root=path.parent))
        else:
            scans = _folder(path, path, volume_model)
            if not scans:
                raise DataError(f"{path}: no scan files in this folder",
                                hint="give scan files (DICOM, NIfTI, .mat, .npy, PNG/TIFF) or folders of them")
            found.extend(scans)
    seen: set[str] = set()
    for item in found:
        if isinstance(item, ScanInput):
            if item.path in seen:
                raise DataError(f"two inputs would be written as {item.path}",
                                hint="score them in separate runs, or list them in one manifest")
            seen.add(item.path)
    return found


def _cache(folder: Path) -> CacheInput:
    kind = cache_kind(folder)
    if kind is None:
        raise DataError(f"{folder}: not a readable prepared cache ({INFO_FILE})",
                        hint="rebuild it with `ppi prepare ...`, or give the raw manifest")
    return CacheInput(folder, kind)


def _manifest(path: Path) -> list[ScanInput]:
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})",
                        hint="a manifest has one row per scan and a `path` column") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if "path" not in frame.columns:
        raise DataError(f"{path}: no `path` column", hint="a manifest names each scan in a `path` column, relative "
                        "to the manifest (as the GA manifest does)")
    scans = []
    for number, row in enumerate(frame.to_dict("records"), start=2):
        rel = str(row["path"]).strip()
        if not rel:
            raise DataError(f"{path}:{number}: column 'path' is empty", hint="name one scan per row")
        site = str(row.get("site", "")).strip() or None
        source = path.parent / rel
        scans.append(ScanInput(source, shareable_path(source, path.parent), site, path, path.parent))
    return scans


def _is_scan_file(path: Path) -> bool:
    return path.name.lower().endswith(_SCAN_SUFFIXES) or is_dicom_file(path)


def _one_volume(files: list[Path]) -> bool:
    """A folder a volume model reads as one scan: B-scan images, or a series of single-frame DICOM files."""
    if any(p.name.lower().endswith(IMAGE_SUFFIXES) for p in files):
        return True
    dicom = [p for p in files if p.suffix.lower() == ".dcm" or is_dicom_file(p)]
    return len(dicom) > 1 and all(int(read_dicom_header(p).get("NumberOfFrames", 1) or 1) == 1 for p in dicom)


def _folder(folder: Path, root: Path, volume_model: bool) -> list[ScanInput]:
    """The scans of a folder: itself when a volume model reads it as one, else its scan files, recursively.

    A 2D model scores every image file (each DICOM file of a series is its own image).
    """
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    files = [p for p in entries if p.is_file()]
    if volume_model and _one_volume(files):
        return [ScanInput(folder, folder.name if folder == root else folder.relative_to(root).as_posix(),
                          root=root if folder != root else root.parent)]
    scans = [ScanInput(p, p.relative_to(root).as_posix(), root=root) for p in files if _is_scan_file(p)]
    for sub in entries:
        if sub.is_dir():
            scans.extend(_folder(sub, root, volume_model))
    return scans
