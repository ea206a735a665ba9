# SPDX-License-Identifier: MIT
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from ppi_cli.device import seed_everything, select_device
from ppi_cli.errors import ConfigError
from ppi_cli.workspace import Workspace


def test_select_device():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ConfigError, match="unknown device"):
        select_device("tpu")
    with pytest.raises(ConfigError, match="cuda:N"):
        select_device("cuda:x")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="not available"):
            select_device("cuda")


def test_seeding_repeats():
    seed_everything(5)
    a = torch.rand(3)
    seed_everything(5)
    assert torch.equal(a, torch.rand(3))


def test_workspace_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("PPI_WORKSPACE", str(tmp_path / "env"))
    assert Workspace.resolve().root == tmp_path / "env"
    assert Workspace.resolve(tmp_path / "flag").root == tmp_path / "flag"
    monkeypatch.delenv("PPI_WORKSPACE")
    assert Workspace.resolve().root.name == "ppi-workspace"
    ws = Workspace(tmp_path)
    assert ws.cache("lidc") == tmp_path / "cache" / "lidc"
    run = ws.new_run("train", "ga", "ga-ppi-wbp", when=0)
    run.mkdir(parents=True)
    assert ws.new_run("train", "ga", "ga-ppi-wbp", when=0) != run
    assert ws.latest_run("train", "ga") == run


_RSS_AFTER_FREE = """
import torch
from pathlib import Path
from ppi_cli.device import keep_host_memory

def rss_mib():
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024

kept = keep_host_memory()
before = rss_mib()
block = torch.ones(64 * 2**20 // 4)  # 64 MiB, above glibc's largest mmap threshold
del block
print(kept, round(rss_mib() - before))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
@pytest.mark.parametrize("setting", ["", "system"])
def test_keep_host_memory_keeps_freed_blocks_unless_told_not_to(setting):
    env = {**os.environ, "PPI_MALLOC": setting}
    out = subprocess.run([sys.executable, "-c", _RSS_AFTER_FREE], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    kept, resident_after_free = out[0] == "True", int(out[1])
    assert kept == (setting != "system")
    if kept:
        assert resident_after_free >= 60, out  # freed, but still in the process for the next step
    else:
        assert resident_after_free <= 8, out  # glibc's default: the block was unmapped on free
