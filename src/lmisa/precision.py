"""Mixed precision (``train.amp``): bf16 autocast on the devices that compute bf16 natively.

Why: CUDA GPUs and CPUs with bf16 instructions run the U-Net's convolutions in bf16 well over 1.5x faster than in
float32: AMX tiles (Intel Xeon 4th generation and later; 1.7x per training step, docs/RESULTS.md 2ac) and AVX512-BF16
(AMD EPYC Zen 4, Intel Cooper Lake; 1.8-1.9x, docs/RESULTS.md 6; 2D networks only, see :func:`bf16_native`). On
other CPUs bf16 is emulated and slower, so they keep float32. The losses, MLNGM and the gradient penalty's norm stay
float32 either way (``lmisa.losses``).

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

__all__ = ["autocast", "bf16_native", "cpu_bf16_instructions", "precision_name", "trained_in_bf16"]

BF16, FLOAT32 = "bf16 autocast", "float32"  # the names a run's hardware.txt ends with, since bf16 on CPUs


def precision_name(bf16: bool) -> str:
    """The precision as a run's ``hardware.txt`` and ``train.log`` name it (read back by :func:`trained_in_bf16`)."""
    return BF16 if bf16 else FLOAT32


def bf16_native(device: torch.device, dims: int = 2) -> bool:
    """Whether bf16 autocast is worth it on ``device`` for a ``dims``-D network: any CUDA device (as before; GPUs
    older than Ampere emulate it); a CPU with AMX tiles; a CPU with AVX512-BF16 alone for 2D networks only. There,
    3D training gave non-finite Conv3d weight gradients in 3 of 30 fresh generators at an 8 x 16 x 16 patch (2D: 0 of
    52; docs/prereg/2026-12-06-cpu-bf16-avx512.md), so 3D keeps float32."""
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    instructions = cpu_bf16_instructions()
    return instructions == "amx" or (instructions == "avx512_bf16" and dims == 2)


def cpu_bf16_instructions() -> str | None:
    """This CPU's bf16 instructions that oneDNN computes convolutions with, as the installed torch reports them:
    ``"amx"`` (AMX tiles), ``"avx512_bf16"``, or None (also for a torch without the probes)."""
    for name, probe in (("amx", "_is_amx_tile_supported"), ("avx512_bf16", "_is_avx512_bf16_supported")):
        check = getattr(torch.cpu, probe, None)
        if check is not None and check():
            return name
    return None


def autocast(device: torch.device, enabled: bool = True, dims: int = 2) -> AbstractContextManager:
    """bf16 autocast on ``device`` when ``enabled`` and the device computes bf16 natively for a ``dims``-D network
    (:func:`bf16_native`); else nothing."""
    if enabled and bf16_native(device, dims):
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
