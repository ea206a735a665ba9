# SPDX-License-Identifier: MIT
"""The workspace: where commands find inputs and put outputs they were not told about.

Layout (fixed, so the product's example commands run verbatim):

    <workspace>/cache/lidc      prepared LIDC-IDRI cache
    <workspace>/cache/ga        prepared GA OCT cache
    <workspace>/cache/<name>    other prepared caches (e.g. folder datasets)
    <workspace>/runs/<command>-<dataset>-<recipe>-<time>/   one folder per training / study run
    <workspace>/synth/<dataset> generated raw data (ppi synth)

The workspace is `--workspace`, else `$PPI_WORKSPACE`, else `./ppi-workspace`. Explicit `--out`,
`--data` and `--recipe` always win over it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Workspace", "ENV_VAR", "DEFAULT_DIR"]

ENV_VAR = "PPI_WORKSPACE"
DEFAULT_DIR = "ppi-workspace"


@dataclass(frozen=True)
class Workspace:
    """A workspace root and its fixed layout."""

    root: Path

    @classmethod
    def resolve(cls, explicit: str | Path | None = None) -> Workspace:
        """The workspace from `--workspace`, else `$PPI_WORKSPACE`, else `./ppi-workspace`."""
        chosen = explicit or os.environ.get(ENV_VAR) or DEFAULT_DIR
        return cls(Path(chosen).expanduser())

    def cache(self, dataset: str) -> Path:
        """The default cache folder of a dataset (`lidc`, `ga`, ...)."""
        return self.root / "cache" / dataset

    def synth(self, dataset: str) -> Path:
        """The default folder for generated raw data of a dataset."""
        return self.root / "synth" / dataset

    @property
    def runs(self) -> Path:
        """The folder holding one sub-folder per run."""
        return self.root / "runs"

    def new_run(self, command: str, dataset: str, recipe: str, when: float | None = None) -> Path:
        """A fresh, not yet existing run folder `runs/<command>-<dataset>-<recipe>-<time>`."""
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
        base = self.runs / f"{command}-{dataset}-{recipe}-{stamp}"
        path, n = base, 1
        while path.exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        return path

    def latest_run(self, command: str, dataset: str | None = None) -> Path | None:
        """The most recent run folder of a command (and dataset), or None."""
        pattern = f"{command}-{dataset}-*" if dataset else f"{command}-*"
        runs = sorted((p for p in self.runs.glob(pattern) if p.is_dir()), key=lambda p: p.stat().st_mtime)
        return runs[-1] if runs else None
