"""The LMISA shape critic: a small fully convolutional WGAN critic on segmentation maps.

METHOD.md section 3; the layout follows the authors' ``Discriminator`` (``model/gan_10k.py`` in GitHub
MinaJf/LMISA), written once for 2D and 3D::

    stem      k x k conv (k = 7, with bias) -> w0, leaky ReLU
    level l   3x3 conv (no bias) -> w_l, [norm], leaky ReLU;  max-pool 2 between levels
    output    1x1 conv (no bias) -> 1: a patch map (N, 1, *S / 2**(L-1)), linear

Input: segmentation maps WITHOUT the background channel (``num_classes - 1`` channels): one-hot source
labels ("real") or softmax predictions on target images ("fake"); see ``lmisa.losses.to_critic_input``.

No batch normalisation: the WGAN-GP penalty is a per-sample gradient norm, and batch norm couples the
samples of a batch (the critic's output for one sample would depend on the others).  ``norm="instance"``
or ``"layer"`` (GroupNorm with one group) is offered as an option; the default ``"none"`` is the paper's.

Parameter counts (``in_channels=4``, defaults otherwise; asserted in the tests):
2D 102,352; 3D 319,312.

Differences from the authors' code: the output is linear (the authors pass the critic output through a
leaky ReLU, which bounds it from below at a fifth of its negative part: not a WGAN critic); Kaiming-normal
initialisation; optional instance/layer norm.  Spatial sizes not divisible by ``2**(L-1)`` are accepted
(max-pooling floors).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from lmisa.nets.hybrid import _init_conv, conv_layers

__all__ = ["ShapeCritic"]

_CRITIC_NORMS = ("none", "instance", "layer")


def _critic_norm(norm: str, dims: int, channels: int) -> nn.Module:
    if norm == "none":
        return nn.Identity()
    if norm == "instance":
        return (nn.InstanceNorm2d if dims == 2 else nn.InstanceNorm3d)(channels, affine=True)
    if norm == "layer":
        return nn.GroupNorm(1, channels)
    raise ValueError(f"critic norm must be one of {_CRITIC_NORMS} (never batch norm with WGAN-GP), got {norm!r}")


class ShapeCritic(nn.Module):
    """WGAN critic on background-free segmentation maps; returns a patch map ``(N, 1, *S')``.

    Args:
        dims: 2 or 3.
        in_channels: ``num_classes - 1`` (the background channel is dropped).
        widths: per-level widths (``len(widths)`` conv levels, ``len(widths) - 1`` max-poolings).
        norm: ``"none"`` (paper), ``"instance"`` or ``"layer"``; batch norm is refused.
        leaky_slope: negative slope of the leaky ReLUs (0.2).
        stem_kernel: stem kernel, int or per-axis tuple (7).
    """

    def __init__(
        self,
        dims: int = 2,
        in_channels: int = 4,
        widths: Sequence[int] = (16, 32, 64, 128),
        norm: str = "none",
        leaky_slope: float = 0.2,
        stem_kernel: int | Sequence[int] = 7,
    ):
        super().__init__()
        Conv, _, Pool = conv_layers(dims)
        widths = tuple(int(w) for w in widths)
        if len(widths) < 1 or min(widths) < 1:
            raise ValueError(f"widths must be a non-empty sequence of positive ints, got {widths!r}")
        if norm not in _CRITIC_NORMS:
            raise ValueError(
                f"critic norm must be one of {_CRITIC_NORMS} (never batch norm with WGAN-GP), got {norm!r}"
            )
        ks = (stem_kernel,) * dims if isinstance(stem_kernel, int) else tuple(int(k) for k in stem_kernel)
        if len(ks) != dims or any(k < 1 or k % 2 == 0 for k in ks):
            raise ValueError(f"stem_kernel must be an odd int or {dims} odd ints, got {stem_kernel!r}")
        self.dims = dims
        self.in_channels = in_channels
        self.widths = widths

        stem = Conv(in_channels, widths[0], ks, padding=tuple(k // 2 for k in ks), bias=True)
        _init_conv(stem, leaky_slope)
        layers: list[nn.Module] = [stem, nn.LeakyReLU(leaky_slope)]
        ch = widths[0]
        for i, w in enumerate(widths):
            conv = Conv(ch, w, 3, padding=1, bias=False)
            _init_conv(conv, leaky_slope)
            layers += [conv, _critic_norm(norm, dims, w), nn.LeakyReLU(leaky_slope)]
            if i < len(widths) - 1:
                layers.append(Pool(2))
            ch = w
        out = Conv(ch, 1, 1, bias=False)
        nn.init.normal_(out.weight, std=ch**-0.5)
        layers.append(out)
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Patch scores ``(N, 1, *S')`` (higher = more like real label maps)."""
        if x.dim() != self.dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"ShapeCritic(dims={self.dims}, in_channels={self.in_channels}) expects (N, "
                f"{self.in_channels}, *spatial) with {self.dims} spatial axes, got shape {tuple(x.shape)}"
            )
        return self.body(x)

    def extra_repr(self) -> str:
        return f"dims={self.dims}, in_channels={self.in_channels}, widths={self.widths}"
