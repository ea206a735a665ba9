# SPDX-License-Identifier: MIT
"""`ppi prepare folder` and the folder Dataset on a generated ImageFolder tree."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import ppi_cli.data.folder.prepare as fp
from ppi_cli.config.recipe import DataConfig
from ppi_cli.data.cache import open_cache
from ppi_cli.data.datasets import build_dataset
from ppi_cli.data.folder.dataset import predefined_split
from ppi_cli.errors import ConfigError, DataError

COLOURS = {"cat": (200, 10, 10), "dog": (10, 200, 10), "owl": (10, 10, 200)}


def make_tree(root, classes=("cat", "dog"), per_class=3, split=True, corrupt=False):
    for s_i, split_name in enumerate(("train", "test") if split else ("",)):
        for name in classes:
            folder = root / split_name / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                # Uniform colour, non-square and of varied size: resizing must keep the colour exactly.
                Image.new("RGB", (20 + 4 * i + s_i, 16), COLOURS[name]).save(folder / f"{name}{i}.png")
    if corrupt:
        (root / ("train" if split else "") / classes[0] / "broken.jpg").write_bytes(b"not an image")
    return root


def test_prepare_cli_builds_a_valid_cache(cli, tmp_path):
    root = make_tree(tmp_path / "photos", corrupt=True)
    result = cli("prepare", "folder", "--root", root, "--out", tmp_path / "cache", "--size", "12")
    assert result.exit_code == 0, result.stderr
    info = open_cache(tmp_path / "cache", "folder", "x", verify=True)
    assert info.extra["classes"] == ["cat", "dog"] and info.extra["size"] == 12 and info.n_samples == 12
    manifest = pd.read_csv(tmp_path / "cache" / "manifest.csv")
    assert sorted(manifest["split"].unique()) == ["test", "train"]
    assert (manifest["label"] == manifest["class_name"].map({"cat": 0, "dog": 1})).all()
    images = np.load(tmp_path / "cache" / "images.npy")
    assert images.shape == (12, 3, 12, 12) and images.dtype == np.uint8
    for k, name in enumerate(manifest["class_name"]):
        assert np.all(images[k].reshape(3, -1).T == COLOURS[name])
    errors = pd.read_csv(tmp_path / "cache" / "errors.csv")
    assert list(errors["source"]) == ["train/cat/broken.jpg"]
    assert "1 unreadable image" in result.stderr and "wrote" in result.stderr


def test_native_size_and_strict(tmp_path):
    root = tmp_path / "sq"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(2):
            Image.new("L", (10, 10), 40 * i).save(root / name / f"{i}.png")
    out = fp.prepare_folder(fp.FolderPrepareConfig(root, tmp_path / "c", channels=1))
    assert out.size == 10 and np.load(tmp_path / "c" / "images.npy").shape == (4, 1, 10, 10)
    assert set(pd.read_csv(tmp_path / "c" / "manifest.csv")["split"]) == {"all"}
    bad = make_tree(tmp_path / "bad", corrupt=True)
    with pytest.raises(DataError, match="broken.jpg: unreadable image"):
        fp.prepare_folder(fp.FolderPrepareConfig(bad, tmp_path / "c2", size=8, strict=True))
    with pytest.raises(DataError, match="only one class"):
        make_tree(tmp_path / "one", classes=("cat",))
        fp.prepare_folder(fp.FolderPrepareConfig(tmp_path / "one", tmp_path / "c3"))


def test_interrupted_run_resumes_to_the_same_cache(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "photos", classes=("cat", "dog", "owl"), per_class=4)
    clean = fp.prepare_folder(fp.FolderPrepareConfig(root, tmp_path / "clean", size=8))
    monkeypatch.setattr(fp, "_FLUSH_EVERY", 2)
    real, calls = fp._load_image, {"n": 0}

    def dying(*args):
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(fp, "_load_image", dying)
    with pytest.raises(KeyboardInterrupt):
        fp.prepare_folder(fp.FolderPrepareConfig(root, tmp_path / "resumed", size=8))
    assert not (tmp_path / "resumed" / "cache.json").exists()
    counted = []
    monkeypatch.setattr(fp, "_load_image", lambda *args: counted.append(1) or real(*args))
    resumed = fp.prepare_folder(fp.FolderPrepareConfig(root, tmp_path / "resumed", size=8))
    assert len(counted) == 24 - 8  # the 8 images recorded before the interruption are not decoded again
    assert resumed.n_images == clean.n_images == 24
    assert np.array_equal(np.load(tmp_path / "clean" / "images.npy"), np.load(tmp_path / "resumed" / "images.npy"))
    assert not (tmp_path / "resumed" / "images.partial.npy").exists()


def test_dataset_samples_and_predefined_split(tmp_path):
    make_tree(tmp_path / "p", classes=("cat", "dog", "owl"), per_class=4)
    fp.prepare_folder(fp.FolderPrepareConfig(tmp_path / "p", tmp_path / "c", size=16))
    cfg = DataConfig(dataset="folder", crop=12, flips=True, rotation=0.0)
    train = build_dataset("folder", tmp_path / "c", [0, 5], cfg, train=True, seed=1)
    sample = train[1]
    assert sample["image"].shape == (3, 12, 12) and sample["image"].dtype == torch.float32
    assert sample["label"].dtype == torch.int64 and sample["index"] == 5
    assert float(sample["image"].max()) <= 1.0
    evaluation = build_dataset("folder", tmp_path / "c", None, cfg, train=False)
    assert len(evaluation) == 24 and evaluation[0]["image"].shape == (3, 12, 12)
    split = predefined_split(tmp_path / "c", val_fraction=0.25, seed=0)
    manifest = pd.read_csv(tmp_path / "c" / "manifest.csv")
    assert set(manifest["split"][split.test]) == {"test"} and len(split.test) == 12
    assert set(split.train).isdisjoint(split.val) and len(split.train) + len(split.val) == 12

    make_tree(tmp_path / "bin", classes=("cat", "dog"), per_class=2, split=False)
    fp.prepare_folder(fp.FolderPrepareConfig(tmp_path / "bin", tmp_path / "cb", size=8))
    binary = build_dataset("folder", tmp_path / "cb", None, DataConfig(dataset="folder", crop=8), train=False)
    assert binary[3]["label"].dtype == torch.float32 and float(binary[3]["label"]) == 1.0
    assert predefined_split(tmp_path / "cb") is None


def test_subject_regex_groups_a_patients_images(cli, tmp_path):
    root = tmp_path / "xr"
    for name, files in {"normal": ("P01_a.png", "P01_b.png", "P02_a.png"), "sick": ("P03_a.png", "P03_b.png")}.items():
        (root / name).mkdir(parents=True)
        for file in files:
            Image.new("L", (8, 8), 90).save(root / name / file)
    result = cli("prepare", "folder", "--root", root, "--out", tmp_path / "c", "--subject-regex", r"^(P\d+)_")
    assert result.exit_code == 0, result.stderr
    manifest = pd.read_csv(tmp_path / "c" / "manifest.csv")
    assert manifest.set_index("source")["subject_id"].to_dict() == {
        "normal/P01_a.png": "P01", "normal/P01_b.png": "P01", "normal/P02_a.png": "P02",
        "sick/P03_a.png": "P03", "sick/P03_b.png": "P03"}
    items, _ = fp.scan_folder(root)
    assert fp.folder_subjects(items, root, r"(?P<site>x)?(?P<subject>P\d+)") == ["P01", "P01", "P02", "P03", "P03"]
    assert fp.folder_subjects(items, root)[0] == "normal/P01_a"  # the default: each image its own subject
    with pytest.raises(ConfigError, match=r"gives no subject for 2 of 5 file names \(first: normal/P01_a.png\)"):
        fp.folder_subjects(items, root, r"^(P0[23])_")
    with pytest.raises(ConfigError, match="no group"):
        fp.folder_subjects(items, root, r"P\d+")


def test_subjects_csv_and_a_subject_across_split_folders(tmp_path):
    root = make_tree(tmp_path / "photos", per_class=2)  # train/{cat,dog}/{cat,dog}{0,1}.png and test/...
    items, _ = fp.scan_folder(root)
    rows = [(f"{split}/{name}/{name}{i}.png", f"{split}-{i}") for split in ("train", "test")
            for name in ("cat", "dog") for i in range(2)]
    table = tmp_path / "subjects.csv"
    pd.DataFrame(rows, columns=["file", "subject_id"]).to_csv(table, index=False)
    assert fp.folder_subjects(items, root, subjects=table) == ["test-0", "test-1", "test-0", "test-1",
                                                               "train-0", "train-1", "train-0", "train-1"]
    out = fp.prepare_folder(fp.FolderPrepareConfig(root, tmp_path / "c", size=8, subjects=table))
    assert out.n_images == 8 and pd.read_csv(tmp_path / "c" / "manifest.csv")["subject_id"].nunique() == 4
    pd.DataFrame([(f, "one") for f, _ in rows], columns=["file", "subject_id"]).to_csv(table, index=False)
    with pytest.raises(ConfigError, match="1 subject.s. have images in more than one of the folders test, train"):
        fp.folder_subjects(items, root, subjects=table)
    pd.DataFrame(rows[:3], columns=["file", "subject_id"]).to_csv(table, index=False)
    with pytest.raises(ConfigError, match="no subject_id for 5 of 8 images"):
        fp.folder_subjects(items, root, subjects=table)
