# SPDX-License-Identifier: MIT
"""Seconds per batch of every saliency method against the floor, and against captum and zennit.

The floor is one forward plus one backward to the input: no gradient-based map can be cheaper.
Every candidate runs once per round, round after round (round-robin), and the median over rounds
after warm-up is reported, so that load from other processes on a shared machine hits every
candidate alike. Wall time and process CPU time are both recorded; on a busy CPU the CPU-time
ratio is the steadier of the two. Nothing here prints: the CLI renders the result.
"""

from __future__ import annotations

import math
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ppi_cli import console
from ppi_cli.device import select_device
from ppi_cli.errors import ConfigError
from ppi_cli.saliency.core import method_names, saliency_map

__all__ = ["SaliencyBenchConfig", "Timing", "SaliencyBenchResult", "bench_saliency", "BENCH_MODELS"]


@dataclass(frozen=True)
class BenchModel:
    """A torchvision model to time: how to build it, its usual input side, its GradCAM layer."""

    build: Callable[[], nn.Module]
    size: int
    gradcam_layer: str


def _vgg11() -> nn.Module:
    import torchvision

    return torchvision.models.vgg11(weights=None)


def _inception_v3() -> nn.Module:
    import torchvision

    # no auxiliary head: in eval mode torchvision ignores it anyway
    return torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)


BENCH_MODELS: dict[str, BenchModel] = {
    "vgg11": BenchModel(_vgg11, 224, "features"),
    "inception_v3": BenchModel(_inception_v3, 299, "Mixed_7c"),
}


@dataclass(frozen=True)
class SaliencyBenchConfig:
    """What `ppi bench saliency` measures."""

    model: str = "vgg11"                # a key of BENCH_MODELS
    batch: int = 8                      # the target is stated at batch 8
    size: int | None = None             # input side; None = the model's usual (224 VGG, 299 Inception)
    repeats: int = 5                    # timed rounds; the median is reported
    warmup: int = 1                     # untimed rounds first (allocator, kernels, lazy imports)
    device: str = "cpu"                 # auto, cpu, cuda, cuda:N
    methods: tuple[str, ...] = ()       # our methods to time; empty = every registered one
    compare: bool = True                # also time captum and zennit when they are importable
    seed: int = 0


@dataclass
class Timing:
    """One candidate's measurements."""

    name: str
    source: str                         # "baseline", "ppi", "captum" or "zennit"
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def wall_median(self) -> float:
        return statistics.median(self.wall) if self.wall else math.nan

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu) if self.cpu else math.nan


FLOOR = "floor (fwd+bwd to input)"


@dataclass
class SaliencyBenchResult:
    """The table: one Timing per candidate, the floor among them, and the machine it ran on."""

    config: SaliencyBenchConfig
    machine: dict[str, str]
    timings: list[Timing]

    def rows(self) -> list[dict[str, object]]:
        """One plain dict per candidate with medians and ratios to the floor."""
        floor = next(t for t in self.timings if t.name == FLOOR)
        out = []
        for t in self.timings:
            out.append({
                "method": t.name, "source": t.source,
                "wall_s": round(t.wall_median, 4), "wall_ratio": round(t.wall_median / floor.wall_median, 3),
                "cpu_s": round(t.cpu_median, 4), "cpu_ratio": round(t.cpu_median / floor.cpu_median, 3),
                "runs": len(t.wall), "note": t.note,
            })
        return out

    def to_dict(self) -> dict[str, object]:
        """Plain data for `--json`."""
        return {"config": asdict(self.config), "machine": self.machine, "rows": self.rows()}

    def to_markdown(self) -> str:
        """The table for people, with the machine and the settings above it."""
        c = self.config
        lines = [f"{c.model}, batch {c.batch}, input {c.size or BENCH_MODELS[c.model].size}, "
                 f"median of {c.repeats} interleaved rounds after {c.warmup} warm-up; "
                 + ", ".join(f"{k} {v}" for k, v in self.machine.items()), "",
                 "| method | source | wall s | × floor | CPU s | × floor (CPU) | note |",
                 "|---|---|---|---|---|---|---|"]
        for row in self.rows():
            lines.append(f"| {row['method']} | {row['source']} | {row['wall_s']:.3f} | {row['wall_ratio']:.2f} | "
                         f"{row['cpu_s']:.3f} | {row['cpu_ratio']:.2f} | {row['note']} |")
        return "\n".join(lines) + "\n"


def _candidates(model: nn.Module, spec: BenchModel, x: torch.Tensor, target: torch.Tensor, classes: int,
                config: SaliencyBenchConfig) -> list[tuple[Timing, Callable[[], object]]]:
    def forward():
        with torch.no_grad():
            return model(x)

    def floor():
        inputs = x.detach().requires_grad_(True)
        return torch.autograd.grad(model(inputs).gather(1, target[:, None]).sum(), inputs)

    found: list[tuple[Timing, Callable[[], object]]] = [
        (Timing("forward (no grad)", "baseline"), forward), (Timing(FLOOR, "baseline"), floor)]
    for method in config.methods or method_names():
        options = {"layer": spec.gradcam_layer} if method == "gradcam" else {}
        found.append((Timing(method, "ppi"),
                      lambda m=method, o=options: saliency_map(model, x, target, method=m, **o)))
    if config.compare:
        found += _captum(model, spec, x, target) + _zennit(model, x, target, classes)
    return found


def _captum(model, spec, x, target) -> list[tuple[Timing, Callable[[], object]]]:
    try:
        from captum.attr import LRP, InputXGradient, LayerAttribution, LayerGradCam
    except ImportError:
        return []
    layer = model.get_submodule(spec.gradcam_layer)
    size = tuple(x.shape[2:])

    def gradcam():
        attribution = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)
        return LayerAttribution.interpolate(attribution, size, "bilinear")

    return [
        (Timing("captum InputXGradient", "captum"),
         lambda: InputXGradient(model).attribute(x.detach().requires_grad_(True), target=target)),
        (Timing("captum LayerGradCam", "captum"), gradcam),
        (Timing("captum LRP", "captum"),
         lambda: LRP(model).attribute(x.detach().requires_grad_(True), target=target)),
    ]


def _zennit(model, x, target, classes) -> list[tuple[Timing, Callable[[], object]]]:
    try:
        from zennit.attribution import Gradient
        from zennit.canonizers import SequentialMergeBatchNorm
        from zennit.composites import EpsilonAlpha2Beta1, EpsilonGammaBox, EpsilonPlusFlat
    except ImportError:
        return []

    def run(composite):
        def attribute():
            seed = torch.nn.functional.one_hot(target, classes).to(x.dtype)  # (B, K) relevance at the output
            with Gradient(model=model, composite=composite) as attributor:
                return attributor(x.detach().requires_grad_(True), seed)

        return attribute

    merge = [SequentialMergeBatchNorm()]
    return [
        (Timing("zennit EpsilonPlusFlat", "zennit"), run(EpsilonPlusFlat(canonizers=merge))),
        (Timing("zennit EpsilonAlpha2Beta1", "zennit"), run(EpsilonAlpha2Beta1(canonizers=merge))),
        (Timing("zennit EpsilonGammaBox", "zennit"), run(EpsilonGammaBox(low=0.0, high=1.0, canonizers=merge))),
    ]


def _machine(device: torch.device) -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass  # not Linux: platform's answer stands
    machine = {"cpu": cpu, "torch": torch.__version__, "threads": str(torch.get_num_threads()),
               "device": str(device), "python": platform.python_version()}
    if device.type == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(device)
    return machine


def _timed(timing: Timing, run: Callable[[], object], device: torch.device, record: bool) -> None:
    if timing.note:  # failed before: do not retry every round
        return
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        run()
    except Exception as exc:  # another library failing on this model is a result, reported in the table
        if timing.source == "ppi":
            raise
        timing.note = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''}"
        timing.wall.clear()
        timing.cpu.clear()
        return
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if record:
        timing.wall.append(time.perf_counter() - wall)
        timing.cpu.append(time.process_time() - cpu)


def bench_saliency(config: SaliencyBenchConfig) -> SaliencyBenchResult:
    """Time every candidate in interleaved rounds and return the medians (see module docstring).

    Raises:
        ConfigError: Unknown model, a non-positive batch/repeats, or an unknown method.
    """
    if config.model not in BENCH_MODELS:
        raise ConfigError(f"--model {config.model}: unknown benchmark model",
                          hint=f"use one of: {', '.join(BENCH_MODELS)}")
    if config.batch < 1 or config.repeats < 1 or config.warmup < 0:
        raise ConfigError("--batch and --repeats must be at least 1 and --warmup at least 0")
    unknown = [m for m in config.methods if m not in method_names()]
    if unknown:
        raise ConfigError(f"--methods: unknown method {', '.join(unknown)}",
                          hint=f"use any of: {', '.join(method_names())}")
    device = select_device(config.device)
    spec = BENCH_MODELS[config.model]
    torch.manual_seed(config.seed)
    model = spec.build().to(device).eval()
    size = config.size or spec.size
    x = torch.rand(config.batch, 3, size, size, device=device)  # (B, 3, H, W) in [0, 1]
    with torch.no_grad():
        classes = model(x[:1]).shape[1]
    target = torch.randint(0, classes, (config.batch,), device=device)
    candidates = _candidates(model, spec, x, target, classes, config)
    rounds = config.warmup + config.repeats
    steps = ((r, timing, run) for r in range(rounds) for timing, run in candidates)
    total = rounds * len(candidates)
    for r, timing, run in console.progress(steps, f"saliency bench {config.model}", total=total):
        _timed(timing, run, device, record=r >= config.warmup)
    return SaliencyBenchResult(config, _machine(device), [t for t, _ in candidates])
