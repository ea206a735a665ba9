#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Which part of a planted cue does a model read? Per run and test site, the mean logit shift the cue gives
on the volumes that carry it, whole and split into its column look's shape and its overall brightness
(docs/ppi.md, "What row B reads").

`--data` is a prepared GA cache of `ppi synth ga` and `--twin` the same volumes without the cue (`--shortcut
none`, the same seed); the volumes whose images differ between the two carry the cue. For each such volume x
(the cue as drawn) and its twin x0, three images are scored against x0, every B-scan, as evaluation reads them:

- `cue`: x itself, logit(x) − logit(x0), what `ppi sweep --twin` calls the cue's effect;
- `shape`: x0 put in x's column look with `ppi.look_level: keep` (`ppi.looks.swapped_looks`), the shape of the
  look without its brightness: what the recipes' whole-image swap moves between images;
- `brightness`: x0 times the ratio of x's mean intensity to its own, the brightness without the shape: under
  prepare's percentile normalisation a ramp also dims the image it is drawn on, which the swap leaves in place.

A model that reads the cue only through the swap's channel has `shape` near `cue` and `brightness` near 0.

Usage, from the repository root:
    python scripts/cue_channels.py --data cache-rampB9 --twin cache-none sweep/ga-ppi-wbp-cpu/seed-*/ppi/train-B
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ppi_cli.data.datasets import build_dataset  # noqa: E402
from ppi_cli.engine.cue_effect import cue_rows  # noqa: E402
from ppi_cli.engine.study import resolve_study  # noqa: E402
from ppi_cli.engine.trainer import dataset_config  # noqa: E402
from ppi_cli.models.registry import load_model  # noqa: E402
from ppi_cli.ppi.looks import swapped_looks  # noqa: E402

CHANNELS = ("cue", "shape", "brightness")
RECIPE = "ga-ppi-wbp-cpu"  # whose preprocessing evaluation reads the volumes with


def carrying_volumes(data: Path, twin: Path) -> tuple[list[str], list[dict[str, torch.Tensor]]]:
    """The sites of the volumes that differ between `data` and `twin` (`cue_rows`) and per such volume the images
    `{"x0", "cue", "shape", "brightness"}` `(S, 1, H, W)` with its B-scan `positions`."""
    recipe, with_cue = resolve_study(RECIPE, data=data)
    without = resolve_study(RECIPE, data=twin)[1]
    if len(without.labels) != len(with_cue.labels):
        raise SystemExit(f"{twin}: {len(without.labels)} volumes where {data} has {len(with_cue.labels)}; "
                         "give the twin of --data")
    rows = cue_rows(recipe, with_cue, without)
    config = dataset_config(recipe)
    pair = [build_dataset(d.kind, d.cache_dir, rows, config, train=False, seed=recipe.seed)
            for d in (with_cue, without)]
    images = []
    for item in range(len(rows)):
        a, b = pair[0][item], pair[1][item]
        x, x0 = a["image"].float(), b["image"].float()
        shape, _ = swapped_looks(x, x0, kind="columns", sigma=recipe.ppi.look_sigma, level="keep")
        brightness = (x0 * (x.mean() / x0.mean().clamp_min(1e-6))).clamp(0.0, 1.0)
        images.append({"x0": x0, "cue": x, "shape": shape, "brightness": brightness, "positions": a["positions"]})
    return [str(s) for s in with_cue.sites[rows]], images


def channel_effects(run: Path, sites: list[str], images: list[dict[str, torch.Tensor]]) -> pd.DataFrame:
    """Per test site, the run's mean logit shift of each channel over the carrying volumes (`n` of them)."""
    model, _ = load_model(run / "best.pt")
    model.eval()
    shifts: dict[str, list[float]] = {name: [] for name in CHANNELS}
    with torch.no_grad():
        for volume in images:
            def logit(name: str, volume: dict[str, torch.Tensor] = volume) -> float:
                return float(model(volume[name][None], volume["positions"][None]).reshape(-1)[0])

            base = logit("x0")
            for name in CHANNELS:
                shifts[name].append(logit(name) - base)
    frame = pd.DataFrame({"test_site": sites, **shifts})
    table = frame.groupby("test_site")[list(CHANNELS)].mean()
    table.insert(0, "n", frame.groupby("test_site").size())
    return table.reset_index()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="cross-site training folders (best.pt)")
    parser.add_argument("--data", type=Path, required=True, help="the prepared GA cache with the cue")
    parser.add_argument("--twin", type=Path, required=True, help="the same volumes prepared without the cue")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    sites, images = carrying_volumes(args.data, args.twin)
    if not images:
        raise SystemExit(f"{args.twin}: every volume equals --data's; give a twin without the cue")
    for run in args.runs:
        table = channel_effects(run, sites, images)
        cells = "  ".join(f"{r.test_site} ({r.n}): cue {r.cue:+.2f} shape {r.shape:+.2f} brightness {r.brightness:+.2f}"
                          for r in table.itertuples())
        print(f"{run}: {cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
