# SPDX-License-Identifier: MIT
"""Shared fixtures: seeded RNGs, an isolated workspace, and an in-process CLI runner."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch

# Two cores in CI: keep torch from oversubscribing them.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def rng() -> np.random.Generator:
    """A NumPy generator with a fixed seed."""
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _isolated_workspace(tmp_path, monkeypatch):
    """Every test gets its own workspace and never writes into the checkout."""
    monkeypatch.setenv("PPI_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.delenv("PPI_DEBUG", raising=False)
    monkeypatch.setenv("PPI_QUIET", "0")


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys) -> Callable[..., CliResult]:
    """Run `ppi` in-process with real error handling; returns exit code, stdout and stderr."""
    from ppi_cli.cli.main import run

    def invoke(*args: str) -> CliResult:
        code = run([str(a) for a in args])
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return invoke


@pytest.fixture
def one_thread():
    """Run a test on one torch thread: on tiny tensors a second thread only adds waiting for a busy core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
