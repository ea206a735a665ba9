# SPDX-License-Identifier: MIT
"""Helpers for LIDC tests: small synthetic downloads and the two older TCIA folder layouts."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from ppi_cli.data.synth.lidc import SynthLidcConfig, synth_lidc


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
    import pydicom

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
