# SPDX-License-Identifier: MIT
"""Several processes, one engine: `torchrun --nproc-per-node N ppi train ...` trains with DDP.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and TORCHELASTIC_RUN_ID; `init_distributed` then
joins the process group (NCCL on CUDA, gloo on CPU) and gives every process its device. Under
torchrun that holds for one process too (`--nproc-per-node 1` runs DDP with one rank, the path a
multi-GPU run takes, checkable on a one-GPU machine). Without those variables it is a single
process and nothing changes. Rank 0 writes every file; the others only compute.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ppi_cli.device import select_device
from ppi_cli.errors import ConfigError

__all__ = ["DistContext", "init_distributed", "shutdown_distributed", "average_buffers", "weights_digest", "gather"]


@dataclass
class DistContext:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False
    enabled: bool = False  # launched by torchrun: in a process group, the model under DDP (one rank too)

    @property
    def is_main(self) -> bool:
        """This process writes files and shows progress."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every process (no-op alone)."""
        if self.enabled:
            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value` on every process (plain Python data)."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def average_buffers(ctx: DistContext, model: torch.nn.Module) -> None:
    """Average floating-point buffers (batch-norm running statistics) over the ranks.

    DDP keeps parameters equal but every rank updates its running statistics with its own batches;
    averaging them once per epoch makes the checkpoint the same on every rank and uses all the data.
    """
    if not ctx.enabled:
        return
    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
            buffer.div_(ctx.world_size)


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every tensor of the state dict, in order: equal digests mean equal weights."""

    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def gather(ctx: DistContext, value: Any) -> list[Any]:
    """Every rank's `value`, in rank order (a one-item list alone)."""
    if not ctx.enabled:
        return [value]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, value)
    return out


def init_distributed(device: str = "auto") -> DistContext:
    """Join torchrun's process group when there is one; otherwise a single-process context.

    Raises:
        ConfigError: CUDA was asked for a multi-process run but this process's GPU is missing.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 and "TORCHELASTIC_RUN_ID" not in os.environ:  # not launched by torchrun
        return DistContext(device=select_device(device))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = (device or "auto").startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"torchrun: local rank {local_rank} has no GPU ({torch.cuda.device_count()} here)",
                              hint="use --nproc-per-node at most the number of GPUs, or --device cpu")
        torch.cuda.set_device(local_rank)
        chosen = torch.device("cuda", local_rank)
    else:
        chosen = torch.device("cpu")
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        owns = True
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=chosen, owns_group=owns,
                       enabled=True)


def shutdown_distributed(ctx: DistContext) -> None:
    """Leave the process group this context joined."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()
