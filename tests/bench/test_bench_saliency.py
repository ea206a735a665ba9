# SPDX-License-Identifier: MIT
"""`ppi bench saliency`: the measurement loop on a tiny model, and the command around it."""

from __future__ import annotations

import json

import pytest
from torch import nn

from ppi_cli.bench import saliency as bench
from ppi_cli.bench.saliency import FLOOR, BenchModel, SaliencyBenchConfig, Timing, bench_saliency
from ppi_cli.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, 5))


@pytest.fixture
def tiny_models(monkeypatch):
    monkeypatch.setitem(bench.BENCH_MODELS, "tiny", BenchModel(_tiny, 8, "0"))


def test_every_candidate_is_timed_in_every_round(tiny_models):
    result = bench_saliency(SaliencyBenchConfig(model="tiny", batch=2, repeats=2, warmup=0, compare=False))
    names = [t.name for t in result.timings]
    assert names[:2] == ["forward (no grad)", FLOOR]
    assert set(names[2:]) == set(bench.method_names())
    assert all(len(t.wall) == 2 and len(t.cpu) == 2 for t in result.timings)
    rows = {r["method"]: r for r in result.rows()}
    assert rows[FLOOR]["wall_ratio"] == 1.0 and rows[FLOOR]["cpu_ratio"] == 1.0
    floor = next(t for t in result.timings if t.name == FLOOR)
    wbp = next(t for t in result.timings if t.name == "wbp")
    assert rows["wbp"]["wall_ratio"] == pytest.approx(wbp.wall_median / floor.wall_median, abs=1e-3)
    assert "| wbp | ppi |" in result.to_markdown()


def test_a_failing_comparison_is_reported_not_raised(tiny_models, monkeypatch):
    def broken(*_args):
        def run():
            raise RuntimeError("unsupported layer\nsecond line")

        return [(Timing("other LRP", "captum"), run)]

    monkeypatch.setattr(bench, "_captum", broken)
    monkeypatch.setattr(bench, "_zennit", lambda *_args: [])
    result = bench_saliency(SaliencyBenchConfig(model="tiny", batch=1, repeats=2, methods=("wbp",)))
    other = next(t for t in result.timings if t.name == "other LRP")
    assert other.note == "failed: RuntimeError: unsupported layer" and other.wall == []


@pytest.mark.parametrize(("config", "match"), [
    (SaliencyBenchConfig(model="resnet"), "unknown benchmark model"),
    (SaliencyBenchConfig(methods=("wbp", "nope")), "unknown method nope"),
])
def test_bad_settings_are_config_errors(config, match):
    with pytest.raises(ConfigError, match=match):
        bench_saliency(config)


def test_command_passes_its_options_and_prints_the_table(cli, monkeypatch, tmp_path, tiny_models):
    seen = {}
    real = bench.bench_saliency

    def spy(config):
        seen["config"] = config
        return real(SaliencyBenchConfig(model="tiny", batch=1, repeats=1, warmup=0, methods=config.methods,
                                        compare=False))

    monkeypatch.setattr(bench, "bench_saliency", spy)
    result = cli("bench", "saliency", "--model", "inception_v3", "--batch", "4", "--repeats", "6",
                 "--methods", "wbp,gradient", "--no-compare", "--out", tmp_path / "b")
    assert result.exit_code == 0, result.stderr
    assert seen["config"] == SaliencyBenchConfig(model="inception_v3", batch=4, repeats=6, warmup=1, device="cpu",
                                                 methods=("wbp", "gradient"), compare=False)
    assert "wbp" in result.stdout and "floor" in result.stdout and "× floor" in result.stdout
    written = sorted(p.name for p in (tmp_path / "b").iterdir())
    assert written == [f"saliency-bench-inception_v3-b4.{ext}" for ext in ("csv", "json", "md")]
    assert "wrote" in result.stderr

    result = cli("bench", "saliency", "--methods", "wbp", "--json")
    rows = json.loads(result.stdout)["rows"]
    assert [r["method"] for r in rows][2:] == ["wbp"] and rows[1]["wall_ratio"] == 1.0


def test_command_reports_a_bad_method_in_one_line(cli):
    result = cli("bench", "saliency", "--methods", "wbp,nope")
    assert result.exit_code == 1
    assert "unknown method nope" in result.stderr and "Traceback" not in result.stderr
