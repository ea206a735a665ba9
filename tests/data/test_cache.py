# SPDX-License-Identifier: MIT
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ppi_cli.data.cache import load_array, open_cache, read_manifest, write_cache_info
from ppi_cli.errors import CacheError
from ppi_cli.files import save_npy, write_csv

REBUILD = "ppi prepare lidc --root /data/LIDC"


@pytest.fixture
def cache(tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    write_csv(folder / "manifest.csv", pd.DataFrame({"sample_id": [0, 1], "patient_id": ["0007", "0008"]}))
    save_npy(folder / "images.npy", np.zeros((2, 4, 4), np.int16))
    write_cache_info(folder, "lidc", {"spacing": 0.5, "crop": 180}, 2, ["manifest.csv", "images.npy"])
    return folder


def test_open_valid_cache(cache):
    info = open_cache(cache, "lidc", REBUILD, params={"crop": 180, "spacing": 0.5}, verify=True)
    assert info.n_samples == 2 and len(info.content_hash) == 16
    frame = read_manifest(cache, required=["sample_id", "patient_id"])
    assert frame["patient_id"].tolist() == ["0007", "0008"]  # ids stay strings
    assert load_array(cache, "images.npy").shape == (2, 4, 4)


def test_stale_parameters_name_the_rebuild_command(cache):
    with pytest.raises(CacheError) as err:
        open_cache(cache, "lidc", REBUILD, params={"spacing": 0.7, "crop": 180})
    text = err.value.one_line()
    assert "stale cache" in text and "spacing" in text and f"rebuild with: {REBUILD}" in text


def test_incomplete_foreign_and_modified_caches(cache, tmp_path):
    with pytest.raises(CacheError, match="not 'ga'"):
        open_cache(cache, "ga", "ppi prepare ga --manifest labels.csv")
    save_npy(cache / "images.npy", np.ones((2, 4, 4), np.int16))
    open_cache(cache, "lidc", REBUILD)  # cheap check passes
    with pytest.raises(CacheError, match="content changed"):
        open_cache(cache, "lidc", REBUILD, verify=True)
    (cache / "images.npy").unlink()
    with pytest.raises(CacheError, match="images.npy is missing"):
        open_cache(cache, "lidc", REBUILD)
    (cache / "cache.json").unlink()
    with pytest.raises(CacheError, match="incomplete"):
        open_cache(cache, "lidc", REBUILD)
    with pytest.raises(CacheError, match="no cache here"):
        open_cache(tmp_path / "nothing", "lidc", REBUILD)


def test_manifest_missing_column(cache):
    with pytest.raises(CacheError, match="missing column.*label"):
        read_manifest(cache, required=["sample_id", "label"])
