#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Does a scanner's blur read as GA? Each model's mean logit on its own training site's hold-out, by class, as
the volumes are and blurred in-plane the way a softer-focus site blurs them (docs/ppi.md, "A site's blur read as
GA").

Each RUN is a cross-site training folder (`.../train-D`, holding best.pt and split.json); its hold-out rows
(split.json's `test`) are read from CACHE whole, every B-scan, as evaluation reads them. The blur is a Gaussian
of std `--down` pixels along the B-scan's rows and `--across` along its columns (`data.bscans.blurred`):
`ppi synth ga`'s site B blurs by 0.7 px at 64x128, that is 0.7 down and 0.35 across once resampled to 64x64.

Usage, from the repository root:
    python scripts/blur_effect.py --cache cache-ramp sweep/gk/seed-*/ppi/train-D
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ppi_cli.config.recipe import Recipe  # noqa: E402
from ppi_cli.data.bscans import blurred  # noqa: E402
from ppi_cli.data.ga.dataset import GaDataset  # noqa: E402
from ppi_cli.models.registry import load_model  # noqa: E402


def mean_logits(run: Path, cache: Path, down: float, across: float) -> dict[str, float]:
    """The run's mean logit on its hold-out's GA and no-GA volumes, as they are and blurred."""
    model, _ = load_model(run / "best.pt")
    model.eval()
    rows = json.loads((run / "split.json").read_text())["test"]
    data = GaDataset(cache, rows, Recipe().replace(**{"data.dataset": "ga"}), train=False)
    logits: dict[str, list[float]] = {"ga": [], "no_ga": [], "ga_blurred": [], "no_ga_blurred": []}
    with torch.no_grad():
        for item in range(len(data)):
            sample = data[item]
            name = "ga" if float(sample["label"]) == 1 else "no_ga"
            for suffix, volume in (("", sample["image"]), ("_blurred", blurred(sample["image"], (down, across)))):
                logits[name + suffix].append(float(model(volume[None], sample["positions"][None]).reshape(-1)[0]))
    return {key: float(np.mean(values)) for key, values in logits.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="cross-site training folders (best.pt, split.json)")
    parser.add_argument("--cache", type=Path, required=True, help="the prepared GA cache the runs trained on")
    parser.add_argument("--down", type=float, default=0.7, help="blur std along the rows, in pixels")
    parser.add_argument("--across", type=float, default=0.35, help="blur std along the columns, in pixels")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    table = [mean_logits(run, args.cache, args.down, args.across) for run in args.runs]
    mean = {key: float(np.mean([row[key] for row in table])) for key in table[0]}
    for run, row in zip(args.runs, table, strict=True):
        print(f"{run}: " + "  ".join(f"{k} {v:+.2f}" for k, v in row.items()))
    print(f"mean of {len(table)}: " + "  ".join(f"{k} {v:+.2f}" for k, v in mean.items()))
    print(f"blur moves no GA by {mean['no_ga_blurred'] - mean['no_ga']:+.2f} and GA by "
          f"{mean['ga_blurred'] - mean['ga']:+.2f}; the gap GA - no GA {mean['ga'] - mean['no_ga']:.2f} -> "
          f"{mean['ga_blurred'] - mean['no_ga_blurred']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
