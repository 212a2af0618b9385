"""Networks: the LMISA hybrid generator (segmentation + reconstruction) and the shape critic.

>>> import torch
>>> from lmisa.nets import build_generator, build_critic, count_parameters
>>> net = build_generator(); seg, rec = net(torch.zeros(1, 1, 64, 64)); seg.shape
torch.Size([1, 5, 64, 64])
>>> rec.shape
torch.Size([1, 1, 64, 64])
>>> count_parameters(net), count_parameters(build_critic())
(772736, 102352)
>>> build_critic()(torch.zeros(1, 4, 64, 64)).shape
torch.Size([1, 1, 8, 8])
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from lmisa.nets.critic import ShapeCritic
from lmisa.nets.hybrid import HybridNet

__all__ = ["HybridNet", "ShapeCritic", "build_generator", "build_critic", "count_parameters",
           "count_inference_parameters", "segment_logits"]


def build_generator(
    dims: int = 2,
    in_channels: int = 1,
    num_classes: int = 5,
    widths: Sequence[int] = (16, 32, 64, 128),
    recon_from: str = "decoder",
    norm: str = "none",
    leaky_slope: float = 0.2,
    stem_kernel: int | Sequence[int] = 7,
) -> HybridNet:
    """The LMISA hybrid network (defaults: the paper's 2D generator, 772,736 parameters)."""
    return HybridNet(
        dims=dims,
        in_channels=in_channels,
        num_classes=num_classes,
        widths=widths,
        recon_from=recon_from,
        norm=norm,
        leaky_slope=leaky_slope,
        stem_kernel=stem_kernel,
    )


def build_critic(
    dims: int = 2,
    in_channels: int = 4,
    widths: Sequence[int] = (16, 32, 64, 128),
    norm: str = "none",
    leaky_slope: float = 0.2,
    stem_kernel: int | Sequence[int] = 7,
) -> ShapeCritic:
    """The shape critic; ``in_channels = num_classes - 1`` (defaults: 2D, 102,352 parameters)."""
    return ShapeCritic(
        dims=dims, in_channels=in_channels, widths=widths, norm=norm, leaky_slope=leaky_slope, stem_kernel=stem_kernel
    )


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def count_inference_parameters(net: nn.Module) -> int:
    """Parameters a prediction computes with: a HybridNet's reconstruction head and decoder train only.

    >>> count_inference_parameters(build_generator(recon_from="bottleneck", norm="instance"))
    774576
    """
    if isinstance(net, HybridNet):
        unused = count_parameters(net.recon_head) + count_parameters(net.recon_decoder)
        return count_parameters(net) - unused
    return count_parameters(net)


def segment_logits(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Segmentation logits of any segmenter: ``forward_seg`` where the net has one (a HybridNet then skips
    its training-only reconstruction decoder, about 1/7 of a forward), else the first output of ``net(x)``.

    >>> segment_logits(build_generator(recon_from="bottleneck"), torch.zeros(2, 1, 64, 64)).shape
    torch.Size([2, 5, 64, 64])
    """
    forward_seg = getattr(net, "forward_seg", None)
    if forward_seg is not None:
        return forward_seg(x)
    out = net(x)
    return out[0] if isinstance(out, (tuple, list)) else out
