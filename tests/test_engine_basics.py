# SPDX-License-Identifier: MIT
from __future__ import annotations

import pytest
import torch

from ppi_cli.engine.device import seed_everything, select_device
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
