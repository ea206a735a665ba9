# SPDX-License-Identifier: MIT
"""Atomic file writes, content hashes, and the guards around every output folder.

A write either lands whole or not at all: data goes to a temporary file in the same folder, is
flushed to disk, then renamed over the target (`os.replace` is atomic on POSIX and Windows). A
crash or Ctrl-C mid-write leaves the previous file untouched and at most a stray `.tmp` file, which
`remove_stale_tmp` clears on the next run. Large arrays are written with buffered I/O into space
reserved first (`write_npy_rows`), so a full disk raises one line instead of killing the process.
Before anything is written, `check_outputs` refuses an output that is one of the inputs, and
`output_lock` keeps a second run out of a folder in use (docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli.errors import ConfigError, DiskFullError

__all__ = [
    "IMAGE_SUFFIXES",
    "atomic_path",
    "atomic_write",
    "write_text",
    "write_bytes",
    "write_json",
    "json_text",
    "finite_json",
    "write_csv",
    "save_npy",
    "sha256_file",
    "sha256_bytes",
    "check_outputs",
    "output_lock",
    "LOCK_FILE",
    "remove_stale_tmp",
    "write_npy_rows",
    "reserve_space",
    "disk_full_error",
    "shareable_path",
    "shareable_text",
]

LOCK_FILE = ".ppi.lock"  # in every output folder a run holds (`output_lock`)

# File name suffixes of the images the toolkit reads with Pillow: B-scan folders, photo folders, `ppi explain`.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".ppm", ".pgm")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`.

    Use this when a library insists on writing to a path itself (matplotlib, pydicom, torch.save).

    Example:
        >>> with atomic_path("fig.png") as tmp:
        ...     fig.savefig(tmp, format="png")
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs should be as shareable as any new file
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[io.IOBase]:
    """Open a temporary file for writing; rename it onto `path` when the block ends without error."""
    binary = "b" in mode
    with atomic_path(path) as tmp, open(tmp, mode, encoding=None if binary else encoding, newline=None) as fh:
        yield fh


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` atomically and return the path."""
    with atomic_write(path, "w") as fh:
        fh.write(text)
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically and return the path."""
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write `obj` as indented, key-sorted JSON atomically; NaN and infinities become null (they are not JSON)."""
    return write_text(path, json_text(obj, sort_keys=True) + "\n")


def json_text(obj: Any, *, sort_keys: bool = False) -> str:
    """`obj` as indented, strict JSON (what `--json` prints): NaN and infinities become null, paths strings."""
    return json.dumps(finite_json(obj), indent=2, sort_keys=sort_keys, default=_json_default, allow_nan=False)


def finite_json(obj: Any) -> Any:
    """`obj` with every NaN or infinite float (Python or NumPy, at any depth) replaced by None."""
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: finite_json(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(value) for value in obj]
    if isinstance(obj, np.ndarray):
        return finite_json(obj.tolist())
    return obj


def write_csv(path: str | os.PathLike, frame: Any, **kwargs: Any) -> Path:
    """Write a pandas DataFrame as CSV atomically (no index unless asked)."""
    kwargs.setdefault("index", False)
    with atomic_write(path, "w") as fh:
        frame.to_csv(fh, **kwargs)
    return Path(path)


def save_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Save an array as `.npy` atomically (never pickled)."""
    with atomic_write(path, "wb") as fh:
        np.save(fh, np.asarray(array), allow_pickle=False)
    return Path(path)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def check_outputs(outputs: Mapping[str, str | os.PathLike | None],
                  inputs: Mapping[str, str | os.PathLike | None]) -> None:
    """Refuse, before anything is written, an output that would overwrite an input or another output.

    Paths are compared resolved, symbolic links followed, and as files (`os.path.samefile`, so a hard
    link to an input counts as the input). An output inside an input folder counts as overwriting it.

    Args:
        outputs: The flag that names each output (`--out`) -> the file it writes (None: not written).
        inputs: What each input is (`the input`, `the checkpoint (--model)`) -> its file or folder.

    Raises:
        ConfigError: Naming the flag and the input; nothing has been written.

    Example:
        >>> check_outputs({"--json": json_path}, {"the checkpoint (--model)": model_path})
    """
    outs = [(flag, Path(path)) for flag, path in outputs.items() if path is not None]
    ins = [(name, Path(path)) for name, path in inputs.items() if path is not None]
    for i, (flag, out) in enumerate(outs):
        for name, source in ins:
            if _same_file(out, source) or (source.is_dir() and _real(source) in _real(out).parents):
                raise ConfigError(f"{flag} would overwrite {name}; nothing was written",
                                  hint=f"choose another {flag.split()[0]}, outside the inputs")
        for other_flag, other in outs[:i]:
            if _same_file(out, other):
                raise ConfigError(f"{flag} and {other_flag} name the same file; nothing was written",
                                  hint=f"give {flag.split()[0]} a path of its own")


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike, flag: str = "--out") -> Iterator[Path | None]:
    """Hold `<folder>/.ppi.lock` (the holder's pid and host) while a run writes into `folder`.

    The lock is an `flock` on that file: the kernel drops it when its holder dies, so the lock file
    of a killed run is stale and the next run takes it over. A folder that cannot be written (a
    read-only cache) is not locked: nothing can be written there either. Yields the lock file.

    Raises:
        ConfigError: Another live run holds the folder; the message names its pid, host and lock file.

    Example:
        >>> with output_lock(out):
        ...     build_cache(out)
    """
    target = Path(folder)
    path = target / LOCK_FILE
    try:
        target.mkdir(parents=True, exist_ok=True)
        fd = _take_lock(path, flag)
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            yield None
            return
        raise
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def remove_stale_tmp(folder: str | os.PathLike) -> int:
    """Delete the temporary files (`.<name>.<random>.tmp`) that killed runs left in `folder` and below.

    Call it only while holding the folder's `output_lock`: a live run's temporary files look the same.
    Returns how many were removed.
    """
    removed = 0
    for path in Path(folder).rglob(".*.tmp"):
        if path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def write_npy_rows(path: str | os.PathLike, shape: tuple[int, ...], dtype: Any, rows: Iterable[np.ndarray]) -> Path:
    """Write a large `.npy` block by block (along axis 0), atomically, with its space reserved first.

    Unlike a memory map, whose pages fault (SIGBUS) when the file system cannot back them, the
    space is reserved up front (`posix_fallocate`) and the data goes through buffered writes, so a
    full disk raises `DiskFullError` and the previous file at `path` stays as it was.

    Args:
        path: The `.npy` to write.
        shape: The whole array's shape; the blocks must add up to it.
        dtype: The array's dtype; blocks are converted to it.
        rows: Blocks of shape `(n_i, *shape[1:])`, in order.

    Raises:
        DiskFullError: Not enough space for the whole array ("no space left on ...: needs N GB, has M").
    """
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
    with atomic_path(path) as tmp:
        try:
            with open(tmp, "wb") as fh:
                np.lib.format.write_array_header_1_0(fh, header)
                fh.flush()
                _reserve(fh.fileno(), fh.tell() + size)
                count = 0
                for block in rows:
                    block = np.ascontiguousarray(block, dtype=dtype)  # (n_i, *shape[1:])
                    if block.size == 0:  # a series with no sample: a memoryview of it cannot be cast
                        continue
                    fh.write(memoryview(block).cast("B"))
                    count += len(block)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise disk_full_error(Path(path).parent, size) from None
            raise
        if count != shape[0]:
            raise ValueError(f"write_npy_rows: {count} rows written for shape {shape}")
    return Path(path)


def reserve_space(path: str | os.PathLike) -> None:
    """Back a file's whole length with disk blocks now (a sparse memory-mapped work file would SIGBUS later).

    Raises:
        DiskFullError: The file system cannot hold the file.
    """
    size = os.path.getsize(path)
    with open(path, "rb+") as fh:
        try:
            _reserve(fh.fileno(), size)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise disk_full_error(Path(path).parent, size) from None
            raise


def disk_full_error(folder: str | os.PathLike, needed: int) -> DiskFullError:
    """The one-line error for a full file system: which one, how much was needed and how much is free."""
    mount = _mount_point(Path(folder))
    try:
        free = shutil.disk_usage(mount).free
    except OSError:
        free = 0
    need = f"needs {needed / 1e9:.2f} GB, " if needed else ""
    return DiskFullError(f"no space left on {mount}: {need}has {free / 1e9:.2f} GB free",
                         hint="free space there or choose an --out on another disk; the previous output is intact")


def shareable_path(path: str | os.PathLike, root: str | os.PathLike | None = None) -> str:
    """How a file meant for sharing (a report, a run record, errors.csv) names an input.

    Relative to `root` (`--root`, the manifest's folder) in POSIX form when the input lies under it,
    else by its base name: hospital export paths often carry patient names in their folders, so a
    full path never goes into such a file (docs/reliability.md#privacy).

    Example:
        >>> shareable_path("/exports/DOE_JOHN/study/vols/v1.npy", "/exports/DOE_JOHN/study")
        'vols/v1.npy'
    """
    target = Path(path)
    if root is not None:
        base = Path(root)
        for a, b in ((target, base), (Path(os.path.abspath(target)), Path(os.path.abspath(base))),
                     (_real(target), _real(base))):
            try:
                relative = a.relative_to(b)
            except ValueError:
                continue
            if relative.parts and ".." not in relative.parts:
                return relative.as_posix()
    return target.name or os.path.basename(os.path.abspath(target))


def shareable_text(text: str, paths: Iterable[str | os.PathLike | None],
                   root: str | os.PathLike | None = None) -> str:
    """`text` (an error line bound for errors.csv or a report) with full paths replaced by shareable names.

    Every spelling of each path in `paths` (as given, absolute, resolved) becomes `shareable_path`,
    and any other absolute path under `root` loses the root's folders (`/r/oot/a/b.png` -> `a/b.png`).
    """
    spellings: dict[str, str] = {}
    for item in paths:
        if item is None:
            continue
        shown = shareable_path(item, root)
        for form in (os.fspath(item), os.path.abspath(item), os.path.realpath(item)):
            if len(form) > 1:
                spellings.setdefault(form, shown)
    if root is not None:
        for form in (os.path.abspath(root), os.path.realpath(root)):  # absolute only: `data/` may be a word
            if len(form) > 1:
                spellings.setdefault(form.rstrip(os.sep) + os.sep, "")
    for form in sorted(spellings, key=len, reverse=True):  # the longest first: a folder is a prefix of its files
        text = text.replace(form, spellings[form])
    return text


def _reserve(fd: int, length: int) -> None:
    if not hasattr(os, "posix_fallocate"):
        return
    try:
        os.posix_fallocate(fd, 0, length)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):  # this file system cannot reserve
            return
        raise


def _take_lock(path: Path, flag: str) -> int:
    """Open and `flock` the lock file; retry when a finishing run removed it between our open and lock."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _lock_holder(fd)
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise ConfigError(f"{path.parent.name}: another ppi run ({holder}) is writing into this folder; "
                              f"its lock file is {path}",
                              hint=f"wait for it to finish, or choose another {flag}; if that run is gone, "
                                   "delete the lock file") from None
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = -1
        if current == os.fstat(fd).st_ino:
            return fd
        os.close(fd)


def _lock_holder(fd: int) -> str:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {int(data['pid'])} on {data['host']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "pid unknown"


def _mount_point(path: Path) -> Path:
    current = Path(os.path.realpath(path))
    while not current.exists():
        current = current.parent
    while not os.path.ismount(current):
        current = current.parent
    return current


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return _real(a) == _real(b)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
