# SPDX-License-Identifier: MIT
"""scripts/blur_effect.py, the diagnostic behind docs/ppi.md's "A site's blur read as GA"."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import checkpoint_volume, load_script

from ppi_cli.data.bscans import blurred
from ppi_cli.data.cache import write_cache_info
from ppi_cli.files import save_npy, write_csv
from ppi_cli.models.registry import load_model


@pytest.fixture(scope="module")
def script():
    return load_script("blur_effect")


def test_the_blur_down_and_across_is_scipys_gaussian_filter_with_those_widths(rng):
    """`data.bscans.blurred` with `(down, across)`, the blur the script applies: SciPy's filter with the two
    widths (mirror edges, 3 std radius); a width of 0 leaves that axis alone, and equal widths are the plain call."""
    from scipy.ndimage import gaussian_filter

    volume = torch.from_numpy(rng.random((3, 1, 12, 20), dtype=np.float32))
    for down, across in ((0.7, 0.35), (0.0, 1.0), (1.3, 0.0)):
        expected = gaussian_filter(volume.numpy(), sigma=(0, 0, down, across), mode="mirror", truncate=3.0)
        np.testing.assert_allclose(blurred(volume, (down, across)).numpy(), expected, atol=1e-6)
    assert torch.equal(blurred(volume, (1.3, 1.3)), blurred(volume, 1.3))
    assert torch.equal(blurred(volume, (0.0, 0.0)), volume)


def test_mean_logits_are_the_models_own_on_the_hold_out_by_class(script, tmp_path, rng):
    cache = tmp_path / "cache"
    volumes = rng.integers(0, 256, size=(6, 10, 24, 40), dtype=np.uint8)
    save_npy(cache / "volumes.npy", volumes)
    write_csv(cache / "manifest.csv", pd.DataFrame({"sample_id": [f"D-{k}" for k in range(6)],
                                                   "subject_id": [f"s{k}" for k in range(6)], "site": ["D"] * 6,
                                                   "label": [0, 1, 0, 1, 1, 0]}))
    write_cache_info(cache, "ga", {"n_bscans": 10}, 6, ["manifest.csv", "volumes.npy"])
    run = tmp_path / "train-D"
    checkpoint_volume(run / "best.pt")
    (run / "split.json").write_text(json.dumps({"train": [0, 1], "val": [2], "test": [3, 4, 5]}))
    got = script.mean_logits(run, cache, 0.7, 0.35)
    model, _ = load_model(run / "best.pt")
    model.eval()
    positions = torch.arange(10)[None]

    def logit(row: int, blur: bool) -> float:
        x = torch.from_numpy(volumes[row]).float()[:, None] / 255
        x = blurred(x, (0.7, 0.35)) if blur else x
        with torch.no_grad():
            return float(model(x[None], positions).reshape(-1)[0])

    assert got["ga"] == pytest.approx(np.mean([logit(3, False), logit(4, False)]), abs=1e-5)
    assert got["no_ga"] == pytest.approx(logit(5, False), abs=1e-5)
    assert got["no_ga_blurred"] == pytest.approx(logit(5, True), abs=1e-5)
    assert got["ga_blurred"] != pytest.approx(got["ga"], abs=1e-7)
