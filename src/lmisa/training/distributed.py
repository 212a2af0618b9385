"""Multi-GPU / multi-node training with PyTorch DDP under ``torchrun``.

``torchrun --nproc_per_node=4 -m lmisa train --source CT --target MR --out runs/ddp`` starts one
process per GPU; each draws its own batches (independently seeded samplers, see lmisa.sampling),
the generator and the critic are DDP-wrapped so gradients are averaged across ranks, and only rank 0
writes logs, plots and checkpoints. On CPU the gloo backend is used (tested with 2 processes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


@dataclass
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def barrier(self) -> None:
        dist.barrier()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device_type: str) -> DistContext:
    """Join the process group that torchrun set up (env:// rendezvous)."""
    backend = "nccl" if device_type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device_type == "cuda":
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    return DistContext(rank, world, local, device)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
