# SPDX-License-Identifier: MIT
from __future__ import annotations

import collections

import pytest
import torch

from ppi_cli.checkpoint import load_checkpoint, save_checkpoint
from ppi_cli.errors import ModelError


def test_round_trip_keeps_weights_and_meta(tmp_path):
    net = torch.nn.Linear(3, 2)
    meta = {"model": {"name": "tiny"}, "input": {"channels": 1, "window": [-1000, 400]}, "classes": ["no", "yes"]}
    path = save_checkpoint(tmp_path / "m.pt", net.state_dict(), meta, epoch=3, optimizer={"lr": 0.1})
    payload = load_checkpoint(path)
    assert payload["meta"] == meta and payload["epoch"] == 3
    for key, value in net.state_dict().items():
        assert torch.equal(payload["state_dict"][key], value)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_foreign_pickle_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"format": "ppi-checkpoint", "state_dict": {}, "meta": {}, "x": Evil()}, path)
    with pytest.raises(ModelError, match="Python objects"):
        load_checkpoint(path)
    assert "pwned" not in capsys.readouterr().out


def test_torch_file_without_marker_and_garbage_are_refused(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save(collections.OrderedDict(w=torch.zeros(2)), plain)
    with pytest.raises(ModelError, match="not a ppi checkpoint"):
        load_checkpoint(plain)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(ModelError, match="not a readable torch checkpoint"):
        load_checkpoint(junk)
    with pytest.raises(ModelError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "absent.pt")


def test_meta_must_be_plain_data(tmp_path):
    with pytest.raises(ModelError, match="plain JSON"):
        save_checkpoint(tmp_path / "m.pt", {}, {"bad": object()})
    assert not (tmp_path / "m.pt").exists()
