"""bf16 autocast only where the device computes bf16 natively (CUDA, CPUs with AMX), and only when asked."""

from __future__ import annotations

import pytest
import torch

from lmisa.precision import autocast, bf16_native

CPU = torch.device("cpu")


@pytest.mark.parametrize("amx", [True, False])
def test_cpu_autocasts_to_bf16_only_with_amx(monkeypatch, amx: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert bf16_native(CPU) is amx
    conv = torch.nn.Conv2d(1, 2, 3)
    with autocast(CPU):
        y = conv(torch.rand(1, 1, 8, 8))
    assert y.dtype == (torch.bfloat16 if amx else torch.float32)


def test_autocast_can_be_turned_off(monkeypatch) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    with autocast(CPU, enabled=False):
        assert not torch.is_autocast_enabled("cpu")


def test_a_torch_without_the_probe_stays_float32(monkeypatch) -> None:
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert not bf16_native(CPU)


def test_cuda_counts_as_native() -> None:
    assert bf16_native(torch.device("cuda"))
