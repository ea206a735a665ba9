# SPDX-License-Identifier: MIT
"""`ppi prepare folder`: an ImageFolder-layout photo collection (CUB, CIFAR-10 exported as images) into a cache.

Two layouts are read, decided by the folder names under the root:

    ROOT/<class>/<image>                  every image, no predefined split (split column "all")
    ROOT/{train,val,test}/<class>/<image> the split the dataset ships with (CUB, CIFAR-10)

Classes are the sorted class-folder names over all splits. Every image is converted to RGB (or grey
with `channels=1`), its shorter side resized to `size` and centre-cropped to `size × size`, and stored
in `images.npy` (N, C, size, size) uint8. With `size=None` a collection whose images all share one
square size keeps it (CIFAR-10: 32), any other is brought to 256 (room for a 224 training crop).
Each image is its own subject unless `subject_regex` (the first group, or the group named `subject`, of
a file's name) or a `subjects` CSV (columns `file`, `subject_id`; `file` is the path under the root or,
when unique, the file name) says which images share one: splits keep a subject's images together.
Unreadable images go to `errors.csv` and are skipped (`strict` stops instead). An interrupted run
resumes from `progress.json`. The new files are written into `.assembled/` and moved in together,
then `cache.json` is written last: until then a previous cache in `out` stays valid and usable.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli.console import log, progress, warn
from ppi_cli.data.cache import MANIFEST_FILE, write_cache_info
from ppi_cli.data.limits import open_image
from ppi_cli.errors import ConfigError, DataError
from ppi_cli.files import (
    IMAGE_SUFFIXES,
    output_lock,
    remove_stale_tmp,
    reserve_space,
    sha256_bytes,
    shareable_text,
    write_csv,
    write_json,
    write_npy_rows,
)

__all__ = ["FolderPrepareConfig", "PreparedFolder", "prepare_folder", "scan_folder", "folder_subjects", "SPLITS"]

SPLITS = ("train", "val", "test")
DEFAULT_RESIZE = 256  # mixed-size collections: room for the usual 224 training crop (our decision)
_PARTIAL = "images.partial.npy"
_PROGRESS = "progress.json"
_ASSEMBLED = ".assembled"  # the new cache's files, complete before any is moved in
_FLUSH_EVERY = 512  # images between progress records: what an interruption can cost


@dataclass(frozen=True)
class FolderPrepareConfig:
    """Options of `ppi prepare folder`, one-to-one with its flags."""

    root: Path  # the ImageFolder root
    out: Path  # the cache folder to write
    size: int | None = None  # side of the stored square images; None: native if uniform and square, else 256
    channels: int = 3  # 3 stores RGB, 1 stores grey
    strict: bool = False  # stop at the first unreadable image instead of logging it to errors.csv
    subject_regex: str | None = None  # the subject id from each file name: the first group, or the group `subject`
    subjects: Path | None = None  # CSV with columns file, subject_id (file: path under the root, or file name)


@dataclass(frozen=True)
class PreparedFolder:
    """What `prepare_folder` produced."""

    cache: Path
    n_images: int
    classes: list[str]
    size: int
    n_errors: int
    written: list[Path]


def scan_folder(root: Path) -> tuple[list[tuple[str, str, Path]], list[str]]:
    """The images under an ImageFolder root as `(split, class, path)` triples, and the sorted class names.

    Raises:
        DataError: The root is missing, or holds no class folders with images.
    """
    if not root.is_dir():
        raise DataError(f"{root}: no such folder", hint="point --root at the folder holding one sub-folder per class")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    split_dirs = [p for p in subdirs if p.name.lower() in SPLITS]
    tops = [(p.name.lower(), p) for p in split_dirs] if split_dirs else [("all", root)]
    items: list[tuple[str, str, Path]] = []
    for split, top in tops:
        for class_dir in sorted(p for p in top.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for path in sorted(class_dir.rglob("*")):
                if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                    items.append((split, class_dir.name, path))
    classes = sorted({c for _, c, _ in items})
    if not items:
        raise DataError(f"{root}: no images in class sub-folders (looked for {', '.join(sorted(IMAGE_SUFFIXES))})",
                        hint="lay the data out as ROOT/<class>/<image> or ROOT/{train,val,test}/<class>/<image>")
    if len(classes) < 2:
        raise DataError(f"{root}: only one class folder ('{classes[0]}'); a classifier needs two or more",
                        hint="put each class's images in its own sub-folder")
    return items, classes


def folder_subjects(items: list[tuple[str, str, Path]], root: Path, subject_regex: str | None = None,
                    subjects: Path | None = None) -> list[str]:
    """The subject of every image: from `subject_regex`, from a `subjects` CSV, else the image itself.

    Raises:
        ConfigError: Both or a bad regex given; an image the regex does not match or the CSV does not list
            (the first named, with the count); a subject in two of the shipped train/val/test folders.
    """
    rel = [path.relative_to(root).as_posix() for _, _, path in items]
    if subject_regex is not None and subjects is not None:
        raise ConfigError("--subject-regex and --subjects both given", hint="give one of them")
    if subject_regex is not None:
        found = _subjects_by_regex(rel, [path.name for _, _, path in items], subject_regex)
    elif subjects is not None:
        found = _subjects_from_csv(rel, subjects)
    else:  # each photo is its own subject: natural-image collections have no patients to group by
        return [Path(r).with_suffix("").as_posix() for r in rel]
    sides: dict[str, set[str]] = {}
    for (split, _, _), subject in zip(items, found, strict=True):
        sides.setdefault(subject, set()).add(split)
    leaking = sorted(s for s, names in sides.items() if len(names) > 1)
    if leaking:  # the value itself is not quoted: subject ids may be patient identifiers
        raise ConfigError(f"{len(leaking)} subject(s) have images in more than one of the folders "
                          f"{', '.join(sorted({n for s in leaking for n in sides[s]}))}: a split would leak them",
                          hint="move each subject's images into one split folder, or check the grouping")
    return found


def _subjects_by_regex(rel: list[str], names: list[str], pattern: str) -> list[str]:
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"--subject-regex {pattern!r}: not a regular expression ({exc})",
                          hint=r"e.g. --subject-regex '^(P\d+)_'") from None
    if regex.groups == 0:
        raise ConfigError(f"--subject-regex {pattern!r}: no group to take the subject id from",
                          hint=r"put the subject part in parentheses, e.g. '^(P\d+)_' or '(?P<subject>P\d+)'")
    group: int | str = "subject" if "subject" in regex.groupindex else 1
    found: list[str] = []
    missed: list[str] = []
    for path, name in zip(rel, names, strict=True):
        match = regex.search(name)
        subject = match.group(group) if match else None
        if not subject:
            missed.append(path)
        found.append(subject or "")
    if missed:
        raise ConfigError(f"--subject-regex {pattern!r} gives no subject for {len(missed)} of {len(rel)} file names "
                          f"(first: {missed[0]})", hint="fix the regex, or list subjects with --subjects CSV")
    return found


def _subjects_from_csv(rel: list[str], path: Path) -> list[str]:
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--subjects {path}: not a readable CSV ({str(exc).splitlines()[0]})",
                          hint="columns: file, subject_id") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if not {"file", "subject_id"} <= set(frame.columns):
        raise ConfigError(f"--subjects {path}: needs the columns file and subject_id", hint="columns: file, subject_id")
    table = {str(f).strip(): str(s).strip() for f, s in zip(frame["file"], frame["subject_id"], strict=True)}
    names = [Path(r).name for r in rel]
    unique_names = {n for n in names if names.count(n) == 1}
    found = [table.get(r) or (table.get(n, "") if n in unique_names else "") for r, n in zip(rel, names, strict=True)]
    missed = [r for r, subject in zip(rel, found, strict=True) if not subject]
    if missed:
        raise ConfigError(f"--subjects {path}: no subject_id for {len(missed)} of {len(rel)} images (first: "
                          f"{missed[0]})", hint="list every image under its path below --root (or its file name)")
    return found


def _load_image(path: Path, size: int, channels: int) -> np.ndarray:
    from PIL import Image, ImageOps

    with open_image(path) as image:  # the size is checked from the header before decoding
        image = ImageOps.exif_transpose(image).convert("RGB" if channels == 3 else "L")
        image = ImageOps.fit(image, (size, size), method=Image.Resampling.BILINEAR)  # shorter side, centre crop
        array = np.asarray(image, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)  # (C, size, size)


def _choose_size(items: list[tuple[str, str, Path]], size: int | None) -> int:
    if size is not None:
        if size < 8:
            raise ConfigError(f"--size {size}: images must be at least 8 pixels", hint="--size 224")
        return size
    shapes = set()
    for _, _, path in items:
        try:
            with open_image(path) as image:  # reads the header only
                shapes.add(image.size)
        except (OSError, DataError):
            continue  # reported when the image is decoded
        if len(shapes) > 1:
            break
    if len(shapes) == 1 and (shape := shapes.pop())[0] == shape[1]:
        return int(shape[0])
    return DEFAULT_RESIZE


def prepare_folder(config: FolderPrepareConfig) -> PreparedFolder:
    """Build (or resume) a `folder` cache from an ImageFolder tree.

    Example:
        >>> prepare_folder(FolderPrepareConfig(Path("/data/cifar10"), Path("cache/cifar10")))
    """
    if config.channels not in (1, 3):
        raise ConfigError(f"--channels {config.channels}: only 1 (grey) or 3 (RGB)", hint="--channels 3")
    if os.path.realpath(config.out) == os.path.realpath(config.root):  # the cache would land among the images
        raise ConfigError("--out is the --root folder: the cache would be written among its images; nothing was "
                          "written", hint="choose another --out, e.g. cache/<name>")
    items, classes = scan_folder(config.root)
    subjects = folder_subjects(items, config.root, config.subject_regex, config.subjects)
    size = _choose_size(items, config.size)
    params = {"root": str(config.root.resolve()), "size": size, "channels": config.channels,
              "n_files": len(items), "format": "folder-v1"}
    if config.subject_regex is not None or config.subjects is not None:  # the grouping is part of the cache
        params["subjects"] = sha256_bytes("\n".join(subjects).encode("utf-8"))
    with output_lock(config.out):
        if removed := remove_stale_tmp(config.out):
            log(f"removed {removed} temporary file(s) left by an interrupted run")
        return _prepare_locked(config, items, subjects, classes, size, params)


def _prepare_locked(config: FolderPrepareConfig, items: list, subjects: list[str], classes: list[str], size: int,
                    params: dict[str, Any]) -> PreparedFolder:
    import pandas as pd

    out = config.out
    images, start, errors = _open_partial(out, params, (len(items), config.channels, size, size))
    class_index = {name: k for k, name in enumerate(classes)}
    ok = np.zeros(len(items), dtype=bool)
    ok[:start] = True
    ok[list(errors)] = False  # images that failed before an interruption stay out
    for i in progress(range(start, len(items)), "images", total=len(items) - start):
        split, class_name, path = items[i]
        try:
            images[i] = _load_image(path, size, config.channels)
            ok[i] = True
        except DataError as exc:  # larger than the size limit
            if config.strict:
                raise
            errors[i] = exc.one_line()
        except (OSError, ValueError, SyntaxError) as exc:  # PIL's ways of saying "not an image I can read"
            if config.strict:
                raise DataError(f"{path}: unreadable image ({exc})", hint="remove it, or drop --strict") from None
            errors[i] = shareable_text(f"{type(exc).__name__}: {exc}", [path], config.root)  # errors.csv: no full path
        if (i + 1) % _FLUSH_EVERY == 0:
            images.flush()
            write_json(out / _PROGRESS, {"params": params, "done": i + 1, "errors": errors})
    images.flush()
    keep = np.flatnonzero(ok)
    if keep.size == 0:
        first = next(iter(errors.items()), (0, "?"))
        raise DataError(f"{config.root}: none of the {len(items)} images could be read (first: "
                        f"{items[first[0]][2].name}: {first[1]})", hint="check that these are image files")
    chunks = np.array_split(np.arange(keep.size), max(1, keep.size // 1024))  # the array may not fit in memory
    rel = [items[i][2].relative_to(config.root) for i in keep]
    manifest = pd.DataFrame({
        "sample_id": [p.with_suffix("").as_posix() for p in rel],
        "subject_id": [subjects[i] for i in keep],  # folder_subjects: the image itself unless grouped
        "site": "na", "label": [class_index[items[i][1]] for i in keep], "class_name": [items[i][1] for i in keep],
        "split": [items[i][0] for i in keep], "source": [p.as_posix() for p in rel],
    })
    files = ["images.npy", MANIFEST_FILE] + (["errors.csv"] if errors else [])
    # Written beside the old cache and moved in together: a full disk or a kill before the end leaves the
    # previous cache, with its cache.json, as it was (the same as prepare ga and prepare lidc).
    staged = out / _ASSEMBLED
    staged.mkdir(parents=True, exist_ok=True)
    try:
        write_npy_rows(staged / "images.npy", (keep.size, config.channels, size, size), np.uint8,
                       (images[keep[chunk]] for chunk in chunks))
        write_csv(staged / MANIFEST_FILE, manifest)
        if errors:
            error_frame = pd.DataFrame({"source": [items[i][2].relative_to(config.root).as_posix() for i in errors],
                                        "reason": list(errors.values())})
            write_csv(staged / "errors.csv", error_frame)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    del images
    (out / "cache.json").unlink(missing_ok=True)  # from here until cache.json the folder reads as incomplete
    (out / "errors.csv").unlink(missing_ok=True)  # an old run's errors are not this run's
    for name in files:
        os.replace(staged / name, out / name)
    staged.rmdir()
    written = [out / name for name in files]
    if errors:
        warn(f"{len(errors)} unreadable image(s) skipped; see {out / 'errors.csv'}")
    splits = sorted(set(manifest["split"]))
    write_cache_info(out, "folder", params, keep.size, files,
                     extra={"classes": classes, "size": size, "channels": config.channels, "splits": splits})
    (out / _PARTIAL).unlink(missing_ok=True)
    (out / _PROGRESS).unlink(missing_ok=True)
    log(f"{keep.size} images of {len(classes)} classes at {size}×{size} (splits: {', '.join(splits)})")
    return PreparedFolder(out, int(keep.size), classes, size, len(errors), [*written, out / "cache.json"])


def _open_partial(out: Path, params: dict[str, Any], shape: tuple[int, ...]) -> tuple[np.ndarray, int, dict]:
    """The work array and how far a previous run got; a run with other parameters starts over."""
    partial, record = out / _PARTIAL, out / _PROGRESS
    if partial.is_file() and record.is_file():
        try:
            state = json.loads(record.read_text())
            if state.get("params") == params:
                images = np.lib.format.open_memmap(partial, mode="r+")
                if images.shape == shape:
                    log(f"resuming after {state['done']} images")
                    return images, int(state["done"]), {int(k): v for k, v in state.get("errors", {}).items()}
        except (OSError, ValueError, KeyError):
            pass  # an unreadable record means starting over, which is always safe
    images = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=shape)
    reserve_space(partial)  # its pages would fault (SIGBUS) on a full disk; now ENOSPC raises one line here
    write_json(record, {"params": params, "done": 0, "errors": {}})
    return images, 0, {}
