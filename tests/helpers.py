# SPDX-License-Identifier: MIT
"""Shared test helpers: the checkout's root, tiny checkpoints in the layout `ppi train` writes, PHI scans,
small synthetic LIDC downloads in the three TCIA folder layouts, a prepared cache read back whole, and one PPI
training step of a recipe's model.

Fixtures live in conftest.py; everything a test imports by name lives here (`from helpers import ...`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import math
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pydicom
import torch
from pydicom.data import get_testdata_file

from ppi_cli.checkpoint import save_checkpoint
from ppi_cli.config.recipe import (
    SELECT_CHOICES,
    DataConfig,
    ModelConfig,
    MultiviewConfig,
    PPIConfig,
    Recipe,
    select_choices,
)
from ppi_cli.data.synth.lidc import SynthLidcConfig, synth_lidc
from ppi_cli.engine.run_meta import CacheDescription, checkpoint_meta
from ppi_cli.engine.step import TrainStep
from ppi_cli.models import build_model
from ppi_cli.ppi import LossWeights

ROOT = Path(__file__).resolve().parents[1]  # the checkout


def load_script(name: str) -> ModuleType:
    """A script of `scripts/` imported as a module named `name` (registered in sys.modules, where dataclasses
    look their module up while it loads)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None, name
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module

# Patient identity planted in test scans: none of these strings may reach an output but the SC's patient module.
PHI = {"PatientName": "Doe^Jane", "PatientID": "PID-424242", "PatientBirthDate": "19500101"}
PHI_BYTES = (b"Doe", b"Jane", b"PID-424242", b"424242", b"19500101")


def checkpoint_2d(path: Path, *, side: int = 32, window=(-1000.0, 400.0), spacing_mm: float | None = 0.5,
                  dataset: str = "lidc", seed: int = 0) -> Path:
    """A tiny binary CNN (untrained) saved with the meta `ppi train` writes (`run_meta.checkpoint_meta`)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(name="tiny", in_channels=1, num_classes=1, input_size=side)
    model = build_model(cfg).eval()
    recipe = Recipe(name=f"{dataset}-tiny-test", model=cfg, data=DataConfig(dataset=dataset, crop=side, window=window))
    cache = CacheDescription(params={"spacing": spacing_mm, "crop": 48, "classes": ["benign", "malignant"]})
    meta = checkpoint_meta(recipe, model, cache, epoch=0, metrics={}, fold=None)
    return save_checkpoint(path, model.state_dict(), meta)


def checkpoint_volume(path: Path, *, n_bscans: int = 10, bscan_size=(24, 40), seed: int = 0) -> Path:
    """A tiny multi-view GA model saved with the meta `ppi train` writes (GA cache parameters)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(name="multiview", backbone="tiny", in_channels=1, num_classes=1, input_size=24,
                      multiview=MultiviewConfig(num_positions=n_bscans, bias_start=0.0))
    model = build_model(cfg).eval()
    with torch.no_grad():  # spread the attention logits so the top B-scans are well defined
        model.position.weight.mul_(5.0)
    recipe = Recipe(name="ga-tiny-test", model=cfg, data=DataConfig(dataset="ga"))
    cache = CacheDescription(params={"n_bscans": n_bscans, "bscan_height": bscan_size[0],
                                     "bscan_width": bscan_size[1], "classes": ["no GA", "GA"]})
    meta = checkpoint_meta(recipe, model, cache, epoch=0, metrics={}, fold=None)
    return save_checkpoint(path, model.state_dict(), meta)


def hide_decoders(monkeypatch, path: str | Path) -> None:
    """Make pydicom find no decoder for this file's transfer syntax, and `pylibjpeg` look uninstalled.

    Which decoders a machine has depends on its extras (pyjpegls comes with highdicom, pylibjpeg with
    `codecs`), so the "no decoder installed" path is tested by hiding them, on every machine.
    """
    import importlib.util

    from pydicom.pixels import get_decoder

    syntax = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    monkeypatch.setattr(get_decoder(syntax), "_available", {})
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "pylibjpeg" else find_spec(name, *args))


def ct_with_patient(path: Path) -> Path:
    """pydicom's CT_small with a patient name, ID and birth date planted."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for keyword, value in PHI.items():
        setattr(ds, keyword, value)
    ds.save_as(path)
    return path


def opt_with_patient(path: Path, rng: np.random.Generator, n: int = 14, shape=(30, 50)) -> tuple[Path, np.ndarray]:
    """A DICOM OPT volume whose frames are stored out of order, with a patient planted; returns the volume too."""
    from ppi_cli.data.oct.writers import write_dicom_opt

    volume = rng.integers(20, 200, size=(n, *shape), dtype=np.uint8)
    order = rng.permutation(n)
    write_dicom_opt(path, volume, (0.1, 0.005, 0.01), stored_order=order, patient_id=PHI["PatientID"])
    ds = pydicom.dcmread(path)
    ds.PatientName, ds.PatientBirthDate = PHI["PatientName"], PHI["PatientBirthDate"]
    ds.save_as(path)
    return path, volume


def coloured(rgb: np.ndarray) -> np.ndarray:
    """Pixels that are not grey: on an image panel, only the heat overlay has colour."""
    rgb = rgb.astype(int)
    return (np.abs(rgb[..., 0] - rgb[..., 1]) > 8) | (np.abs(rgb[..., 1] - rgb[..., 2]) > 8)


def png_pixel(box: tuple[int, int, int, int], shape: tuple[int, int], i: int, j: int) -> tuple[int, int]:
    """The PNG pixel at the centre of model pixel (i, j) of a panel drawn in `box` (inclusive)."""
    r0, r1, c0, c1 = box
    return (int(r0 + (i + 0.5) * (r1 - r0 + 1) / shape[0]), int(c0 + (j + 0.5) * (c1 - c0 + 1) / shape[1]))


# --- LIDC downloads -------------------------------------------------------------------------------------------


def make_tree(out: Path, patients: int = 2, size: int = 64, slices: int = 10, seed: int = 0):
    """A synthetic NBIA-layout download; returns the SynthLidcResult."""
    return synth_lidc(SynthLidcConfig(out=out, patients=patients, size=size, slices=slices, seed=seed))


def ct_series_folders(root: Path) -> list[Path]:
    """Folders holding a CT reader XML (one per synthetic CT series), sorted."""
    return sorted(p.parent for p in root.rglob("*.xml") if "LidcReadMessage" in p.read_text()[:300])


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def to_oldest_layout(root: Path, dst: Path) -> Path:
    """`LIDC-IDRI/LIDC-IDRI-dddd/<StudyInstanceUID>/<SeriesInstanceUID>/000001.dcm` from an NBIA tree."""
    for folder in sorted({p.parent for p in root.rglob("*.dcm")}):
        files = sorted(folder.glob("*.dcm"))
        head = pydicom.dcmread(files[0], stop_before_pixels=True)
        target = dst / "LIDC-IDRI" / folder.parent.parent.name / head.StudyInstanceUID / head.SeriesInstanceUID
        for i, path in enumerate(files, 1):
            _link_or_copy(path, target / f"{i:06d}.dcm")
        for xml in folder.glob("*.xml"):
            _link_or_copy(xml, target / xml.name)
    return dst


def to_2018_layout(root: Path, dst: Path) -> Path:
    """`LIDC-IDRI-dddd/01-01-2000-30178/3000566-03192/000001.dcm` (the 2018-2020 Data Retriever) from an NBIA tree."""
    for folder in sorted({p.parent for p in root.rglob("*.dcm")}):
        patient, study, series = folder.parent.parent.name, folder.parent.name, folder.name
        target = dst / patient / f"01-01-2000-{study[-5:]}" / f"{series.split('.')[0]}-{series[-5:]}"
        for i, path in enumerate(sorted(folder.glob("*.dcm")), 1):
            _link_or_copy(path, target / f"{i:06d}.dcm")
        for xml in folder.glob("*.xml"):
            _link_or_copy(xml, target / xml.name)
    return dst


def load_cache(folder: Path) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Manifest, images and masks of a prepared cache (fully read)."""
    manifest = pd.read_csv(folder / "manifest.csv", dtype={"patient_id": str, "series_uid": str, "reader_slots": str})
    return (manifest, np.load(folder / "images.npy", allow_pickle=False),
            np.load(folder / "masks.npy", allow_pickle=False))


def lidc_nodule_cache(folder: Path, *, side: int, patients: int = 12, per_patient: int = 4, lesion: int = 12,
                      seed: int = 0, with_masks: bool = True) -> Path:
    """A LIDC-layout cache of `side`-px crops, each with a bright `lesion`-px nodule at the centre in its masks
    (no `masks.npy` without `with_masks`); every other sample of a patient is positive and the nodule of a
    positive is brighter."""
    from ppi_cli.data.cache import write_cache_info
    from ppi_cli.files import save_npy, write_csv

    rng = np.random.default_rng(seed)
    n = patients * per_patient
    labels = np.arange(n) % 2
    images = rng.normal(-800, 40, (n, side, side))
    masks = np.zeros((n, 4, side, side), np.uint8)
    start = (side - lesion) // 2
    images[:, start:start + lesion, start:start + lesion] += (300 + 300 * labels)[:, None, None]
    masks[:, :, start:start + lesion, start:start + lesion] = 1
    subjects = [f"p{i // per_patient:02d}" for i in range(n)]
    manifest = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "subject_id": subjects, "patient_id": subjects,
                             "series_uid": ["1.2"] * n, "lesion_id": [0] * n, "z": np.zeros(n), "n_readers": [4] * n,
                             "label": labels})
    write_csv(folder / "manifest.csv", manifest)
    save_npy(folder / "images.npy", images.astype(np.int16))
    if with_masks:
        save_npy(folder / "masks.npy", masks)
    write_cache_info(folder, "lidc", {"crop": side, "spacing": 0.5, "min_readers": 3, "annotations": "auto"}, n,
                     ["manifest.csv", "images.npy"] + (["masks.npy"] if with_masks else []))
    return folder


def step_configs(recipe: Recipe) -> list[PPIConfig]:
    """The PPI sections the recipe's training steps run with: each `select` field trains each of its choices."""
    fields = list(SELECT_CHOICES)
    options = [select_choices(recipe.ppi, name) if getattr(recipe.ppi, name) == "select"
               else (getattr(recipe.ppi, name),) for name in fields]
    return [dataclasses.replace(recipe.ppi, **dict(zip(fields, values, strict=True)))
            for values in itertools.product(*options)]


def one_ppi_step(recipe: Recipe, ppi: PPIConfig, size: int = 16) -> None:
    """One training step of `recipe`'s model, shrunk to `size` px and a batch of four, with the PPI section `ppi`
    from the first step: its losses and gradients are finite and some gradient is non-zero."""
    model_cfg = dataclasses.replace(recipe.model, input_size=size,
                                    multiview=dataclasses.replace(recipe.model.multiview, num_positions=4))
    cfg = dataclasses.replace(ppi, start_epoch=0)  # one of the PPI sections its runs train with, from the first step
    torch.manual_seed(0)
    model = build_model(model_cfg).train()
    batch, channels = 4, model_cfg.in_channels
    if model_cfg.name == "multiview":
        x, positions = torch.rand(batch, 3, channels, size, size), torch.arange(3).repeat(batch, 1)
    else:
        x, positions = torch.rand(batch, channels, size, size), None
    binary = model_cfg.num_classes == 1
    y = torch.tensor([1.0, 0.0, 1.0, 0.0]) if binary else torch.arange(batch) % model_cfg.num_classes
    step = TrainStep(model=model, net=model, cfg=cfg, weights=LossWeights(cfg), binary=binary,
                     device=torch.device("cpu"))
    assert step.uses_ppi(epoch=0, batch_size=batch)
    values = step(x, y, positions, epoch=0, generator=torch.Generator().manual_seed(0))
    assert {"cls", "con", "reg", "ad", "loss"} <= set(values)
    assert all(math.isfinite(float(values[k])) for k in ("cls", "con", "reg", "ad", "loss")), values
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)
