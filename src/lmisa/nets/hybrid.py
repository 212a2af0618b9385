"""The LMISA hybrid network: a light U-Net with a segmentation head and a reconstruction head.

METHOD.md section 2; the layout follows the authors' TensorFlow code (``model/gan_10k.py`` and
``model/gan_10k_3D.py`` in GitHub MinaJf/LMISA), written once for 2D and 3D (``dims=2|3`` picks
``nn.Conv2d``/``nn.Conv3d`` etc.; there is a single code path).

Layout (``widths=(w0, ..., wL-1)``, default ``(16, 32, 64, 128)``, ``L = len(widths)`` levels)::

    stem      k x k conv (k = 7, with bias) -> w0, leaky ReLU
    level l   [1x1 projection to w_l, only if its input does not already have w_l channels]
              c1 = conv3x3(x); c2 = conv3x3(act(c1))
              y  = act(c2 + c1 + x)                    residual block of two 3x3 convolutions
              out = cat(y, x)                          output concatenated with the block input
              -> 2 * w_l channels; max-pool 2 between levels (L - 1 poolings)
    decoder   for l = L-2 .. 0:
              u  = act(convT3x3 stride 2 (x) -> w_l)
              r  = cat(skip_l, u)                      skip_l has 2*w_l channels, r has 3*w_l
              c1 = conv3x3(r); c2 = conv3x3(act(c1))
              x  = act(c2 + c1 + conv1x1(r) + r[:, :w_l])
    heads     1x1 conv -> num_classes (segmentation logits), 1x1 conv -> 1 (reconstruction, linear)

With the default doubling widths the input of every level already has ``w_l`` channels (the stem gives
w0; level l-1 gives ``2 * w_{l-1} = w_l``), so no projection is built and the network is exactly the
authors' 2D/3D generator.  Convolutions have no bias (as the authors'), except the stem.

Parameter counts (``in_channels=1, num_classes=5``, defaults otherwise; asserted in the tests):

============================  =========  =========
configuration                  2D         3D
============================  =========  =========
``recon_from="decoder"``       772,736    2,288,864
``recon_from="bottleneck"``    991,616    2,945,504
============================  =========  =========

(The paper: about 0.77 M in 2D and 2.3 M in 3D; the authors' code gives the same numbers.)

``recon_from`` selects where the reconstruction comes from:

* ``"decoder"`` (the paper): a 1x1 head on the shared decoder, beside the segmentation head.  Because
  the decoder sees every encoder level through the skip connections, reconstructing the input is
  nearly free (METHOD.md section 6) and may put little pressure on the deep features.
* ``"bottleneck"``: a separate light decoder WITHOUT skip connections reconstructs the input from the
  bottleneck features only (per level: transposed conv 3x3 stride 2 + one 3x3 conv, leaky ReLU; then a
  1x1 conv to 1 channel).  The whole image must pass through the bottleneck, so reconstructing target
  images forces the deep shared features to represent the target domain.  It adds 218,896 parameters
  in 2D (656,656 in 3D) that are only used in training; ``forward_seg`` never runs them.

Differences from the authors' code (all deliberate):

* the heads are linear (the authors pass both the segmentation logits and the reconstruction through a
  leaky ReLU, which clips negative logits and negative z-scored intensities to a fifth);
* the encoder block adds its input once (``act(c2 + c1 + x)``); the authors add it twice (explicitly
  and again through their ``_Residual`` helper), i.e. an identity scaled by 2;
* a 1x1 projection is inserted where the channel counts do not match (non-doubling ``widths``), where the
  authors' residual helper would zero-pad or truncate;
* optional normalisation (``norm="instance"|"batch"``) after every 3x3/transposed/1x1 conv of the blocks
  (where the authors' ``use_bn`` puts it); default ``"none"`` as in the paper;
* initialisation: Kaiming-normal (fan-in, leaky slope) instead of the authors' truncated normal, scaled
  by 0.5 on the convolutions that feed a residual sum so that activations stay O(1) at init (the
  bottleneck's std is about 2.5 for unit-variance input instead of about 7 unscaled); heads keep
  PyTorch's default initialisation.

Inputs must have spatial sizes divisible by ``2 ** (L - 1)`` (8 by default); ``forward`` raises a
``ValueError`` naming the size and the required multiple otherwise.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from lmisa.nets.pooling import MaxPool2d, MaxPool3d

__all__ = ["HybridNet", "conv_layers", "make_norm"]

_NORMS = ("none", "instance", "batch")


def conv_layers(dims: int) -> tuple[type[nn.Module], type[nn.Module], type[nn.Module]]:
    """``(Conv, ConvTranspose, MaxPool)`` classes for 2 or 3 spatial dimensions (the pooling: lmisa.nets.pooling,
    the plain op's results, faster on the CPU)."""
    if dims == 2:
        return nn.Conv2d, nn.ConvTranspose2d, MaxPool2d
    if dims == 3:
        return nn.Conv3d, nn.ConvTranspose3d, MaxPool3d
    raise ValueError(f"dims must be 2 or 3, got {dims!r}")


def make_norm(norm: str, dims: int, channels: int) -> nn.Module:
    """A normalisation layer (``"none"`` -> identity, ``"instance"`` (affine), ``"batch"``)."""
    if norm == "none":
        return nn.Identity()
    if norm == "instance":
        return (nn.InstanceNorm2d if dims == 2 else nn.InstanceNorm3d)(channels, affine=True)
    if norm == "batch":
        return (nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d)(channels)
    raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")


def _init_conv(conv: nn.Module, slope: float, gain: float = 1.0) -> None:
    nn.init.kaiming_normal_(conv.weight, a=slope, mode="fan_in", nonlinearity="leaky_relu")
    if gain != 1.0:
        with torch.no_grad():
            conv.weight.mul_(gain)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class _EncoderBlock(nn.Module):
    """Residual block of two 3x3 convs; its output is concatenated with its input (2*width channels)."""

    def __init__(self, dims: int, in_ch: int, width: int, norm: str, slope: float):
        super().__init__()
        Conv, _, _ = conv_layers(dims)
        self.proj = Conv(in_ch, width, 1, bias=False) if in_ch != width else nn.Identity()
        self.conv1 = Conv(width, width, 3, padding=1, bias=False)
        self.norm1 = make_norm(norm, dims, width)
        self.conv2 = Conv(width, width, 3, padding=1, bias=False)
        self.norm2 = make_norm(norm, dims, width)
        self.act = nn.LeakyReLU(slope)
        if isinstance(self.proj, Conv):
            _init_conv(self.proj, slope)
        _init_conv(self.conv1, slope, gain=0.5)
        _init_conv(self.conv2, slope, gain=0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        c1 = self.norm1(self.conv1(x))
        c2 = self.norm2(self.conv2(self.act(c1)))
        y = self.act(c2 + c1 + x)
        return torch.cat((y, x), 1)


class _DecoderBlock(nn.Module):
    """Transposed conv (x2) -> concat with the skip -> residual block with a 1x1 and a truncated identity."""

    def __init__(self, dims: int, in_ch: int, skip_ch: int, width: int, norm: str, slope: float):
        super().__init__()
        Conv, ConvT, _ = conv_layers(dims)
        self.width = width
        self.up = ConvT(in_ch, width, 3, stride=2, padding=1, output_padding=1, bias=False)
        self.norm_up = make_norm(norm, dims, width)
        cat_ch = skip_ch + width
        self.conv1 = Conv(cat_ch, width, 3, padding=1, bias=False)
        self.norm1 = make_norm(norm, dims, width)
        self.conv2 = Conv(width, width, 3, padding=1, bias=False)
        self.norm2 = make_norm(norm, dims, width)
        self.conv3 = Conv(cat_ch, width, 1, bias=False)
        self.norm3 = make_norm(norm, dims, width)
        self.act = nn.LeakyReLU(slope)
        # Transposed conv: fan_in as PyTorch sees it is the OUTPUT channels; use the real fan-in
        # (in_ch * 3**dims / 2**dims taps per output voxel on average) instead.
        nn.init.normal_(self.up.weight, std=(2.0 / ((1 + slope**2) * in_ch * 3**dims / 2**dims)) ** 0.5)
        _init_conv(self.conv1, slope, gain=0.5)
        _init_conv(self.conv2, slope, gain=0.5)
        _init_conv(self.conv3, slope, gain=0.5)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        u = self.act(self.norm_up(self.up(x)))
        r = torch.cat((skip, u), 1)
        c1 = self.norm1(self.conv1(r))
        c2 = self.norm2(self.conv2(self.act(c1)))
        c3 = self.norm3(self.conv3(r))
        return self.act(c2 + c1 + c3 + r[:, : self.width])


class _LightUpBlock(nn.Module):
    """Skip-free upsampling step of the bottleneck reconstruction decoder."""

    def __init__(self, dims: int, in_ch: int, width: int, norm: str, slope: float):
        super().__init__()
        Conv, ConvT, _ = conv_layers(dims)
        self.up = ConvT(in_ch, width, 3, stride=2, padding=1, output_padding=1, bias=False)
        self.norm_up = make_norm(norm, dims, width)
        self.conv = Conv(width, width, 3, padding=1, bias=False)
        self.norm = make_norm(norm, dims, width)
        self.act = nn.LeakyReLU(slope)
        nn.init.normal_(self.up.weight, std=(2.0 / ((1 + slope**2) * in_ch * 3**dims / 2**dims)) ** 0.5)
        _init_conv(self.conv, slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm_up(self.up(x)))
        return self.act(self.norm(self.conv(x)))


class HybridNet(nn.Module):
    """LMISA generator: shared encoder-decoder with a segmentation head and a reconstruction head.

    Args:
        dims: 2 or 3 spatial dimensions.
        in_channels: input channels (1; or 2k+1 neighbouring slices as channels for 2.5D input).
        num_classes: segmentation classes, background included.
        widths: per-level widths; ``len(widths)`` levels, ``len(widths) - 1`` max-poolings.
        recon_from: ``"decoder"`` (paper: head on the shared decoder) or ``"bottleneck"`` (separate
            skip-free light decoder from the bottleneck features); see the module docstring.
        norm: ``"none"`` (paper), ``"instance"`` or ``"batch"``.
        leaky_slope: negative slope of the leaky ReLUs (0.2, TensorFlow's default, as the authors').
        stem_kernel: kernel of the stem conv, an int or a per-axis tuple (e.g. ``(3, 7, 7)`` in 3D for
            thick slices); 7 by default.

    ``forward(x) -> (seg_logits, recon)`` with shapes ``(N, num_classes, *S)`` and ``(N, 1, *S)``;
    ``forward_seg(x)`` returns the logits only (inference and export).  Both are ``torch.jit.trace``-able
    and the module is ``torch.jit.script``-able (``forward_seg`` is exported); the input-size check runs in
    eager mode only (traced/scripted graphs skip it).
    """

    def __init__(
        self,
        dims: int = 2,
        in_channels: int = 1,
        num_classes: int = 5,
        widths: Sequence[int] = (16, 32, 64, 128),
        recon_from: str = "decoder",
        norm: str = "none",
        leaky_slope: float = 0.2,
        stem_kernel: int | Sequence[int] = 7,
    ):
        super().__init__()
        Conv, _, Pool = conv_layers(dims)
        widths = tuple(int(w) for w in widths)
        if len(widths) < 1 or min(widths) < 1:
            raise ValueError(f"widths must be a non-empty sequence of positive ints, got {widths!r}")
        if recon_from not in ("decoder", "bottleneck"):
            raise ValueError(f"recon_from must be 'decoder' or 'bottleneck', got {recon_from!r}")
        if norm not in _NORMS:
            raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")
        if in_channels < 1 or num_classes < 1:
            raise ValueError(f"in_channels and num_classes must be >= 1, got {in_channels}, {num_classes}")
        ks = (stem_kernel,) * dims if isinstance(stem_kernel, int) else tuple(int(k) for k in stem_kernel)
        if len(ks) != dims or any(k < 1 or k % 2 == 0 for k in ks):
            raise ValueError(f"stem_kernel must be an odd int or {dims} odd ints, got {stem_kernel!r}")

        self.dims = dims
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.widths = widths
        self.levels = len(widths)
        self.multiple = 2 ** (self.levels - 1)
        self.recon_from = recon_from
        self.norm = norm

        self.stem = Conv(in_channels, widths[0], ks, padding=tuple(k // 2 for k in ks), bias=True)
        _init_conv(self.stem, leaky_slope)
        self.act = nn.LeakyReLU(leaky_slope)

        self.encoder = nn.ModuleList()
        ch = widths[0]
        for w in widths:
            self.encoder.append(_EncoderBlock(dims, ch, w, norm, leaky_slope))
            ch = 2 * w
        self.pool = Pool(2)

        self.decoder = nn.ModuleList()
        for level in range(self.levels - 2, -1, -1):
            w = widths[level]
            self.decoder.append(_DecoderBlock(dims, ch, 2 * w, w, norm, leaky_slope))
            ch = w
        self.seg_head = Conv(ch, num_classes, 1, bias=False)

        self.recon_decoder = nn.ModuleList()
        if recon_from == "decoder":
            self.recon_head = Conv(ch, 1, 1, bias=False)
        else:
            rch = 2 * widths[-1]
            for level in range(self.levels - 2, -1, -1):
                self.recon_decoder.append(_LightUpBlock(dims, rch, widths[level], norm, leaky_slope))
                rch = widths[level]
            self.recon_head = Conv(rch, 1, 1, bias=False)

    # --- helpers -------------------------------------------------------------------------------------

    @torch.jit.unused
    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is ``(N, in_channels, *S)`` with every S divisible.

        Only Python ints are inspected: no device synchronisation.
        """
        if x.dim() != self.dims + 2:
            raise ValueError(
                f"HybridNet(dims={self.dims}) expects a {self.dims + 2}-D input (N, C, *spatial), "
                f"got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channel(s), got shape {tuple(x.shape)}")
        spatial = [int(s) for s in x.shape[2:]]
        m = self.multiple
        if any(s % m != 0 for s in spatial):
            raise ValueError(
                f"input spatial size {tuple(spatial)} is not divisible by {m} "
                f"(2**(levels-1) for {self.levels} levels); pad or crop every spatial axis to a multiple of {m}"
            )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Bottleneck features and the skip tensors (shallowest first) for ``x``."""
        if not torch.jit.is_scripting() and not torch.jit.is_tracing():
            self.check_input(x)  # shape arithmetic only; skipped inside traced/scripted graphs
        x = self.act(self.stem(x))
        skips: list[torch.Tensor] = []
        n = len(self.encoder)
        for i, block in enumerate(self.encoder):
            x = block(x)
            if i < n - 1:
                skips.append(x)
                x = self.pool(x)
        return x, skips

    def decode(self, z: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """Shared decoder features (``widths[0]`` channels, full resolution)."""
        x = z
        n = len(skips)
        for i, block in enumerate(self.decoder):
            x = block(x, skips[n - 1 - i])
        return x

    # --- forward ---------------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(seg_logits (N, num_classes, *S), recon (N, 1, *S))``."""
        z, skips = self.encode(x)
        feats = self.decode(z, skips)
        seg = self.seg_head(feats)
        if self.recon_from == "decoder":
            recon = self.recon_head(feats)
        else:
            r = z
            for block in self.recon_decoder:
                r = block(r)
            recon = self.recon_head(r)
        return seg, recon

    @torch.jit.export
    def forward_seg(self, x: torch.Tensor) -> torch.Tensor:
        """Segmentation logits only (skips the bottleneck reconstruction decoder)."""
        z, skips = self.encode(x)
        return self.seg_head(self.decode(z, skips))

    def extra_repr(self) -> str:
        return (
            f"dims={self.dims}, in_channels={self.in_channels}, num_classes={self.num_classes}, "
            f"widths={self.widths}, recon_from={self.recon_from!r}, norm={self.norm!r}"
        )
