"""Mixed precision (``train.amp``): bf16 autocast on the devices that compute bf16 natively.

Why: CUDA GPUs and CPUs with AMX tiles (Intel Xeon 4th generation and later) run the U-Net's convolutions in bf16
well over 1.5x faster than in float32 (docs/RESULTS.md 6); on other CPUs bf16 is emulated and slower, so they keep
float32. The losses, MLNGM and the gradient penalty's norm stay float32 either way (``lmisa.losses``).

Example:
    >>> import torch
    >>> with autocast(torch.device("cpu"), enabled=False):
    ...     torch.is_autocast_enabled("cpu")
    False
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any, Mapping

import torch

__all__ = ["autocast", "bf16_native", "precision_name", "trained_in_bf16"]

BF16, FLOAT32 = "bf16 autocast", "float32"  # the names a run's hardware.txt ends with, since bf16 on CPUs


def precision_name(bf16: bool) -> str:
    """The precision as a run's ``hardware.txt`` and ``train.log`` name it (read back by :func:`trained_in_bf16`)."""
    return BF16 if bf16 else FLOAT32


def bf16_native(device: torch.device) -> bool:
    """Whether bf16 autocast is worth it on ``device``: any CUDA device (as before; GPUs older than Ampere
    emulate it), or a CPU with AMX tiles."""
    if device.type == "cuda":
        return True
    if device.type == "cpu":
        try:
            return bool(torch.cpu._is_amx_tile_supported())
        except AttributeError:  # an older torch without the probe: stay in float32
            return False
    return False


def autocast(device: torch.device, enabled: bool = True) -> AbstractContextManager:
    """bf16 autocast on ``device`` when ``enabled`` and the device computes bf16 natively; else nothing."""
    if enabled and bf16_native(device):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def trained_in_bf16(state: Mapping[str, Any], amp: bool, hardware: str | None = None) -> bool:
    """Whether the run that saved checkpoint ``state`` (with ``train.amp`` = ``amp``) trained under bf16 autocast.

    Checkpoints record it since bf16 on CPUs. Before, bf16 ran on CUDA only: a ``latest`` checkpoint tells by its
    CUDA random state (empty when saved on a CPU), a ``best`` one, which keeps none, by the run's ``hardware.txt``
    line (``hardware``: the precision it names, else the device); with neither, as ``amp`` asks.
    """
    if "bf16" in state:
        return bool(state["bf16"])
    if not amp:
        return False
    rng_cuda = state.get("rng_cuda")
    if rng_cuda is not None:
        return rng_cuda.numel() > 0
    if hardware is not None:
        line = hardware.strip()
        if line.endswith((BF16, FLOAT32)):
            return line.endswith(BF16)
        return not line.startswith("CPU")
    return True
