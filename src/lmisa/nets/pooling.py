"""Max-pooling that is fast on the CPU: ``MaxPool2d`` / ``MaxPool3d``, drop-in for ``nn.MaxPool2d`` / ``nn.MaxPool3d``.

Why: PyTorch's CPU kernel for max-pooling a channels-first tensor with indices (what training needs) is slow,
and the same op on channels-last memory is not. Measured on this project's 2-core CPU, one thread, 2x2 pooling
of a batch of 16 (``benchmarks/bench_pooling.py``): 32 x 96 x 96 bf16 46 ms -> 16 ms forward + backward, 64 x 48 x 48
23 -> 9 ms; the plain pooling was about 12 % of an LMISA training step. On the CPU these layers pool a
channels-last copy and hand back channels-first tensors. The values, the indices and so every gradient (the
critic's gradient penalty differentiates through the backward too) are those of the plain op, bit for bit; on
other devices, for unbatched input, and when scripted or traced (export), the plain op runs. The fast path has
no forward-mode derivative and does not run under ``torch.func.vmap``; lmisa uses neither.

Example:
    >>> import torch
    >>> x = torch.randn(2, 3, 8, 8)
    >>> torch.equal(MaxPool2d(2)(x), torch.nn.MaxPool2d(2)(x))
    True
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MaxPool2d", "MaxPool3d"]


def _as_list(value: Any, dims: int) -> list[int]:
    return [int(v) for v in value] if isinstance(value, (tuple, list)) else [int(value)] * dims


class _ChannelsLastMaxPool(torch.autograd.Function):
    """Pool a channels-last copy (fast on the CPU); the backward is the plain op's, from the same indices."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, dims: int, kernel: list[int], stride: list[int], padding: list[int],
                dilation: list[int], ceil_mode: bool) -> torch.Tensor:
        pool = F.max_pool2d if dims == 2 else F.max_pool3d
        layout = torch.channels_last if dims == 2 else torch.channels_last_3d
        y, indices = pool(x.contiguous(memory_format=layout), kernel, stride, padding, dilation,
                          ceil_mode=ceil_mode, return_indices=True)
        ctx.save_for_backward(x, indices.contiguous())
        ctx.args = (dims, kernel, stride, padding, dilation, ceil_mode)
        return y.contiguous()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, indices = ctx.saved_tensors
        dims, kernel, stride, padding, dilation, ceil_mode = ctx.args
        op = torch.ops.aten.max_pool2d_with_indices_backward if dims == 2 else torch.ops.aten.max_pool3d_with_indices_backward
        # differentiable in ``grad``: a double backward (create_graph) goes through it as through the plain op
        return op(grad.contiguous(), x, kernel, stride, padding, dilation, ceil_mode, indices), None, None, None, None, None, None


class _CpuChannelsLastPool(nn.Module):
    """The forward of both layers (``dims``: 2 or 3, set by the subclass)."""

    dims: int

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.device.type == "cpu" and input.dim() == self.dims + 2 and not self.return_indices \
                and not torch.jit.is_scripting() and not torch.jit.is_tracing():
            return self._channels_last(input)
        return self._plain(input)

    def _plain(self, input: torch.Tensor) -> torch.Tensor:
        if self.dims == 2:
            return F.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation, ceil_mode=self.ceil_mode)
        return F.max_pool3d(input, self.kernel_size, self.stride, self.padding, self.dilation, ceil_mode=self.ceil_mode)

    @torch.jit.unused
    def _channels_last(self, x: torch.Tensor) -> torch.Tensor:
        n = self.dims
        return _ChannelsLastMaxPool.apply(x, n, _as_list(self.kernel_size, n), _as_list(self.stride, n),
                                          _as_list(self.padding, n), _as_list(self.dilation, n), self.ceil_mode)


class MaxPool2d(_CpuChannelsLastPool, nn.MaxPool2d):
    """``nn.MaxPool2d`` that pools channels-last on the CPU (same results, faster; see the module docstring)."""

    __constants__ = [*nn.MaxPool2d.__constants__, "dims"]
    dims = 2


class MaxPool3d(_CpuChannelsLastPool, nn.MaxPool3d):
    """``nn.MaxPool3d`` that pools channels-last on the CPU (same results, faster; see the module docstring)."""

    __constants__ = [*nn.MaxPool3d.__constants__, "dims"]
    dims = 3
