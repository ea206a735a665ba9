# SPDX-License-Identifier: MIT
"""`ppi synth ga`: multi-site OCT volumes with GA lesions, site styles and a planted spurious cue.

What it models (design.md "Synthetic data"):

- retinal layers between an ILM and an RPE surface, with a foveal pit and multiplicative speckle;
- GA as an en-face ellipse spanning neighbouring B-scans where the ellipsoid zone and RPE are lost
  and the choroid below brightens (hypertransmission); its voxels form the per-B-scan lesion mask;
- per-site styles: gain, additive noise, blur, and site D's narrower lateral field;
- a planted spurious cue (`shortcut`) whose link to the label differs by site, so a model can
  score well in-site by reading it and then fail at the other sites:
  - `mark`: a bright square in the top-left corner of every B-scan, as sparse as the lesion (the
    cue PPI's masks cannot tell from the lesion); none at A, weak at B, reversed at C, strong at D;
  - `diffuse` in two forms: `ramp`, a lateral gain ramp over every B-scan (dark on one side,
    bright on the other), and `texture`, faint periodic column stripes; both cover the whole
    image, so no lesion-sized mask removes them (the cue PPI's L_con is built to expose);
    by default strong at D (r = 0.9), half at B, independent of the label at A, reversed at C;
  - `none`: no cue;
  the per-site strength is a correlation r in [−1, 1]: P(cue | GA) = (1 + r) / 2 and
  P(cue | no GA) = (1 − r) / 2, so the cue is independent of the label at r = 0;
- a lesion-difficulty knob (`lesion_strength`, 1 = the default contrast): the depth of the EZ/RPE
  loss and of the hypertransmission scale with it, so a benchmark can make the lesion harder to
  read than the cue;
- each site in another real format: A Duke `.mat`, B DICOM OPT (frames stored out of order),
  C NIfTI, D a folder of PNG B-scans.

Outputs: the volumes, `masks/<name>.npy` (uint8 (n, H, W), the volume's own geometry),
`manifest.csv` (the input of `ppi prepare ga`), `answer_key.csv` (label, cue present, its form and,
for the mark, its box; lesion extent per volume) and `site_configs/` matching the generated
geometry (site D: edge-repeat to full width).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ppi_cli import console
from ppi_cli.data.oct.writers import write_bscan_folder, write_dicom_opt, write_duke_mat, write_nifti
from ppi_cli.data.synth.cues import (
    DIFFUSE_FORMS,
    SHORTCUTS,
    assign_cues,
    box_text,
    check_cue_options,
    correlation_shares,
    cue_form,
    diffuse_profile,
)
from ppi_cli.errors import ConfigError
from ppi_cli.files import save_npy, write_csv, write_text

__all__ = ["SiteStyle", "SITE_STYLES", "SHORTCUTS", "DIFFUSE_FORMS", "DIFFUSE_CORRELATION", "SynthGaConfig",
           "SynthGaResult", "cue_shares", "synth_ga", "synth_volume"]

# Per-site cue-label correlation of the diffuse benchmark: strong where a study would train (D),
# half at B, independent of the label at A, reversed at C.
DIFFUSE_CORRELATION = {"A": 0.0, "B": 0.5, "C": -0.9, "D": 0.9}
RAMP_GAIN = 0.45  # the ramp multiplies a B-scan by 1 - g at one edge and 1 + g at the other
TEXTURE_GAIN = 0.3  # the stripes multiply columns by 1 + g and 1 - g in turn
TEXTURE_CYCLES = 8  # stripes per full-width B-scan: four columns a cycle at 32 px, the demo's cached width


@dataclass(frozen=True)
class SiteStyle:
    """How one synthetic site looks and how its scanner mark relates to the label."""

    site: str
    file_format: str  # duke-mat | dicom | nifti | png-folder
    gain: float  # overall brightness factor
    noise: float  # std of additive Gaussian noise, on [0, 1] intensities
    blur: float  # in-plane Gaussian blur sigma in pixels (0: none)
    width_fraction: float  # lateral field of view relative to the full width (site D: narrower)
    cue_given_ga: float  # share of GA volumes carrying the scanner mark
    cue_given_no_ga: float  # share of non-GA volumes carrying it


SITE_STYLES: dict[str, SiteStyle] = {
    "A": SiteStyle("A", "duke-mat", gain=1.00, noise=0.05, blur=0.0, width_fraction=1.0,
                   cue_given_ga=0.5, cue_given_no_ga=0.5),
    "B": SiteStyle("B", "dicom", gain=0.85, noise=0.08, blur=0.7, width_fraction=1.0,
                   cue_given_ga=0.6, cue_given_no_ga=0.4),
    "C": SiteStyle("C", "nifti", gain=1.15, noise=0.04, blur=0.4, width_fraction=1.0,
                   cue_given_ga=0.3, cue_given_no_ga=0.7),
    "D": SiteStyle("D", "png-folder", gain=0.95, noise=0.06, blur=0.0, width_fraction=0.75,
                   cue_given_ga=0.9, cue_given_no_ga=0.1),
}
_SUFFIX = {"duke-mat": ".mat", "dicom": ".dcm", "nifti": ".nii.gz", "png-folder": ""}

# Reflectivity through the retina, by fraction of the ILM->RPE distance (NFL, GCL/IPL, INL, OPL, ONL,
# ELM gap, ellipsoid zone, interdigitation), and below the RPE top in units of the image height.
_INNER = ([-1.0, 0.0, 0.005, 0.12, 0.13, 0.35, 0.36, 0.45, 0.46, 0.53, 0.54, 0.85, 0.86, 0.90, 0.91, 0.95, 0.96, 1.0],
          [0.04, 0.04, 0.70, 0.70, 0.45, 0.45, 0.18, 0.18, 0.50, 0.50, 0.14, 0.14, 0.30, 0.30, 0.80, 0.80, 0.35, 0.35])
_OUTER = ([0.0, 0.025, 0.03, 0.16, 0.20, 1.0], [0.95, 0.95, 0.45, 0.25, 0.08, 0.06])
_EZ_FRACTION = 0.85  # where photoreceptor loss starts, as a fraction of ILM->RPE
_HYPER_DEPTH = 0.20  # how deep below the RPE hypertransmission reaches (fraction of the height)


@dataclass(frozen=True)
class SynthGaConfig:
    """Options of `ppi synth ga`."""

    out: Path
    sites: tuple[str, ...] = ("A", "B", "C", "D")
    per_site: int = 16  # volumes per site, half with GA
    n_bscans: int = 32  # B-scans per volume
    size: tuple[int, int] = (128, 256)  # (H, W) of a full-width B-scan
    seed: int = 0
    shortcut: str = "mark"  # none | mark | diffuse
    diffuse: str = "ramp"  # the form of a diffuse cue: ramp | texture
    correlation: dict[str, float] | None = None  # site -> cue-label r; None: the shortcut's defaults
    lesion_strength: float = 1.0  # 1: the default lesion contrast; smaller is harder to see

    def cue_form(self) -> str:
        """What the planted cue is: `none`, `mark`, `ramp` or `texture`."""
        return cue_form(self.shortcut, self.diffuse)


def cue_shares(style: SiteStyle, cfg: SynthGaConfig) -> tuple[float, float]:
    """(P(cue | GA), P(cue | no GA)) at a site: the correlation asked for, else the shortcut's default."""
    if cfg.shortcut == "none":
        return 0.0, 0.0
    r = (cfg.correlation or {}).get(style.site)
    if r is None and cfg.shortcut == "diffuse":
        r = DIFFUSE_CORRELATION.get(style.site, 0.0)
    if r is None:
        return style.cue_given_ga, style.cue_given_no_ga
    return correlation_shares(r)


@dataclass
class SynthGaResult:
    """Where the data went and how many volumes each site got."""

    out: Path
    manifest: Path
    answer_key: Path
    site_configs: Path
    per_site: dict[str, dict[str, int]] = field(default_factory=dict)  # site -> volumes, positives, cue

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for `--json`)."""
        return {"out": str(self.out), "manifest": str(self.manifest), "answer_key": str(self.answer_key),
                "site_configs": str(self.site_configs), "per_site": self.per_site}


def synth_volume(rng: np.random.Generator, style: SiteStyle, n_bscans: int, size: tuple[int, int], ga: bool,
                 cue: bool, *, form: str = "mark",
                 lesion_strength: float = 1.0) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One synthetic OCT volume of a site.

    Args:
        form: The cue drawn when `cue`: `mark`, `ramp`, `texture` (or `none`).
        lesion_strength: Scales how much EZ, RPE and hypertransmission change inside GA (1: default).

    Returns:
        uint8 volume `(n, H, W_site)`, uint8 0/1 lesion mask of the same shape, and facts for the answer key.
    """
    from scipy.ndimage import gaussian_filter

    height, full_width = size
    x = (np.arange(full_width, dtype=np.float32) + 0.5) / full_width  # lateral position in [0, 1]
    b = (np.arange(n_bscans, dtype=np.float32) + 0.5) / n_bscans  # B-scan position in [0, 1]
    tilt, curve = rng.uniform(-0.04, 0.04), rng.uniform(0.05, 0.12)
    rpe = height * (0.62 + tilt * (x - 0.5)[None, :] + curve * (x - 0.5)[None, :] ** 2
                    + 0.03 * (b - 0.5)[:, None] ** 2)  # (n, W) RPE top, in rows
    fovea_x, fovea_b = 0.5 + rng.uniform(-0.05, 0.05), 0.5 + rng.uniform(-0.05, 0.05)
    pit = np.exp(-0.5 * (((x[None, :] - fovea_x) / 0.12) ** 2 + ((b[:, None] - fovea_b) / 0.15) ** 2))
    thickness = height * 0.28 * (1.0 - 0.6 * pit)  # (n, W) ILM->RPE, thinner at the fovea
    lesion = np.zeros((n_bscans, full_width), np.float32)
    facts: dict[str, Any] = {}
    if ga:
        centre_b, centre_x = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)
        shortest = max(1.6 / n_bscans, 0.08)  # radius of at least 1.6 B-scans: the lesion spans three or more
        radius_b = rng.uniform(shortest, max(0.2, 1.25 * shortest))
        radius_x = rng.uniform(0.06, 0.12)
        ellipse = ((b[:, None] - centre_b) / radius_b) ** 2 + ((x[None, :] - centre_x) / radius_x) ** 2
        lesion = np.clip((1.15 - ellipse) / 0.3, 0.0, 1.0).astype(np.float32)  # 1 inside, soft rim
    rows = np.arange(height, dtype=np.float32)[None, :, None]  # (1, H, 1)
    fraction = (rows - (rpe - thickness)[:, None, :]) / thickness[:, None, :]  # (n, H, W) ILM = 0, RPE = 1
    below = (rows - rpe[:, None, :]) / height  # (n, H, W) depth below the RPE top
    loss = lesion[:, None, :]  # (n, 1, W), where the tissue is lost
    strength = max(float(lesion_strength), 0.0)  # how much is lost: 1 is the default lesion
    inner = np.interp(fraction, *_INNER).astype(np.float32)
    ez_loss, rpe_loss = min(0.75 * strength, 1.0), min(0.7 * strength, 1.0)
    inner = np.where(fraction >= _EZ_FRACTION, inner * (1.0 - ez_loss * loss), inner)  # ellipsoid zone lost
    outer = np.interp(below, *_OUTER).astype(np.float32)
    outer = np.where(below < 0.025, outer * (1.0 - rpe_loss * loss), outer)  # RPE lost
    outer = outer + 0.55 * strength * loss * np.exp(-below / 0.12) * (below < _HYPER_DEPTH)  # hypertransmission
    image = np.where(fraction < 1.0, inner, outer)
    if cue and form in DIFFUSE_FORMS:
        image = image * _diffuse_gain(form, x)[None, None, :]  # over the whole field, before speckle and noise
    image *= rng.standard_gamma(3.0, image.shape, dtype=np.float32) / 3.0  # speckle
    image += rng.standard_normal(image.shape, dtype=np.float32) * style.noise
    if style.blur > 0:
        image = gaussian_filter(image, sigma=(0, style.blur, style.blur))
    brightness = style.gain * rng.uniform(0.9, 1.1) * 210.0
    volume = np.clip(np.rint(image * brightness), 0, 255).astype(np.uint8)
    mask = ((loss > 0.5) & (fraction >= _EZ_FRACTION) & (below <= _HYPER_DEPTH)).astype(np.uint8)
    width = max(8, int(round(full_width * style.width_fraction)))
    start = (full_width - width) // 2  # a narrower scan sees the central part of the field
    volume = np.ascontiguousarray(volume[:, :, start:start + width])
    mask = np.ascontiguousarray(mask[:, :, start:start + width])
    if cue and form == "mark":
        side = max(3, min(height, width) // 16)
        volume[:, 2:2 + side, 2:2 + side] = 255  # the scanner mark, on every B-scan
        facts.update(cue_box=box_text((2, 2 + side), (2, 2 + side)))  # rows, columns of the B-scan as written
    lesion_scans = np.flatnonzero(mask.any(axis=(1, 2)))
    facts.update(width=width, lesion_voxels=int(mask.sum()),
                 lesion_first_bscan=int(lesion_scans[0]) if lesion_scans.size else -1,
                 lesion_last_bscan=int(lesion_scans[-1]) if lesion_scans.size else -1)
    return volume, mask, facts


def synth_ga(cfg: SynthGaConfig) -> SynthGaResult:
    """Generate the multi-site GA data set described in the module docstring.

    Example:
        >>> synth_ga(SynthGaConfig(Path("synth/ga"), per_site=12, n_bscans=16, size=(64, 128)))

    Raises:
        ConfigError: An unknown site or a size too small to draw retinal layers in.
    """
    import pandas as pd

    unknown = [s for s in cfg.sites if s not in SITE_STYLES]
    if unknown:
        raise ConfigError(f"--sites: no synthetic style for {', '.join(unknown)}",
                          hint=f"choose from {', '.join(SITE_STYLES)}")
    height, width = cfg.size
    if height < 16 or width < 16 or cfg.n_bscans < 1 or cfg.per_site < 1:
        raise ConfigError(f"synthetic volumes need B-scans of at least 16x16 and one volume, got {height}x{width}",
                          hint="use e.g. --size 64x128")
    rng = np.random.default_rng(cfg.seed)
    spacing = (6.0 / cfg.n_bscans, 2.0 / height, 6.0 / width)  # mm: a 6 x 6 mm scan, 2 mm deep
    check_cue_options(cfg.shortcut, cfg.diffuse)
    bad = {s: r for s, r in (cfg.correlation or {}).items() if s not in cfg.sites or not -1.0 <= r <= 1.0}
    if bad:
        raise ConfigError(f"--correlation: {', '.join(f'{s}={r}' for s, r in bad.items())} is not a generated site "
                          "with r in [-1, 1]", hint="e.g. --correlation D=0.9,C=-0.9,A=0")
    form = cfg.cue_form()
    plan = [(site, k) + flags for site in cfg.sites
            for k, flags in enumerate(_site_plan(rng, cue_shares(SITE_STYLES[site], cfg), cfg.per_site))]
    manifest, answers = [], []
    for site, k, ga, cue in console.progress(plan, "synthetic GA volumes"):
        style = SITE_STYLES[site]
        volume, mask, facts = synth_volume(rng, style, cfg.n_bscans, cfg.size, ga, cue, form=form,
                                           lesion_strength=cfg.lesion_strength)
        name = f"{site}_{k:03d}"
        subject = f"SYN-{site}-{k - (k % 4 == 3):03d}"  # every fourth volume is the fellow eye of the one before
        eye = "OS" if k % 4 == 3 else "OD"
        relative = f"{site}/{name}{_SUFFIX[style.file_format]}"
        _write(cfg.out / relative, style.file_format, volume, spacing, rng, eye, subject)
        mask_relative = f"masks/{name}.npy"
        save_npy(cfg.out / mask_relative, mask)
        cue_box = facts.pop("cue_box", "")
        manifest.append({"path": relative, "subject_id": subject, "eye": eye, "site": site, "label": int(ga),
                         "visit": "baseline", "mask_path": mask_relative,
                         **({"cue_box": cue_box} if form == "mark" else {})})  # kept by prepare: diagnostics
        answers.append({"path": relative, "site": site, "label": int(ga), "cue": int(cue), "cue_form": form,
                        "cue_box": cue_box, "format": style.file_format, "mask_path": mask_relative, **facts})
    sites_dir = _write_site_configs(cfg, spacing)
    answer_key = write_csv(cfg.out / "answer_key.csv", pd.DataFrame(answers))
    manifest_path = write_csv(cfg.out / "manifest.csv", pd.DataFrame(manifest))  # last: marks a complete set
    per_site = {s: {"volumes": sum(a["site"] == s for a in answers),
                    "positives": sum(a["label"] for a in answers if a["site"] == s),
                    "cue": sum(a["cue"] for a in answers if a["site"] == s)} for s in cfg.sites}
    return SynthGaResult(cfg.out, manifest_path, answer_key, sites_dir, per_site)


def _diffuse_gain(form: str, x: np.ndarray) -> np.ndarray:
    """The per-column gain of a diffuse cue over lateral positions `x` in [0, 1] of the full field."""
    gain = RAMP_GAIN if form == "ramp" else TEXTURE_GAIN
    return (1.0 + gain * diffuse_profile(form, x, TEXTURE_CYCLES)).astype(np.float32)


def _site_plan(rng: np.random.Generator, shares: tuple[float, float], count: int) -> list[tuple[bool, bool]]:
    """Labels (half GA) and cues in exactly the site's proportions (P(cue | GA), P(cue | no GA)), in random order."""
    labels = np.zeros(count, dtype=bool)
    labels[: count // 2] = True
    cue = assign_cues(rng, labels, shares)
    order = rng.permutation(count)
    return [(bool(labels[i]), bool(cue[i])) for i in order]


def _write(path: Path, file_format: str, volume: np.ndarray, spacing: Sequence[float], rng: np.random.Generator,
           eye: str, subject: str) -> None:
    if file_format == "duke-mat":
        write_duke_mat(path, volume)
    elif file_format == "dicom":
        write_dicom_opt(path, volume, spacing, stored_order=rng.permutation(volume.shape[0]),
                        laterality="R" if eye == "OD" else "L", patient_id=subject)
    elif file_format == "nifti":
        write_nifti(path, volume, spacing)
    else:
        if path.is_dir():
            shutil.rmtree(path)  # a previous run with more B-scans must not leave extra files behind
        write_bscan_folder(path, volume)


def _write_site_configs(cfg: SynthGaConfig, spacing: Sequence[float]) -> Path:
    folder = cfg.out / "site_configs"
    height, width = cfg.size
    for site in cfg.sites:
        style = SITE_STYLES[site]
        narrow = style.width_fraction < 1.0
        write_text(folder / f"{site}.yaml", "\n".join([
            "# Site config written by `ppi synth ga` (schema: docs/prepare-ga.md#site-configs).",
            f"site: {site}",
            f'display_name: "Synthetic site {site}"',
            "geometry:",
            f"  n_bscans: {cfg.n_bscans}",
            f"  height: {height}",
            f"  width: {width}",
            f"  spacing_mm: [{spacing[0]:.6g}, {spacing[1]:.6g}, {spacing[2]:.6g}]",
            "padding:",
            f"  rule: {'edge-repeat' if narrow else 'none'}",
            f"  target_width: {width if narrow else 'null'}",
            "intensity:",
            "  method: percentile",
            "  low_percentile: 0.5",
            "  high_percentile: 99.5",
            f'notes: "Synthetic {style.file_format} volumes, gain {style.gain}, noise {style.noise}, blur '
            f'{style.blur}{", narrower B-scans" if narrow else ""}."',
            "",
        ]))
    return folder
