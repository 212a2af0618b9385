"""bf16 autocast only where the device computes bf16 natively (CUDA, CPUs with AMX or AVX512-BF16), and only
when asked."""

from __future__ import annotations

import pytest
import torch

from conftest import set_cpu_bf16
from lmisa.precision import autocast, bf16_native

CPU = torch.device("cpu")


@pytest.mark.parametrize("amx, avx512_bf16", [(True, False), (False, True), (True, True), (False, False)])
def test_cpu_autocasts_to_bf16_only_with_bf16_instructions(monkeypatch, amx: bool, avx512_bf16: bool) -> None:
    set_cpu_bf16(monkeypatch, amx=amx, avx512_bf16=avx512_bf16)
    native = amx or avx512_bf16
    assert bf16_native(CPU) is native
    conv = torch.nn.Conv2d(1, 2, 3)
    with autocast(CPU):
        y = conv(torch.rand(1, 1, 8, 8))
    assert y.dtype == (torch.bfloat16 if native else torch.float32)


@pytest.mark.parametrize("amx, avx512_bf16, native_3d", [(True, False, True), (False, True, False), (True, True, True)])
def test_3d_networks_keep_float32_on_avx512_bf16_alone(monkeypatch, amx: bool, avx512_bf16: bool,
                                                       native_3d: bool) -> None:
    set_cpu_bf16(monkeypatch, amx=amx, avx512_bf16=avx512_bf16)
    assert bf16_native(CPU, dims=3) is native_3d
    conv = torch.nn.Conv3d(1, 2, 3)
    with autocast(CPU, dims=3):
        y = conv(torch.rand(1, 1, 4, 8, 8))
    assert y.dtype == (torch.bfloat16 if native_3d else torch.float32)


def test_autocast_can_be_turned_off(monkeypatch) -> None:
    set_cpu_bf16(monkeypatch, amx=True, avx512_bf16=True)
    with autocast(CPU, enabled=False):
        assert not torch.is_autocast_enabled("cpu")


def test_a_torch_without_the_probes_stays_float32(monkeypatch) -> None:
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    assert not bf16_native(CPU)


def test_cuda_counts_as_native() -> None:
    assert bf16_native(torch.device("cuda"))
