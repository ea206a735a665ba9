# SPDX-License-Identifier: MIT
"""The one place that talks to the terminal: log lines and progress bars, always on stderr.

Stdout is kept for results (tables, `--json`), so that `ppi ... > result.txt` captures only
results. Domain code calls `log`, `warn` and `progress` from here and never prints itself.
Nothing printed here may contain patient names or IDs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["stderr", "stdout", "log", "warn", "paths", "progress", "progress_bar", "log_prefix"]

T = TypeVar("T")

stderr = Console(stderr=True, highlight=False, soft_wrap=True)
stdout = Console(highlight=False, soft_wrap=True)


_prefix: list[str] = []  # the labels of `log_prefix` blocks, innermost last


@contextmanager
def log_prefix(label: str) -> Iterator[None]:
    """Start every log and warning line inside the block with `[label] `: which study a worker's lines belong to.

    Example:
        >>> with log_prefix("lidc ppi-wbp"):
        ...     log("fold 0: ...")  # [lidc ppi-wbp] fold 0: ...
    """
    _prefix.append(label)
    try:
        yield
    finally:
        _prefix.pop()


def _label() -> str:
    return f"[{_prefix[-1]}] " if _prefix else ""


def _quiet() -> bool:
    return os.environ.get("PPI_QUIET", "") not in ("", "0")


def log(message: str) -> None:
    """Print an informational line on stderr (suppressed with `PPI_QUIET=1`)."""
    if not _quiet():
        stderr.print(escape(_label() + message))


def warn(message: str) -> None:
    """Print a warning line on stderr (never suppressed)."""
    stderr.print(f"{escape(_label())}[yellow]warning:[/yellow] {escape(message)}")


def paths(*, read: Iterable[str | Path] = (), wrote: Iterable[str | Path] = ()) -> None:
    """Tell the user where a command read and wrote; every command calls this once at the end."""
    for p in read:
        log(f"read  {p}")
    for p in wrote:
        log(f"wrote {p}")


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Progress]:
    """A rich progress bar on stderr; yields `(progress, task_id)` via `.advance`.

    Example:
        >>> with progress_bar("series", total=10) as bar:
        ...     bar.advance(bar.task_ids[0])
    """
    bar = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=False,
        disable=_quiet() or not stderr.is_terminal,
    )
    with bar:
        bar.add_task(description, total=total)
        yield bar


def progress(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate over `items` with a progress bar on stderr."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress_bar(description, total) as bar:
        task = bar.task_ids[0]
        for item in items:
            yield item
            bar.advance(task)
