# SPDX-License-Identifier: MIT
"""Planted spurious cues, shared by the synthetic data sets (`ppi synth ga`, `ppi synth lidc`).

A shortcut benchmark plants a cue whose link to the label is one correlation r in [-1, 1]:
P(cue | positive) = (1 + r) / 2 and P(cue | negative) = (1 - r) / 2, so the cue says nothing
about the label at r = 0 and the opposite of it at r < 0. The cue is a `mark` (a small bright
square, as sparse as the lesion) or `diffuse`, over the whole image, in one of two forms: `ramp`
(a lateral gradient) and `texture` (periodic column stripes). Each data set scales the profile
here into its own intensities (a gain on OCT reflectivity, an offset in HU on CT).
"""

from __future__ import annotations

import numpy as np

from ppi_cli.errors import ConfigError

__all__ = ["SHORTCUTS", "DIFFUSE_FORMS", "check_cue_options", "cue_form", "correlation_shares", "diffuse_profile",
           "assign_cues", "box_text"]

SHORTCUTS = ("none", "mark", "diffuse")
DIFFUSE_FORMS = ("ramp", "texture")


def check_cue_options(shortcut: str, diffuse: str) -> None:
    """Refuse an unknown `--shortcut` or `--diffuse`."""
    if shortcut not in SHORTCUTS or diffuse not in DIFFUSE_FORMS:
        raise ConfigError(f"--shortcut {shortcut} / --diffuse {diffuse}: unknown cue",
                          hint=f"choose --shortcut from {', '.join(SHORTCUTS)}, "
                               f"--diffuse from {', '.join(DIFFUSE_FORMS)}")


def cue_form(shortcut: str, diffuse: str) -> str:
    """What the planted cue is: `none`, `mark`, `ramp` or `texture`."""
    return diffuse if shortcut == "diffuse" else shortcut


def correlation_shares(r: float) -> tuple[float, float]:
    """(P(cue | positive), P(cue | negative)) of a cue-label correlation r in [-1, 1]."""
    return (1.0 + r) / 2.0, (1.0 - r) / 2.0


def diffuse_profile(form: str, x: np.ndarray, cycles: int) -> np.ndarray:
    """The shape of a diffuse cue in [-1, 1] over lateral positions `x` in [0, 1] of the full field.

    `ramp` rises linearly from -1 at one edge to 1 at the other; `texture` alternates -1 and 1 in
    `cycles` stripe pairs across the field. The dtype is that of `x`.
    """
    if form == "ramp":
        return 2.0 * x - 1.0
    return np.sign(np.sin(2.0 * np.pi * cycles * x))


def assign_cues(rng: np.random.Generator, labels: np.ndarray, shares: tuple[float, float]) -> np.ndarray:
    """Which samples carry the cue: exactly round(share * n) of the positives and of the negatives, at random.

    Args:
        labels: (N,) bool, True for a positive.
        shares: (P(cue | positive), P(cue | negative)).

    Returns:
        (N,) bool.
    """
    cue = np.zeros(labels.shape[0], dtype=bool)
    for value, share in zip((True, False), shares, strict=True):
        members = np.flatnonzero(labels == value)
        cue[rng.permutation(members)[: int(round(share * members.size))]] = True
    return cue


def box_text(rows: tuple[int, int], cols: tuple[int, int]) -> str:
    """A mark's box in the answer key: `r0:r1,c0:c1` (rows, columns of the image as written, end exclusive)."""
    return f"{rows[0]}:{rows[1]},{cols[0]}:{cols[1]}"
