# SPDX-License-Identifier: MIT
"""scripts/cue_channels.py, the diagnostic behind docs/ppi.md's "What row B reads"."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import checkpoint_volume, load_script

from ppi_cli.data.cache import write_cache_info
from ppi_cli.files import save_npy, write_csv
from ppi_cli.models.registry import load_model


@pytest.fixture(scope="module")
def script():
    return load_script("cue_channels")


def _cache(folder, volumes, sites):
    save_npy(folder / "volumes.npy", volumes)
    n = len(volumes)
    write_csv(folder / "manifest.csv", pd.DataFrame({"sample_id": [f"v{k}" for k in range(n)],
                                                    "subject_id": [f"s{k}" for k in range(n)], "site": sites,
                                                    "label": [k % 2 for k in range(n)]}))
    write_cache_info(folder, "ga", {"n_bscans": volumes.shape[1]}, n, ["manifest.csv", "volumes.npy"])


def test_channels_are_the_logit_shifts_of_the_cue_its_shape_and_its_brightness(script, tmp_path, rng):
    """Only the volumes that differ from the twin count; per site, `cue` is logit(x) − logit(x0), `shape` that of
    x0 put in x's column look (its brightness kept) and `brightness` that of x0 scaled to x's mean, each checked
    against the images built here by hand."""
    twin = rng.integers(40, 200, size=(5, 10, 24, 40), dtype=np.uint8)
    gain = np.linspace(0.6, 1.3, 40, dtype=np.float32)  # a lateral ramp, brighter on the right
    data = twin.copy()
    for row in (1, 3, 4):
        data[row] = np.clip(twin[row] * gain, 0, 255).astype(np.uint8)
    sites = ["A", "A", "B", "B", "B"]
    _cache(tmp_path / "data", data, sites)
    _cache(tmp_path / "twin", twin, sites)
    carrying_sites, images = script.carrying_volumes(tmp_path / "data", tmp_path / "twin")
    assert carrying_sites == ["A", "B", "B"]
    for row, volume in zip((1, 3, 4), images, strict=True):  # the volumes that differ, in row order
        assert np.allclose(volume["cue"].numpy()[:, 0], data[row] / 255, atol=1e-6)

    run = tmp_path / "train-A"
    checkpoint_volume(run / "best.pt")
    table = script.channel_effects(run, carrying_sites, images)
    model, _ = load_model(run / "best.pt")
    model.eval()
    positions = torch.arange(10)[None]

    def logit(image: np.ndarray) -> float:
        with torch.no_grad():
            return float(model(torch.from_numpy(image).float()[None], positions).reshape(-1)[0])

    expected = {name: {"A": [], "B": []} for name in ("cue", "shape", "brightness")}
    for row in (1, 3, 4):
        x = data[row].astype(np.float32)[:, None] / 255
        x0 = twin[row].astype(np.float32)[:, None] / 255
        look = lambda v: np.clip(v.mean(axis=-2, keepdims=True), 0.02, None)  # noqa: E731  a column look
        shape_look = [look(v) / look(v).mean(axis=(-2, -1), keepdims=True) for v in (x, x0)]
        shape = np.clip(x0 * np.clip(shape_look[0] / shape_look[1], 0.25, 4.0), 0, 1)
        brightness = np.clip(x0 * x.mean() / x0.mean(), 0, 1)
        for name, image in (("cue", x), ("shape", shape), ("brightness", brightness)):
            expected[name][sites[row]].append(logit(image) - logit(x0))
    by_site = table.set_index("test_site")
    assert by_site["n"].to_dict() == {"A": 1, "B": 2}
    for name, cells in expected.items():
        for site, values in cells.items():
            assert by_site.loc[site, name] == pytest.approx(np.mean(values), abs=1e-4)
    assert by_site.loc["B", "brightness"] != pytest.approx(by_site.loc["B", "shape"], abs=1e-6)


def test_a_twin_with_other_volumes_or_no_difference_is_refused(script, tmp_path, rng, capsys):
    volumes = rng.integers(0, 256, size=(4, 10, 24, 40), dtype=np.uint8)
    _cache(tmp_path / "data", volumes, ["A"] * 4)
    _cache(tmp_path / "short", volumes[:3], ["A"] * 3)
    with pytest.raises(SystemExit, match="3 volumes where"):
        script.carrying_volumes(tmp_path / "data", tmp_path / "short")
    run = tmp_path / "train-A"
    checkpoint_volume(run / "best.pt")
    with pytest.raises(SystemExit, match="every volume equals"):
        script.main([str(run), "--data", str(tmp_path / "data"), "--twin", str(tmp_path / "data")])
