# SPDX-License-Identifier: MIT
"""`ppi synth lidc`: a TCIA-style LIDC-IDRI download with synthetic CT and four simulated readers.

Each patient gets one CT series in the current NBIA layout
(`manifest-<epoch>/LIDC-IDRI/LIDC-IDRI-dddd/<study>/<series>/1-001.dcm`, data-protocols.md A.4)
showing a chest phantom (body, two lungs) with spherical nodules of varied size and contrast, and
a reader XML beside the slices. Four readers outline each nodule with jittered circles; a reader
misses a nodule with a probability that grows as it gets smaller and fainter, and skips the
slices where its cross-section is below the reader's own size threshold, so slices carry 0–4
outlines and both labels occur. Small nodules are marked with a single centre point (< 3 mm
convention), some nodules have a cavity that one reader outlines as a hole (`inclusion` FALSE),
and the first patient also has a chest radiograph with its `IdriReadMessage` read, which CT
preparation must skip. `answer_key.csv` lists every (nodule, slice) with at least one outline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ppi_cli import console
from ppi_cli.data.lidc.lesions import boxes_overlap
from ppi_cli.data.lidc.reader_xml import Annotation, Roi
from ppi_cli.data.synth.lidc_files import NonNodule, SliceSpec, write_ct_slice, write_cxr_read_xml, write_reader_xml
from ppi_cli.errors import ConfigError
from ppi_cli.files import write_csv

__all__ = ["SynthLidcConfig", "SynthLidcResult", "synth_lidc", "circle_outline", "ANSWER_COLUMNS"]

ANSWER_COLUMNS = ["patient_id", "series_uid", "nodule", "z", "readers", "n_readers", "label", "centre_row",
                  "centre_col", "radius_mm", "pixel_spacing"]
_READERS = 4
_MIN_READERS = 3  # the answer key's label threshold: the prepare default


@dataclass(frozen=True)
class SynthLidcConfig:
    """Options of `ppi synth lidc`."""

    out: Path  # folder that receives manifest-<epoch>/
    patients: int = 3  # one CT series each
    size: int = 256  # rows = columns of every CT slice
    slices: int = 24  # slices per CT series
    seed: int = 0  # everything is drawn from this seed

    def check(self) -> None:
        """Refuse sizes the phantom cannot be drawn at."""
        if not 1 <= self.patients <= 9999:
            raise ConfigError(f"--patients: {self.patients} is outside 1..9999", hint="e.g. --patients 3")
        if self.size < 32:
            raise ConfigError(f"--size: {self.size} px is too small for nodules", hint="use --size 64 or more")
        if self.slices < 8:
            raise ConfigError(f"--slices: {self.slices} is too few to hold a nodule", hint="use --slices 8 or more")


@dataclass
class SynthLidcResult:
    """Where the tree went and what it holds."""

    root: Path  # the manifest-<epoch> folder: pass it as --root
    answer_key: Path
    patients: int = 0
    slices: int = 0
    samples: int = 0
    positives: int = 0
    files: list[Path] = field(default_factory=list)


def circle_outline(centre: tuple[float, float], radius_px: float) -> np.ndarray:
    """An LIDC-style closed edge map: integer (row, col) boundary points of a circle, first point repeated."""
    n = max(8, math.ceil(2 * math.pi * radius_px * 1.5))
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    points = np.rint(np.stack([centre[0] + radius_px * np.sin(t), centre[1] + radius_px * np.cos(t)], axis=1))
    keep = np.ones(len(points), dtype=bool)
    keep[1:] = np.any(points[1:] != points[:-1], axis=1)  # drop repeats of the previous point
    points = points[keep]
    return np.concatenate([points, points[:1]]).astype(np.float64)  # (K + 1, 2) closed like LIDC


def _uid(seed: int, *parts: object) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["ppi-synth-lidc", str(seed), *map(str, parts)])


@dataclass
class _Nodule:
    centre: tuple[float, float, float]  # (row px, col px, z mm)
    radius_mm: float
    hu: float
    cavity_mm: float = 0.0


def _phantom(rng: np.random.Generator, size: int) -> np.ndarray:
    """A 2D chest: soft-tissue ellipse, two lungs, air outside. (size, size) float32 HU."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size  # (size, size) in [0, 1)
    image = np.full((size, size), -1024.0, np.float32)
    image[((xx - 0.5) / 0.46) ** 2 + ((yy - 0.5) / 0.36) ** 2 <= 1] = 40.0
    for cx in (0.31, 0.69):
        image[((xx - cx) / 0.16) ** 2 + ((yy - 0.5) / 0.26) ** 2 <= 1] = -850.0
    return image


def _place_nodules(rng: np.random.Generator, size: int, spacing: float, z: np.ndarray) -> list[_Nodule]:
    """1-3 outlined nodules inside the lungs whose padded 3D boxes do not touch (so they stay separate lesions)."""
    nodules: list[_Nodule] = []
    boxes: list[tuple[float, ...]] = []
    target = int(rng.integers(1, 4))
    for _ in range(200):
        if len(nodules) == target:
            break
        radius = float(rng.uniform(max(3.0, 1.6 * spacing), max(9.0, 3.5 * spacing)))
        lung = 0.31 if rng.random() < 0.5 else 0.69
        row = size * (0.5 + rng.uniform(-0.15, 0.15))
        col = size * (lung + rng.uniform(-0.07, 0.07))
        zc = float(rng.uniform(z[0] + radius, z[-1] - radius)) if z[-1] - z[0] > 2 * radius else float(z.mean())
        pad = 1.3 * radius / spacing + 4  # room for the readers' jitter
        box = (row - pad, row + pad, col - pad, col + pad, zc - radius - 1, zc + radius + 1)
        if any(boxes_overlap(box, b) for b in boxes):
            continue
        cavity = radius / 2.5 if radius >= 7 and rng.random() < 0.5 else 0.0
        nodules.append(_Nodule((row, col, zc), radius, float(rng.uniform(-500, 120)), cavity))
        boxes.append(box)
    return nodules


def _readers_outlines(rng: np.random.Generator, nodule: _Nodule, index: int, spacing: float, z: np.ndarray,
                      sops: list[str]) -> tuple[list[Annotation], list[tuple[int, tuple[int, ...], float]]]:
    """Four jittered readers' outlines of one nodule, and (slice, readers, radius mm) per outlined slice."""
    conspicuity = min(1.0, (nodule.radius_mm - 2.5) / 6.0) * min(1.0, (nodule.hu + 650) / 600)
    p_detect = 0.3 + 0.65 * max(conspicuity, 0.0)
    annotations: list[Annotation] = []
    per_slice: dict[int, list[int]] = {}
    for reader in range(_READERS):
        if rng.random() > p_detect:
            continue  # this reader missed the nodule
        min_radius_px = rng.uniform(1.0, 2.2)  # the smallest cross-section this reader bothers to outline
        scale, shift = rng.normal(1.0, 0.06), rng.normal(0.0, 0.4, size=2)
        rois = []
        for k, zk in enumerate(z):
            dz = abs(zk - nodule.centre[2])
            if dz >= nodule.radius_mm:
                continue
            r_px = math.sqrt(nodule.radius_mm**2 - dz**2) / spacing
            if r_px < min_radius_px:
                continue
            centre = (nodule.centre[0] + shift[0], nodule.centre[1] + shift[1])
            rois.append(Roi(float(zk), sops[k], True, circle_outline(centre, r_px * scale + 0.5)))
            per_slice.setdefault(k, []).append(reader)
            if reader == 0 and nodule.cavity_mm > dz:
                hole = math.sqrt(nodule.cavity_mm**2 - dz**2) / spacing
                if hole >= 1.0:
                    rois.append(Roi(float(zk), sops[k], False, circle_outline(nodule.centre[:2], hole)))
        if rois:
            annotations.append(Annotation(reader, f"Nodule {index + 1:03d}", tuple(rois)))
    slices = [(k, tuple(readers), math.sqrt(max(nodule.radius_mm**2 - (z[k] - nodule.centre[2]) ** 2, 0)))
              for k, readers in sorted(per_slice.items())]
    return annotations, slices


def _paint(image: np.ndarray, nodule: _Nodule, z: float, spacing: float) -> None:
    dz = abs(z - nodule.centre[2])
    if dz >= nodule.radius_mm:
        return
    r_px = math.sqrt(nodule.radius_mm**2 - dz**2) / spacing
    rr, cc = np.ogrid[: image.shape[0], : image.shape[1]]
    dist2 = (rr - nodule.centre[0]) ** 2 + (cc - nodule.centre[1]) ** 2  # (H, W)
    image[dist2 <= r_px**2] = nodule.hu
    if nodule.cavity_mm > dz:
        image[dist2 <= (nodule.cavity_mm**2 - dz**2) / spacing**2] = -900.0


def synth_lidc(config: SynthLidcConfig) -> SynthLidcResult:
    """Write a synthetic LIDC-IDRI download and its answer key.

    Args:
        config: Output folder, number of patients, image size, slices and seed.

    Returns:
        The `SynthLidcResult`; pass `result.root` to `ppi prepare lidc --root`.

    Example:
        >>> synth_lidc(SynthLidcConfig(out=Path("synth"), patients=2, size=128))
    """
    import pandas as pd

    config.check()
    epoch = 1_600_000_000 + config.seed
    root = config.out / f"manifest-{epoch}"
    result = SynthLidcResult(root=root, answer_key=config.out / "answer_key.csv")
    answers, metadata = [], []
    for p in console.progress(range(1, config.patients + 1), "synthetic patients"):
        rng = np.random.default_rng([config.seed, p])
        patient = f"LIDC-IDRI-{p:04d}"
        study_uid, series_uid = _uid(config.seed, p, "study"), _uid(config.seed, p, "series")
        study_dir = f"01-01-2000-NA-NA-{int(rng.integers(10000, 99999)):05d}"
        series_dir = f"3000566.000000-NA-{int(rng.integers(10000, 99999)):05d}"
        folder = root / "LIDC-IDRI" / patient / study_dir / series_dir
        spacing = float(rng.uniform(300, 380)) / config.size  # a 300-380 mm field of view
        thickness = float(rng.choice([1.25, 2.0, 2.5]))
        z = round(float(rng.uniform(-300, -100)), 2) + thickness * np.arange(config.slices)  # (n,) ascending
        sops = [_uid(config.seed, p, "sop", k) for k in range(config.slices)]
        nodules = _place_nodules(rng, config.size, spacing, z)
        annotations: list[Annotation] = []
        for index, nodule in enumerate(nodules):
            outlines, slices = _readers_outlines(rng, nodule, index, spacing, z, sops)
            annotations.extend(outlines)
            for k, readers, radius in slices:
                answers.append({"patient_id": patient, "series_uid": series_uid, "nodule": index, "z": float(z[k]),
                                "readers": ";".join(map(str, readers)), "n_readers": len(readers),
                                "label": int(len(readers) >= _MIN_READERS), "centre_row": nodule.centre[0],
                                "centre_col": nodule.centre[1], "radius_mm": radius, "pixel_spacing": spacing})
        small = _Nodule((config.size * 0.5, config.size * 0.2, float(z[len(z) // 2])), 1.2, -100.0)
        k_small = len(z) // 2
        for reader in range(2):  # < 3 mm: two readers mark the centre only; preparation drops it
            point = np.array([[round(small.centre[0]), round(small.centre[1])]], np.float64)
            annotations.append(Annotation(reader, "small-1", (Roi(float(z[k_small]), sops[k_small], True, point),)))
        marks = [NonNodule(3, float(z[1]), sops[1], (config.size // 2, config.size // 2))]
        base = _phantom(rng, config.size)
        signed = p % 2 == 0
        for k in range(config.slices):
            image = base.copy()
            for nodule in [*nodules, small]:
                _paint(image, nodule, float(z[k]), spacing)
            image += rng.normal(0, 12, image.shape).astype(np.float32)
            instance = config.slices - k  # instance 1 at the top, as scanners number head-first series
            spec = SliceSpec(patient, study_uid, series_uid, sops[k], instance,
                             (-spacing * config.size / 2, -spacing * config.size / 2, float(z[k])),
                             (spacing, spacing), thickness, signed=signed)
            result.files.append(write_ct_slice(folder / f"1-{instance:03d}.dcm", image, spec))
        xml_name = f"{int(rng.integers(60, 999)):03d}.xml"
        result.files.append(write_reader_xml(folder / xml_name, study_uid, series_uid, annotations,
                                             non_nodules=marks, seed=config.seed + p))
        metadata.append(_metadata_row(series_uid, patient, study_uid, "CT", config.slices,
                                      folder.relative_to(root)))
        if p == 1:
            metadata.append(_write_radiograph(config.seed, root, patient, result))
        result.slices += config.slices
    result.patients = config.patients
    frame = pd.DataFrame(answers, columns=ANSWER_COLUMNS)
    result.samples, result.positives = len(frame), int(frame["label"].sum()) if len(frame) else 0
    write_csv(result.answer_key, frame)
    write_csv(root / "metadata.csv", pd.DataFrame(metadata))
    result.files += [result.answer_key, root / "metadata.csv"]
    return result


def _write_radiograph(seed: int, root: Path, patient: str, result: SynthLidcResult) -> dict[str, object]:
    """A 64×64 CR image and its chest-radiograph read, in a study of its own."""
    study_uid, series_uid = _uid(seed, patient, "cr-study"), _uid(seed, patient, "cr-series")
    folder = root / "LIDC-IDRI" / patient / "01-01-2000-NA-NA-00001" / "1.000000-NA-00001"
    spec = SliceSpec(patient, study_uid, series_uid, _uid(seed, patient, "cr-sop"), 1, (0.0, 0.0, 0.0),
                     (0.2, 0.2), modality="CR", series_number=1)
    result.files.append(write_ct_slice(folder / "1-1.dcm", np.zeros((64, 64), np.float32), spec))
    result.files.append(write_cxr_read_xml(folder / "001.xml", study_uid, series_uid))
    return _metadata_row(series_uid, patient, study_uid, "CR", 1, folder.relative_to(root))


def _metadata_row(series_uid: str, patient: str, study_uid: str, modality: str, n: int, location: Path) -> dict:
    """One row of NBIA's metadata.csv (the columns the Data Retriever writes that matter here)."""
    return {"Series UID": series_uid, "Collection": "LIDC-IDRI", "Subject ID": patient, "Study UID": study_uid,
            "Study Date": "01-01-2000", "Modality": modality, "Manufacturer": "ppi synthetic",
            "Number of Images": n, "File Location": f"./{location.as_posix()}"}
