# SPDX-License-Identifier: MIT
"""`ppi bench train`: the plain step against the PPI step, measured side by side in one process.

Each measured step is what training does per batch: zero the gradients, forward/backward
(`TrainStep`), optimiser update. The three steps (plain, PPI with `create_graph`, PPI without)
run interleaved, round after round, so a change in machine load hits all three alike; the
median over rounds is reported.

Time and memory are measured in separate passes. The timed rounds run with the allocator as
`ppi train` sets it (on Linux CPUs glibc keeps freed blocks for reuse: `keep_host_memory`).
Peak memory comes from a second round of each step (the first allocates the optimiser state),
on CPU in a fresh process of its own. On CPU it is the rise of the process's resident set
during the step: the kernel's high-water mark (VmHWM) is reset through `/proc/self/clear_refs`
just before the step, and glibc is told to serve every allocation ≥ 64 KiB with its own mapping
(`mallopt`) and to trim before the step, so freed tensors leave the resident set at once. The
figure is what the step adds on top of the weights and optimiser state already resident. (Those
glibc settings cost every allocation a fresh mapping, so timing under them would overstate the
steps that allocate most.) On CUDA it is `max_memory_allocated` above the allocation before the
step, and the steps run as training runs there: autocast and channels_last. See
docs/benchmarks.md.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ppi_cli.autograd.phases import PREFIX, phase
from ppi_cli.config.recipe import ModelConfig, OptimConfig, PPIConfig
from ppi_cli.device import M_MMAP_THRESHOLD, glibc, keep_host_memory, select_device
from ppi_cli.engine.optim import build_optimizer
from ppi_cli.engine.step import TrainStep
from ppi_cli.errors import ConfigError
from ppi_cli.models import build_model
from ppi_cli.ppi.losses import LossWeights, adversarial_loss, classification_loss, contrast_loss, derangement
from ppi_cli.ppi.masks import intervene, intervention_mask

__all__ = ["BenchConfig", "StepMeasure", "BenchResult", "bench_train", "DEFAULT_SIZES", "profile_step"]

DEFAULT_SIZES = {"vgg11": 224, "vgg11_bn": 224, "inception_v3": 299, "tiny": 64}


@dataclass(frozen=True)
class BenchConfig:
    """What `ppi bench train` measures."""

    model: str = "vgg11"
    batch: int = 8
    size: int | None = None  # None: the network's usual input size (DEFAULT_SIZES)
    channels: int = 3
    classes: int = 1
    saliency: str = "wbp"
    mask: str = "soft"
    contrast_on: str = "all"  # every sample masked for L_con: the most work a PPI step does
    adversarial_on: str = "auto"  # L_ad on the L_con rows (the recipe default, α = 1 here) or on all
    rounds: int = 3
    device: str = "cpu"
    seed: int = 0
    reference: bool = False  # also time the straightforward PPI step the issue measured (before optimising)
    channels_last_cpu: bool = False  # the recipe's schedule.channels_last_cpu (CUDA always runs channels_last)


@dataclass
class StepMeasure:
    """Time (median over the timed rounds) and peak memory (one separate round) of one kind of step."""

    step: str
    seconds: float
    peak_mb: float
    seconds_all: list[float] = field(default_factory=list)
    peak_mb_all: list[float] = field(default_factory=list)


@dataclass
class BenchResult:
    """The three steps and their ratios to the plain step."""

    config: BenchConfig
    steps: list[StepMeasure]
    device: str
    threads: int
    memory_method: str

    def _step(self, name: str) -> StepMeasure:
        return next(s for s in self.steps if s.step == name)

    def ratio(self, step: str, what: str = "seconds") -> float:
        """`step`'s time (or `peak_mb`) over the plain step's."""
        base = getattr(self._step("plain"), what)
        return getattr(self._step(step), what) / base if base else float("nan")

    def round_ratios(self, step: str) -> list[float]:
        """`step`'s time over the plain step's, round by round (the steps of one round ran back to back)."""
        pairs = zip(self._step(step).seconds_all, self._step("plain").seconds_all, strict=True)
        return [mine / plain if plain else float("nan") for mine, plain in pairs]

    def images_per_s(self, step: str) -> float:
        """Training throughput of `step`: images of the batch over its median time."""
        seconds = self._step(step).seconds
        return self.config.batch / seconds if seconds else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """Plain data for `--json`."""
        return {"config": asdict(self.config), "device": self.device, "threads": self.threads,
                "memory_method": self.memory_method,
                "steps": [{**asdict(s), "images_per_s": self.images_per_s(s.step), "time_ratio": self.ratio(s.step),
                           "round_ratios": self.round_ratios(s.step), "memory_ratio": self.ratio(s.step, "peak_mb")}
                          for s in self.steps]}


class _Memory:
    """Peak memory of a block: CUDA allocator statistics, or the resident set's high-water mark on Linux."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.libc = None
        if device.type == "cuda":
            self.method = "torch.cuda.max_memory_allocated above the allocation before the step"
            return
        self.method = "unavailable"

    def prepare(self) -> None:
        """Switch glibc to one mapping per big block (CPU); after this, time is no longer representative."""
        if self.device.type == "cuda":
            return
        libc = glibc()
        if libc is None:
            return
        libc.mallopt(M_MMAP_THRESHOLD, 64 * 1024)  # big blocks get their own mapping, freed at once
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            return
        self.libc = libc
        self.method = "rise of VmHWM over VmRSS (reset via /proc/self/clear_refs), glibc mmap threshold 64 KiB"

    def start(self) -> int:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return torch.cuda.memory_allocated(self.device)
        if self.libc is None:
            return 0
        self.libc.malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
        return _status_bytes("VmRSS:")

    def peak(self, start: int) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return (torch.cuda.max_memory_allocated(self.device) - start) / 2**20
        if self.libc is None:
            return float("nan")
        return (_status_bytes("VmHWM:") - start) / 2**20


def _status_bytes(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    return 0


def _setup(cfg: BenchConfig, *, timed: bool = True) -> tuple[Any, ...]:
    if cfg.model == "multiview":
        raise ConfigError("ppi bench train: the multiview model is not benchmarked here",
                          hint="use --model tiny, vgg11, vgg11_bn or inception_v3")
    device = select_device(cfg.device)
    if timed and device.type == "cpu":
        keep_host_memory()  # the allocator as `ppi train` sets it
    size = cfg.size or DEFAULT_SIZES.get(cfg.model, 224)
    torch.manual_seed(cfg.seed)
    model = build_model(ModelConfig(name=cfg.model, in_channels=cfg.channels, num_classes=cfg.classes,
                                    input_size=size, dropout=0.5)).to(device).train()
    optimizer = build_optimizer(model, OptimConfig(name="sgd", lr=1e-4, momentum=0.9))  # paper's VGG optimiser
    x = torch.rand(cfg.batch, cfg.channels, size, size, device=device)
    if device.type == "cuda" or cfg.channels_last_cpu:  # as training: channels_last on a GPU (and AMP in _steps)
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if cfg.classes == 1:
        labels = (torch.arange(cfg.batch, device=device) % 2).float()
    else:
        labels = torch.arange(cfg.batch, device=device) % cfg.classes
    return device, model, optimizer, x, labels


@dataclass
class _StraightforwardStep:
    """The unoptimised PPI step the optimisations are measured against (create_graph, one backward).

    One clean forward shared by L_cls and the saliency (gradient × input of the clean logits, with
    create_graph: WBP itself for a network without train-mode batch norm), x* and x' in one forward
    on batch statistics, then a single backward of the total; no staging, no stand-in mask, no
    shortcut for ReLU and pooling in the double backward.
    """

    model: Any
    cfg: PPIConfig

    def __call__(self, x: torch.Tensor, labels: torch.Tensor, positions: Any = None, *, epoch: int,
                 generator: torch.Generator | None = None) -> dict[str, float]:
        inputs = x.detach().requires_grad_(True)
        logits = self.model(inputs)
        l_cls = classification_loss(logits, labels)
        (rows,) = torch.autograd.grad(logits[:, 0].sum(), inputs, create_graph=True)
        sign = (2 * labels - 1).view(-1, 1, 1, 1)  # (B, 1, 1, 1): true-class evidence
        s = (inputs * rows).sum(1, keepdim=True) * sign  # (B, 1, H, W)
        mask = intervention_mask(s, self.cfg.mask, sigma=self.cfg.sigma, omega=self.cfg.omega, c=self.cfg.c)
        perm = derangement(x.shape[0], generator).to(x.device)
        out = self.model(torch.cat([intervene(x, mask), intervene(x, mask[perm])]))
        b = x.shape[0]
        total = (l_cls + contrast_loss(out[:b], labels) + self.cfg.beta * s.abs().mean()
                 + adversarial_loss(out[b:], labels))
        total.backward()
        return {"loss": float(total.detach())}


def _steps(cfg: BenchConfig, model: Any, device: torch.device) -> dict[str, Any]:
    base = PPIConfig(enabled=True, saliency=cfg.saliency, mask=cfg.mask, contrast_on=cfg.contrast_on,
                     adversarial_on=cfg.adversarial_on, start_epoch=0)
    out = {}
    for name, ppi in (("plain", replace(base, enabled=False)), ("ppi create_graph", replace(base, create_graph=True)),
                      ("ppi no graph", replace(base, create_graph=False))):
        out[name] = TrainStep(model=model, net=model, cfg=ppi, weights=LossWeights(ppi), binary=cfg.classes == 1,
                              device=device, amp=device.type == "cuda")
    if cfg.reference:
        if cfg.classes != 1:
            raise ConfigError("ppi bench train --reference: the reference step is written for binary heads",
                              hint="use --classes 1")
        out["straightforward"] = _StraightforwardStep(model, replace(base, create_graph=True))
    return out


def bench_train(cfg: BenchConfig) -> BenchResult:
    """Measure the plain and PPI training steps of one model, interleaved (see the module docstring).

    Raises:
        ConfigError: Unknown model, device or saliency method.
    """
    device, model, optimizer, x, labels = _setup(cfg)
    steps = _steps(cfg, model, device)
    generator = torch.Generator().manual_seed(cfg.seed)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for round_ in range(cfg.rounds + 1):  # round 0 warms up (allocator, kernels, lazy imports)
        for name, step in steps.items():
            began = time.perf_counter()
            _run_step(step, optimizer, x, labels, generator, device)
            if round_:
                times[name].append(time.perf_counter() - began)
    if device.type == "cuda":  # the caching allocator's statistics: measured here, timing unaffected
        peaks, method = _peak_memory(cfg, (device, model, optimizer, x, labels))
    else:  # glibc's settings for measuring would slow every allocation: a fresh process of its own
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            peaks, method = pool.submit(_peak_memory, cfg).result()
    measures = [StepMeasure(name, statistics.median(times[name]), peaks[name], times[name], [peaks[name]])
                for name in steps]
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return BenchResult(config=cfg, steps=measures, device=device_name, threads=torch.get_num_threads(),
                       memory_method=method)


def _run_step(step: Any, optimizer: Any, x: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
              device: torch.device) -> None:
    """What training does per batch: zero the gradients, the step's forward/backward, the update."""
    optimizer.zero_grad(set_to_none=True)
    step(x, labels, epoch=0, generator=generator)
    with phase("update"):
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory(cfg: BenchConfig, setup: tuple[Any, ...] | None = None) -> tuple[dict[str, float], str]:
    """Peak MiB of each step in its second round (the first allocates optimiser state), and how it was taken."""
    memory = _Memory(select_device(cfg.device))
    memory.prepare()  # before anything is allocated, so every big block is a mapping of its own
    device, model, optimizer, x, labels = setup if setup is not None else _setup(cfg, timed=False)
    steps = _steps(cfg, model, device)
    generator = torch.Generator().manual_seed(cfg.seed)
    peaks: dict[str, float] = {}
    for round_ in range(2):
        for name, step in steps.items():
            start = memory.start()
            _run_step(step, optimizer, x, labels, generator, device)
            if round_:
                peaks[name] = memory.peak(start)
    return peaks, memory.method


def profile_step(cfg: BenchConfig, step_name: str = "ppi create_graph", top: int = 15) -> dict[str, Any]:
    """Where one step's time goes: its `top` operators by self CPU time, and the time of each of its passes.

    After a warm-up the plain step and `step_name` are profiled alternately, one step per profiler
    session, for `cfg.rounds` rounds.

    Returns:
        `{"step", "rounds", "operators", "phases", "plain_ms"}`. Operators (last round): `op`,
        `calls`, `self_ms`, `share` of the step's self CPU time. Phases (CPU only; [] on CUDA, where
        CPU time is launch time): each pass of the step (`autograd/phases.py`) with `calls`, `ms` (its
        inclusive CPU time, median over rounds) and `x_plain`, that over `plain_ms`, the plain
        step's forward, backward and update profiled the same way (None on CUDA).
    """
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # no "gpuGetDeviceCount failed" line on a CPU-only machine
    from torch.profiler import ProfilerActivity, profile

    device, model, optimizer, x, labels = _setup(cfg)
    steps = _steps(cfg, model, device)
    generator = torch.Generator().manual_seed(cfg.seed)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    names = list(dict.fromkeys(("plain", step_name)))
    for name in names:  # warm-up
        _run_step(steps[name], optimizer, x, labels, generator, device)
    spans: dict[str, dict[str, list[float]]] = {name: {} for name in names}  # phase → ms per round
    calls: dict[str, int] = {}  # of the phases of step_name
    for _ in range(cfg.rounds):
        for name in names:
            with profile(activities=activities, record_shapes=False) as prof:
                _run_step(steps[name], optimizer, x, labels, generator, device)
            table = prof.key_averages()
            for e in table:
                if e.key.startswith(PREFIX):
                    spans[name].setdefault(e.key[len(PREFIX):], []).append(e.cpu_time_total / 1e3)
            if name == step_name:
                operators = table
                calls.update((e.key[len(PREFIX):], e.count) for e in table if e.key.startswith(PREFIX))
    total = sum(e.self_cpu_time_total for e in operators) or 1.0  # the spans' own (Python) time included
    rows = sorted((e for e in operators if not e.key.startswith(PREFIX)), key=lambda e: e.self_cpu_time_total,
                  reverse=True)[:top]
    ops = [{"op": e.key, "calls": e.count, "self_ms": e.self_cpu_time_total / 1e3,
            "share": e.self_cpu_time_total / total} for e in rows]
    phases: list[dict[str, Any]] = []
    if device.type == "cpu":
        plain_ms = sum(statistics.median(v) for v in spans["plain"].values())
        medians = {k: statistics.median(v) for k, v in spans[step_name].items()}
        phases = [{"phase": k, "calls": calls[k], "ms": ms, "x_plain": ms / plain_ms} for k, ms in medians.items()]
    else:
        plain_ms = None
    return {"step": step_name, "rounds": cfg.rounds, "operators": ops, "phases": phases, "plain_ms": plain_ms}
