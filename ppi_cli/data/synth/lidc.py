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

A shortcut benchmark (the cues of `ppi synth ga`, data/synth/cues.py) plants a spurious cue per CT
slice: a slice is positive when a sample on it has the consensus label 1, and exactly
round(P * n) of the positive and of the negative slices that hold samples carry the cue,
P(cue | positive) = (1 + r) / 2 and P(cue | negative) = (1 - r) / 2 (slices without samples never
do). `diffuse` adds a lateral HU ramp (`ramp`) or periodic column stripes (`texture`) to the whole
slice, strong enough to show in the lung window of a prepared crop; `mark` paints a small bright
square just above every outlined nodule of the slice, so it falls inside that nodule's crop.
The cue has its own random stream, and `lesion_strength` (the nodule's contrast against the lung)
changes no draw, so the readers, the labels and the rest of the pixels stay those of the same
seed without a cue. `reader_agreement` ranks the readers (1) instead of drawing them (0), so the
label reads from the slice; it keeps the nodules and changes the outlines, the labels and the noise
drawn after them. Left unset it is 1 with a planted cue and 0 without: where the readers draw
independently a network reads the label from the slice at about 0.67 AUC, so a cue is most of the
in-cohort signal and no model that stops reading it can keep the in-cohort AUC (docs/ppi.md, "The
LIDC benchmark's label reads from the slice").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ppi_cli import console
from ppi_cli.data.lidc.lesions import boxes_overlap
from ppi_cli.data.lidc.reader_xml import Annotation, Roi
from ppi_cli.data.synth.cues import (
    DIFFUSE_FORMS,
    assign_cues,
    box_text,
    check_cue_options,
    correlation_shares,
    cue_form,
    diffuse_profile,
)
from ppi_cli.data.synth.lidc_files import NonNodule, SliceSpec, write_ct_slice, write_cxr_read_xml, write_reader_xml
from ppi_cli.errors import ConfigError
from ppi_cli.files import write_csv

__all__ = ["SynthLidcConfig", "SynthLidcResult", "synth_lidc", "circle_outline", "ANSWER_COLUMNS"]

ANSWER_COLUMNS = ["patient_id", "series_uid", "nodule", "z", "readers", "n_readers", "label", "centre_row",
                  "centre_col", "radius_mm", "pixel_spacing", "cue", "cue_form", "cue_box"]
_READERS = 4
_MIN_READERS = 3  # the answer key's label threshold: the prepare default
_LUNG_HU = -850.0
DEFAULT_CORRELATION = 0.9  # the cue-label r of a shortcut when --correlation is not given
# The diffuse cues, in HU added to a slice: they must survive the lung window ([-1000, 400] HU) and
# a crop of about a quarter of the field (90 mm of a 300-380 mm field), where the ramp still
# changes by about 160 HU; the lungs (-850 HU) stay inside the window.
RAMP_HU = 300.0  # the ramp adds -300 HU at the left edge of the field and +300 HU at the right
TEXTURE_HU = 150.0  # the stripes add +150 and -150 HU in turn
TEXTURE_CYCLES = 16  # stripe pairs across the field: about 21 mm each, four in a crop; 4 px a pair at --size 64
MARK_HU = 1000.0  # the mark: brighter than anything else in the phantom
MARK_MM = 4.0  # the mark's side (at least 2 px)
MARK_GAP_MM = 2.0  # between the nodule's 3D radius and the mark's lower edge


@dataclass(frozen=True)
class SynthLidcConfig:
    """Options of `ppi synth lidc`."""

    out: Path  # folder that receives manifest-<epoch>/
    patients: int = 3  # one CT series each
    size: int = 256  # rows = columns of every CT slice
    slices: int = 24  # slices per CT series
    seed: int = 0  # everything is drawn from this seed
    shortcut: str = "none"  # the planted cue: none | mark | diffuse
    diffuse: str = "ramp"  # the form of a diffuse cue: ramp | texture
    correlation: float | None = None  # the cue-label r; None: DEFAULT_CORRELATION
    lesion_strength: float = 1.0  # the nodules' contrast against the lung, 1 = the default
    # 0: independent readers; 1: ranked, the label read from the slice; None: 1 with a cue, 0 without
    reader_agreement: float | None = None

    def cue_form(self) -> str:
        """What the planted cue is: `none`, `mark`, `ramp` or `texture`."""
        return cue_form(self.shortcut, self.diffuse)

    def agreement(self) -> float:
        """The readers' agreement drawn with: `reader_agreement`, or 1 with a planted cue and 0 without."""
        if self.reader_agreement is not None:
            return self.reader_agreement
        return 0.0 if self.shortcut == "none" else 1.0

    def check(self) -> None:
        """Refuse sizes the phantom cannot be drawn at, and unknown cues."""
        if not 1 <= self.patients <= 9999:
            raise ConfigError(f"--patients: {self.patients} is outside 1..9999", hint="e.g. --patients 3")
        if self.size < 32:
            raise ConfigError(f"--size: {self.size} px is too small for nodules", hint="use --size 64 or more")
        if self.slices < 8:
            raise ConfigError(f"--slices: {self.slices} is too few to hold a nodule", hint="use --slices 8 or more")
        check_cue_options(self.shortcut, self.diffuse)
        if self.correlation is not None and not -1.0 <= self.correlation <= 1.0:
            raise ConfigError(f"--correlation: {self.correlation} is outside [-1, 1]", hint="e.g. --correlation 0.9")
        if not self.lesion_strength >= 0:
            raise ConfigError(f"--lesion-strength: {self.lesion_strength} is negative",
                              hint="e.g. --lesion-strength 0.5")
        if self.reader_agreement is not None and not 0.0 <= self.reader_agreement <= 1.0:
            raise ConfigError(f"--reader-agreement: {self.reader_agreement} is outside [0, 1]",
                              hint="e.g. --reader-agreement 1")


@dataclass
class SynthLidcResult:
    """Where the tree went and what it holds."""

    root: Path  # the manifest-<epoch> folder: pass it as --root
    answer_key: Path
    patients: int = 0
    slices: int = 0
    samples: int = 0
    positives: int = 0
    cued: int = 0  # samples whose slice carries the cue
    # Per sample, P(cue | label 1) and P(cue | label 0): a negative sample on a slice with a positive one
    # shares its cue, so these drift from the slice-level (1 + r) / 2 and (1 - r) / 2 where nodules share slices.
    cue_given_positive: float = 0.0
    cue_given_negative: float = 0.0
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
        image[((xx - cx) / 0.16) ** 2 + ((yy - 0.5) / 0.26) ** 2 <= 1] = _LUNG_HU
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


def _ranked(draw: float, rank: float, agreement: float) -> float:
    """A reader's draw pulled toward its rank's fixed value: the draw at agreement 0, the rank's value at 1."""
    return draw if agreement == 0.0 else (1.0 - agreement) * draw + agreement * rank


def _readers_outlines(rng: np.random.Generator, nodule: _Nodule, index: int, spacing: float, z: np.ndarray,
                      sops: list[str], agreement: float = 0.0,
                      ) -> tuple[list[Annotation], list[tuple[int, tuple[int, ...], float]]]:
    """Four jittered readers' outlines of one nodule, and (slice, readers, radius mm) per outlined slice.

    Each reader draws whether it misses the nodule and the smallest cross-section it outlines. With
    `agreement` 1 those draws are replaced by fixed values ranked by reader (reader 0 the most thorough),
    so how many readers outline a slice, and so its label, follows from the nodule's size and contrast
    and the cross-section's size alone; in between, each draw is blended with its rank's value.
    """
    conspicuity = min(1.0, (nodule.radius_mm - 2.5) / 6.0) * min(1.0, (nodule.hu + 650) / 600)
    p_detect = 0.3 + 0.65 * max(conspicuity, 0.0)
    annotations: list[Annotation] = []
    per_slice: dict[int, list[int]] = {}
    for reader in range(_READERS):
        quantile = (reader + 0.5) / _READERS
        if _ranked(float(rng.random()), quantile, agreement) > p_detect:
            continue  # this reader missed the nodule
        # the smallest cross-section this reader bothers to outline, 1.0-2.2 px
        min_radius_px = _ranked(float(rng.uniform(1.0, 2.2)), 1.0 + 1.2 * quantile, agreement)
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


def _paint(image: np.ndarray, nodule: _Nodule, z: float, spacing: float, strength: float = 1.0) -> None:
    """Paint a nodule's cross-section at z; `strength` scales its contrast against the lung (1: its own HU)."""
    dz = abs(z - nodule.centre[2])
    if dz >= nodule.radius_mm:
        return
    r_px = math.sqrt(nodule.radius_mm**2 - dz**2) / spacing
    rr, cc = np.ogrid[: image.shape[0], : image.shape[1]]
    dist2 = (rr - nodule.centre[0]) ** 2 + (cc - nodule.centre[1]) ** 2  # (H, W)
    image[dist2 <= r_px**2] = nodule.hu if strength == 1.0 else _LUNG_HU + strength * (nodule.hu - _LUNG_HU)
    if nodule.cavity_mm > dz:
        image[dist2 <= (nodule.cavity_mm**2 - dz**2) / spacing**2] = -900.0


def synth_lidc(config: SynthLidcConfig) -> SynthLidcResult:
    """Write a synthetic LIDC-IDRI download and its answer key.

    Args:
        config: Output folder, number of patients, image size, slices, seed and the planted cue.

    Returns:
        The `SynthLidcResult`; pass `result.root` to `ppi prepare lidc --root`.

    Example:
        >>> synth_lidc(SynthLidcConfig(out=Path("synth"), patients=2, size=128))
        >>> synth_lidc(SynthLidcConfig(out=Path("synth"), patients=40, size=128, shortcut="diffuse", correlation=0.9))
    """
    import pandas as pd

    config.check()
    epoch = 1_600_000_000 + config.seed
    root = config.out / f"manifest-{epoch}"
    result = SynthLidcResult(root=root, answer_key=config.out / "answer_key.csv")
    series = [_draw_series(config, root, p) for p in range(1, config.patients + 1)]  # outlines and labels first
    cues = _plan_cues(config, series)  # which slices carry the cue needs every slice's label
    answers, metadata = [], []
    for drawn, cued in console.progress(list(zip(series, cues, strict=True)), "synthetic patients"):
        metadata += _write_series(config, root, drawn, cued, result)
        for row in drawn.answers:
            k, box = row.pop("_slice"), row.pop("_mark")
            row.update(cue=int(cued[k]), cue_form=config.cue_form(),
                       cue_box=box_text(*box) if cued[k] and config.shortcut == "mark" else "")
        answers += drawn.answers
    result.patients = config.patients
    frame = pd.DataFrame(answers, columns=ANSWER_COLUMNS)
    result.samples, result.positives = len(frame), int(frame["label"].sum()) if len(frame) else 0
    result.cued = int(frame["cue"].sum()) if len(frame) else 0
    positive = frame["label"] == 1
    result.cue_given_positive = float(frame.loc[positive, "cue"].mean()) if positive.any() else 0.0
    result.cue_given_negative = float(frame.loc[~positive, "cue"].mean()) if (~positive).any() else 0.0
    write_csv(result.answer_key, frame)
    write_csv(root / "metadata.csv", pd.DataFrame(metadata))
    result.files += [result.answer_key, root / "metadata.csv"]
    return result


@dataclass
class _Series:
    """One patient's CT series drawn up to its readers' outlines; its slices are written after the cue plan."""

    p: int  # the patient number, from 1
    rng: np.random.Generator  # the patient's stream, which the slices go on drawing from
    patient: str
    study_uid: str
    series_uid: str
    folder: Path
    spacing: float
    thickness: float
    z: np.ndarray  # (slices,) mm, ascending
    sops: list[str]
    nodules: list[_Nodule]  # the outlined ones, then the < 3 mm one
    annotations: list[Annotation]
    answers: list[dict]  # answer-key rows, with `_slice` (the slice index) and `_mark` (the nodule's mark box)


def _draw_series(config: SynthLidcConfig, root: Path, p: int) -> _Series:
    """Patient p's series up to the outlines: geometry, nodules, readers and answer-key rows."""
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
    answers = []
    for index, nodule in enumerate(nodules):
        outlines, slices = _readers_outlines(rng, nodule, index, spacing, z, sops, config.agreement())
        annotations.extend(outlines)
        mark = _mark_box(nodule, spacing, config.size)
        for k, readers, radius in slices:
            answers.append({"patient_id": patient, "series_uid": series_uid, "nodule": index, "z": float(z[k]),
                            "readers": ";".join(map(str, readers)), "n_readers": len(readers),
                            "label": int(len(readers) >= _MIN_READERS), "centre_row": nodule.centre[0],
                            "centre_col": nodule.centre[1], "radius_mm": radius, "pixel_spacing": spacing,
                            "_slice": k, "_mark": mark})
    small = _Nodule((config.size * 0.5, config.size * 0.2, float(z[len(z) // 2])), 1.2, -100.0)
    k_small = len(z) // 2
    for reader in range(2):  # < 3 mm: two readers mark the centre only; preparation drops it
        point = np.array([[round(small.centre[0]), round(small.centre[1])]], np.float64)
        annotations.append(Annotation(reader, "small-1", (Roi(float(z[k_small]), sops[k_small], True, point),)))
    return _Series(p, rng, patient, study_uid, series_uid, folder, spacing, thickness, z, sops, [*nodules, small],
                   annotations, answers)


def _plan_cues(config: SynthLidcConfig, series: list[_Series]) -> list[np.ndarray]:
    """Per series, (slices,) bool: which slices carry the cue (module docstring); all False without a shortcut."""
    cues = [np.zeros(config.slices, dtype=bool) for _ in series]
    if config.shortcut == "none":
        return cues
    positive: dict[tuple[int, int], bool] = {}  # (series, slice) -> a sample on it has label 1
    for i, drawn in enumerate(series):
        for row in drawn.answers:
            positive[i, row["_slice"]] = positive.get((i, row["_slice"]), False) or bool(row["label"])
    held = sorted(positive)
    r = DEFAULT_CORRELATION if config.correlation is None else config.correlation
    # Patients draw from [seed, p] with p >= 1, so [seed, 0] is a stream of the cue's own: the rest stays as it was.
    chosen = assign_cues(np.random.default_rng([config.seed, 0]), np.array([positive[h] for h in held], dtype=bool),
                         correlation_shares(r))
    for (i, k), cue in zip(held, chosen, strict=True):
        cues[i][k] = cue
    return cues


def _mark_box(nodule: _Nodule, spacing: float, size: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The mark near a nodule: a MARK_MM square centred above it, clear of the readers' jittered outlines.

    Its lower edge is 1.25 radii + 2 px above the centre (outlines reach about 1.2 radii + 1.5 px),
    so it lies inside the nodule's prepared crop. Returns (rows, columns), end exclusive.
    """
    side = max(2, math.ceil(MARK_MM / spacing))
    top = max(int(math.floor(nodule.centre[0] - 1.25 * nodule.radius_mm / spacing - 2.0)) - side, 0)
    left = min(max(int(round(nodule.centre[1])) - side // 2, 0), size - side)
    return (top, top + side), (left, left + side)


def _write_series(config: SynthLidcConfig, root: Path, drawn: _Series, cued: np.ndarray,
                  result: SynthLidcResult) -> list[dict[str, object]]:
    """Write a series' slices (with the cue where `cued`) and reader XML; its metadata.csv rows."""
    rng, z, spacing, form = drawn.rng, drawn.z, drawn.spacing, config.cue_form()
    marks = [NonNodule(3, float(z[1]), drawn.sops[1], (config.size // 2, config.size // 2))]
    base = _phantom(rng, config.size)
    signed = drawn.p % 2 == 0
    x = (np.arange(config.size, dtype=np.float32) + 0.5) / config.size  # lateral position in [0, 1]
    offset = ((RAMP_HU if form == "ramp" else TEXTURE_HU) * diffuse_profile(form, x, TEXTURE_CYCLES)
              if form in DIFFUSE_FORMS else None)  # (size,) HU
    for k in range(config.slices):
        image = base.copy()
        for nodule in drawn.nodules:
            _paint(image, nodule, float(z[k]), spacing, config.lesion_strength)
        if cued[k] and offset is not None:
            image += offset[None, :]  # over the whole slice, before the noise
        image += rng.normal(0, 12, image.shape).astype(np.float32)
        if cued[k] and form == "mark":
            for row in drawn.answers:
                if row["_slice"] == k:
                    (r0, r1), (c0, c1) = row["_mark"]
                    image[r0:r1, c0:c1] = MARK_HU
        instance = config.slices - k  # instance 1 at the top, as scanners number head-first series
        spec = SliceSpec(drawn.patient, drawn.study_uid, drawn.series_uid, drawn.sops[k], instance,
                         (-spacing * config.size / 2, -spacing * config.size / 2, float(z[k])),
                         (spacing, spacing), drawn.thickness, signed=signed)
        result.files.append(write_ct_slice(drawn.folder / f"1-{instance:03d}.dcm", image, spec))
    xml_name = f"{int(rng.integers(60, 999)):03d}.xml"
    result.files.append(write_reader_xml(drawn.folder / xml_name, drawn.study_uid, drawn.series_uid,
                                         drawn.annotations, non_nodules=marks, seed=config.seed + drawn.p))
    rows = [_metadata_row(drawn.series_uid, drawn.patient, drawn.study_uid, "CT", config.slices,
                          drawn.folder.relative_to(root))]
    if drawn.p == 1:
        rows.append(_write_radiograph(config.seed, root, drawn.patient, result))
    result.slices += config.slices
    return rows


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
