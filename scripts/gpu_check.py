#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The device check of the training engine: the CUDA path CI cannot reach, in one run on a GPU machine.

1. **Correctness.** One PPI training step (WBP map from the clean pass, create_graph on and off) on
   the GPU against the same step on the CPU, and in channels_last against the contiguous step, in
   float64, for a network with train-mode batch norm (`tiny`, the map takes its own backward) and
   one without (`vgg11`, the map comes from L_cls's backward); under autocast with channels_last
   (bfloat16 where the card has it, else float16 with a gradient scaler, as `ppi train` picks):
   finite gradients and float32's loss values.
2. **Benchmark.** `ppi bench train --model inception_v3 --contrast-on positives --device cuda` at each
   `--batches`: images/s of the plain step and both PPI steps, with autocast and channels_last as
   training runs on CUDA, and the peak-memory ratios.
3. **DistributedDataParallel with one rank.** `torchrun --nproc-per-node 1 -m ppi_cli train` on the
   generated task (NCCL, autocast, channels_last), ending in a checkpoint that records the rank.

Results go to `$OUT/gpu_check.json` (else `./gpu-check/`); the exit code is 1 if a check failed.
Every part runs even when an earlier one fails, so one lease gives every number.

Usage, from the repository root:
    python3 scripts/gpu_check.py                                   # on the GPU machine
    python3 scripts/gpu_check.py --device cpu --model tiny --batches 4 --rounds 1   # dry run on a CPU
    (tests/test_gpu_check.py runs that dry run with `--check-models tiny`.)

With `--device cpu` the GPU-versus-CPU comparisons are skipped and DDP runs on gloo.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from ppi_cli.bench.train import BenchConfig, bench_train  # noqa: E402
from ppi_cli.config.recipe import ModelConfig, PPIConfig  # noqa: E402
from ppi_cli.engine.step import TrainStep  # noqa: E402
from ppi_cli.files import write_json  # noqa: E402
from ppi_cli.models import build_model  # noqa: E402
from ppi_cli.ppi.losses import LossWeights  # noqa: E402


def _step_grads(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, cfg: PPIConfig,
                device: torch.device, *, amp: bool = False, channels_last: bool = False) -> tuple[dict, torch.Tensor]:
    """Loss values and the flattened gradient (on the CPU) of one PPI step on a copy of `model`."""
    net = copy.deepcopy(model).to(device)
    x = x.to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    scaler = None
    if amp and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        scaler = torch.amp.GradScaler("cuda")
    step = TrainStep(model=net, net=net, cfg=cfg, weights=LossWeights(cfg), binary=True, device=device, amp=amp,
                     scaler=scaler)
    values = step(x, labels.to(device, x.dtype), epoch=0, generator=torch.Generator().manual_seed(0))
    scale = scaler.get_scale() if scaler is not None else 1.0
    grads = [torch.zeros(p.numel(), dtype=p.dtype) if p.grad is None else (p.grad.detach().cpu() / scale).flatten()
             for p in net.parameters()]
    return values, torch.cat(grads)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-300))


def check_steps(device: torch.device, models: list[str]) -> list[dict[str, Any]]:
    """Part 1: the PPI step's gradients on `device` against the CPU and in channels_last; autocast.

    The equality checks run in float64, where the step's arithmetic is exact enough to compare
    (in float32 the terms' gradients largely cancel on an untrained network: L_con's flipped
    label pulls against L_cls and L_ad, so rounding shows up at the percent level in the sum).
    Autocast is held to float32's loss values and must give finite gradients; the cosine of its
    gradient to float32's is reported.
    """
    rows = []
    for name in models:
        size = 64
        torch.manual_seed(0)
        channels = 1 if name == "tiny" else 3
        model = build_model(ModelConfig(name=name, in_channels=channels, num_classes=1, input_size=size,
                                        dropout=0.0)).train()
        x = torch.rand(8, channels, size, size)
        labels = (torch.arange(8) % 2).float()
        for create_graph in (True, False):
            cfg = PPIConfig(enabled=True, start_epoch=0, create_graph=create_graph, contrast_on="positives")
            case = f"{name}, create_graph={create_graph}"
            exact = copy.deepcopy(model).double()
            _, reference = _step_grads(exact, x.double(), labels, cfg, torch.device("cpu"))
            if device.type == "cuda":
                _, here = _step_grads(exact, x.double(), labels, cfg, device)
                err = _relative(here, reference)
                rows.append({"check": f"float64 {device.type} = cpu ({case})", "relative_error": err, "ok": err < 1e-9})
            _, last = _step_grads(exact, x.double(), labels, cfg, device, channels_last=True)
            err = _relative(last, reference)
            rows.append({"check": f"float64 channels_last = contiguous cpu ({case})", "relative_error": err,
                         "ok": err < 1e-9})
            if device.type == "cuda":
                full_values, full = _step_grads(model, x, labels, cfg, device)
                values, mixed = _step_grads(model, x, labels, cfg, device, amp=True, channels_last=True)
                gap = max(abs(values[k] - full_values[k]) for k in full_values)
                finite = bool(torch.isfinite(mixed).all())
                cosine = float(torch.nn.functional.cosine_similarity(mixed.double(), full.double(), dim=0))
                rows.append({"check": f"autocast + channels_last against float32 ({case})", "loss_gap": gap,
                             "finite": finite, "gradient_cosine": cosine, "ok": finite and gap < 0.05})
    return rows


def bench(model: str, batches: list[int], rounds: int, device: str) -> list[dict[str, Any]]:
    """Part 2: `ppi bench train` at each batch size."""
    runs = []
    for batch in batches:
        result = bench_train(BenchConfig(model=model, batch=batch, contrast_on="positives", rounds=rounds,
                                         device=device))
        runs.append(result.to_dict())
        for s in result.steps:
            print(f"  {model} batch {batch} {s.step:17s} {result.images_per_s(s.step):8.1f} images/s  "
                  f"time x{result.ratio(s.step):.2f}  memory x{result.ratio(s.step, 'peak_mb'):.2f}", flush=True)
    return runs


def ddp_one_rank(device: str, out: Path) -> dict[str, Any]:
    """Part 3: `ppi train` under torchrun with one rank; the checkpoint must record it."""
    from ppi_cli.checkpoint import load_checkpoint

    run = out / "ddp"
    shutil.rmtree(run, ignore_errors=True)  # this script's own folder from an earlier try
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1", "--master-port",
           str(29500 + os.getpid() % 1000), "-m", "ppi_cli", "train", "--recipe",
           str(ROOT / "recipes" / "synthetic-ppi-wbp-cpu.yaml"), "--epochs", "2", "--out", str(run),
           "--device", device]
    env = dict(os.environ, PPI_WORKSPACE=str(out / "workspace"), PPI_QUIET="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    began = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    row: dict[str, Any] = {"check": f"torchrun, one rank, {device}", "seconds": time.perf_counter() - began,
                           "returncode": done.returncode}
    if done.returncode != 0:
        return {**row, "ok": False, "stderr": done.stderr[-3000:]}
    meta = load_checkpoint(run / "last.pt")["meta"]
    ranks = meta.get("distributed", {})
    return {**row, "distributed": ranks, "epoch": meta.get("epoch"),
            "ok": ranks.get("world_size") == 1 and meta.get("epoch") == 2}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu for a dry run")
    parser.add_argument("--model", default="inception_v3", help="model of the benchmark")
    parser.add_argument("--batches", default="8,32", help="batch sizes of the benchmark, comma-separated")
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds of the benchmark")
    parser.add_argument("--check-models", default="tiny,vgg11", help="models of the correctness checks")
    args = parser.parse_args(argv)
    out = Path(os.environ.get("OUT") or "gpu-check")
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    report: dict[str, Any] = {"torch": torch.__version__, "python": sys.version.split()[0], "device": args.device,
                              "card": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}
    print(f"torch {report['torch']}, {report['card']}", flush=True)
    parts = (("checks", lambda: check_steps(device, args.check_models.split(","))),
             ("bench", lambda: bench(args.model, [int(b) for b in args.batches.split(",")], args.rounds, args.device)),
             ("ddp", lambda: ddp_one_rank(args.device, out)))
    failed = []
    for name, part in parts:
        began = time.perf_counter()
        print(f"{name} ...", flush=True)
        try:
            report[name] = part()
        except Exception:  # a broken part must not cost the others their numbers
            report[name] = {"ok": False, "error": traceback.format_exc()[-3000:]}
        rows = report[name] if isinstance(report[name], list) else [report[name]]
        failed += [f"{name}: {r.get('check', r.get('error', ''))}" for r in rows if r.get("ok") is False]
        print(f"{name} done in {time.perf_counter() - began:.0f} s", flush=True)
    report["failed"] = failed
    write_json(out / "gpu_check.json", report)
    for line in failed:
        print(f"FAILED {line}", flush=True)
    print(f"wrote {out / 'gpu_check.json'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
