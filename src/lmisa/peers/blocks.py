"""What the peer methods share: GAN building blocks, LSGAN/BCE/Dice losses and the PeerTrainer base.

Networks (all 2D, channel-first):

* :class:`ResnetGenerator` -- the CycleGAN image translator (Johnson et al. / Zhu et al.):
  ``c7s1-ngf, d(2 ngf), d(4 ngf), n_blocks x R(4 ngf), u(2 ngf), u(ngf), c7s1-out``, instance norm,
  ReLU.  Two deviations from the published translators, for every peer: the output is linear and the
  generator adds its input to it (``out = x + residual``; SIFA's code does this with ``skip=True``,
  then a tanh).  Inputs here are z-scored intensities (not images in [-1, 1]), which a tanh cannot
  reproduce; with the skip the translator starts as the identity.
* :class:`PatchDiscriminator` -- the 70x70 PatchGAN (``C64-C128-C256-C512``, 4x4 convs, leaky ReLU
  0.2, instance norm from the second layer, stride 2 except the last two convs), with a configurable
  number of output maps (SIFA's D_s has a second, auxiliary map).
* :class:`FCDiscriminator` -- the output-space discriminator of AdaptSegNet (Tsai et al. 2018): five
  4x4 convs with stride 2, ``64-128-256-512-1``, leaky ReLU 0.2, no normalisation.

Widths: the peers have no configuration section of their own (``lmisa.config`` has none), so their
widths follow the two LMISA width knobs, which at their defaults give the published sizes:
``ngf = 2 * model.widths[0]`` (32: SIFA's and the CycleGAN-seg translators), ``ndf =
4 * model.critic_widths[0]`` (64: PatchGAN / AdaptSegNet discriminators) and SIFA's encoder base
``model.widths[0]`` (16).  The tests shrink them through the same knobs.

:class:`PeerTrainer` is the Trainer subclass the three peers derive from: it refuses what the peers do
not support (3D, DDP, no target domain), keeps every extra module, optimiser and scheduler in the
checkpoint (``state()`` / ``load()`` extended, ``super()`` called), validates through an optional input
transform (e.g. the source-to-target translator, so model selection sees what the segmenter is trained
on), and logs the parameter counts.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from lmisa.errors import LmisaError
from lmisa.nets import count_parameters
from lmisa.training.checkpoint import load_checkpoint
from lmisa.training.trainer import Trainer

__all__ = [
    "ResBlock",
    "ResnetGenerator",
    "PatchDiscriminator",
    "FCDiscriminator",
    "lsgan_generator_loss",
    "lsgan_discriminator_loss",
    "l1_loss",
    "soft_dice_loss",
    "weighted_cross_entropy",
    "init_normal",
    "peer_widths",
    "PeerTrainer",
]


# --------------------------------------------------------------------------------------------------
# widths and initialisation


def peer_widths(cfg) -> dict[str, int]:
    """``ngf`` (translators/decoders), ``ndf`` (discriminators) and ``enc`` (SIFA encoder base) from ``cfg.model``."""
    w0, c0 = int(cfg.model.widths[0]), int(cfg.model.critic_widths[0])
    return {"ngf": 2 * w0, "ndf": 4 * c0, "enc": w0}


def init_normal(module: nn.Module, std: float = 0.02) -> nn.Module:
    """Convolution weights ~ N(0, std), biases 0 (norm layers untouched); returns ``module``."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


# --------------------------------------------------------------------------------------------------
# translator


class ResBlock(nn.Module):
    """``relu(x + IN(conv(relu(IN(conv(x))))))`` with 3x3 convs (CycleGAN: reflect padding, SIFA: zeros)."""

    def __init__(self, ch: int, padding_mode: str, bias: bool, affine: bool):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(ch, ch, 3, padding=1, padding_mode=padding_mode, bias=bias),
            nn.InstanceNorm2d(ch, affine=affine),
            nn.ReLU(inplace=True),
            nn.Conv2d(ch, ch, 3, padding=1, padding_mode=padding_mode, bias=bias),
            nn.InstanceNorm2d(ch, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


class ResnetGenerator(nn.Module):
    """CycleGAN ResNet translator ``(N, in_ch, H, W) -> (N, out_ch, H, W)``; H, W multiples of 4.

    ``padding_mode``: ``"reflect"`` (CycleGAN) or ``"zeros"`` (SIFA's code); ``affine``: instance norm
    with scale/offset (TensorFlow's ``instance_norm``, SIFA) or without (PyTorch CycleGAN).  The output
    is ``x[:, :out_ch] + c7s1(...)`` (linear, input skip; see the module docstring).
    """

    def __init__(
        self,
        in_ch: int = 1,
        out_ch: int = 1,
        ngf: int = 32,
        n_blocks: int = 9,
        padding_mode: str = "reflect",
        affine: bool = False,
    ):
        super().__init__()
        if out_ch > in_ch:
            raise ValueError(f"the input skip needs out_ch <= in_ch, got {out_ch} > {in_ch}")
        self.out_ch = out_ch
        pm = padding_mode

        def norm(c: int) -> nn.Module:
            return nn.InstanceNorm2d(c, affine=affine)

        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, ngf, 7, padding=3, padding_mode=pm), norm(ngf), nn.ReLU(inplace=True),
            nn.Conv2d(ngf, 2 * ngf, 3, stride=2, padding=1), norm(2 * ngf), nn.ReLU(inplace=True),
            nn.Conv2d(2 * ngf, 4 * ngf, 3, stride=2, padding=1), norm(4 * ngf), nn.ReLU(inplace=True),
        ]
        layers += [ResBlock(4 * ngf, pm, bias=True, affine=affine) for _ in range(n_blocks)]
        layers += [
            nn.ConvTranspose2d(4 * ngf, 2 * ngf, 3, stride=2, padding=1, output_padding=1), norm(2 * ngf),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(2 * ngf, ngf, 3, stride=2, padding=1, output_padding=1), norm(ngf),
            nn.ReLU(inplace=True),
            nn.Conv2d(ngf, out_ch, 7, padding=3, padding_mode=pm),
        ]
        self.body = nn.Sequential(*layers)
        init_normal(self, 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, : self.out_ch] + self.body(x)


# --------------------------------------------------------------------------------------------------
# discriminators


class PatchDiscriminator(nn.Module):
    """70x70 PatchGAN: ``C(ndf) C(2ndf) C(4ndf) C(8ndf)`` 4x4 convs, then a 4x4 conv to ``out_ch`` maps.

    Strides 2, 2, 2, 1, 1; leaky ReLU 0.2; instance norm on all but the first layer.  ``padding=1``,
    ``bias=True``, ``affine=False`` is the PyTorch CycleGAN discriminator; ``padding=2``, ``bias=False``,
    ``affine=True`` is SIFA's (TensorFlow ``general_conv2d`` without bias, padded by 2).
    ``forward`` returns ``(N, out_ch, h, w)`` patch scores (raw, for LSGAN).
    """

    def __init__(self, in_ch: int = 1, ndf: int = 64, out_ch: int = 1, padding: int = 1, bias: bool = True,
                 affine: bool = False):
        super().__init__()
        chans = [in_ch, ndf, 2 * ndf, 4 * ndf, 8 * ndf]
        layers: list[nn.Module] = []
        for i in range(4):
            layers.append(nn.Conv2d(chans[i], chans[i + 1], 4, stride=2 if i < 3 else 1, padding=padding, bias=bias))
            if i > 0:
                layers.append(nn.InstanceNorm2d(chans[i + 1], affine=affine))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        layers.append(nn.Conv2d(8 * ndf, out_ch, 4, stride=1, padding=padding, bias=bias))
        self.body = nn.Sequential(*layers)
        init_normal(self, 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class FCDiscriminator(nn.Module):
    """AdaptSegNet's output-space discriminator on ``(N, num_classes, H, W)`` softmax maps.

    Five 4x4 convs, stride 2, padding 1: ``num_classes -> ndf -> 2ndf -> 4ndf -> 8ndf -> 1``, leaky ReLU
    0.2 between them, no normalisation; returns logits ``(N, 1, H/32, W/32)`` (for BCE-with-logits).
    """

    def __init__(self, in_ch: int = 5, ndf: int = 64):
        super().__init__()
        chans = [in_ch, ndf, 2 * ndf, 4 * ndf, 8 * ndf]
        layers: list[nn.Module] = []
        for i in range(4):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.Conv2d(8 * ndf, 1, 4, stride=2, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


# --------------------------------------------------------------------------------------------------
# losses (float32, 0-d, no host sync)


def lsgan_generator_loss(scores: torch.Tensor) -> torch.Tensor:
    """``mean (D(fake) - 1)^2``: the generator wants its samples scored as real."""
    return (scores.float() - 1.0).square().mean()


def lsgan_discriminator_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """``0.5 * (mean (D(real) - 1)^2 + mean D(fake)^2)`` (CycleGAN / SIFA)."""
    return 0.5 * ((real_scores.float() - 1.0).square().mean() + fake_scores.float().square().mean())


def l1_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.float() - b.float()).abs().mean()


def soft_dice_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """SIFA's Dice loss: ``1 - mean_c 2 sum(p_c g_c) / (sum p_c^2 + sum g_c)`` over the batch, background included."""
    p = torch.softmax(logits.float(), dim=1)
    g = F.one_hot(labels.long(), p.shape[1]).movedim(-1, 1).to(p.dtype)
    dims = (0,) + tuple(range(2, p.dim()))
    inter = (p * g).sum(dims)
    denom = p.square().sum(dims) + g.sum(dims)
    return 1.0 - (2.0 * inter / (denom + 1e-7)).mean()


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """SIFA's cross-entropy: class ``c`` weighted by ``1 - (share of c in the batch)``; p clipped at 0.005."""
    p = torch.softmax(logits.float(), dim=1)
    g = F.one_hot(labels.long(), p.shape[1]).movedim(-1, 1).to(p.dtype)
    dims = (0,) + tuple(range(2, p.dim()))
    w = 1.0 - g.sum(dims) / g.sum()
    shape = (1, -1) + (1,) * (p.dim() - 2)
    return -(w.view(shape) * g * p.clamp(0.005, 1.0).log()).sum(1).mean()


# --------------------------------------------------------------------------------------------------
# trainer base


class _TransformedNet(nn.Module):
    """``net(transform(x))`` as a ``(seg, seg)`` pair, for ``Trainer.validation_step`` (which unpacks two outputs).

    The second element stands in for the reconstruction the LMISA network returns; peers have
    ``uses_recon == False``, so validation never scores it.
    """

    def __init__(
        self, net: nn.Module, transform: Callable[[torch.Tensor], torch.Tensor] | None, parts: list[nn.Module]
    ):
        super().__init__()
        self.net = net
        self.transform = transform
        self.parts = nn.ModuleList(parts)  # modules used by the transform, for .eval()/.train()

    def forward(self, x: torch.Tensor):
        if self.transform is not None:
            x = self.transform(x)
        out = self.net(x)
        seg = out[0] if isinstance(out, (tuple, list)) else out
        return seg, seg


class PeerTrainer(Trainer):
    """Base of the peer trainers: extra modules/optimisers/schedulers in the checkpoint, checks, logging.

    Subclasses fill ``self.extra_modules``, ``self.extra_optimisers`` and ``self.extra_schedulers``
    (name -> object) in their ``build_models`` / ``build_optimisers``; ``state()`` stores them under
    ``"peer"`` and ``load()`` restores them.  ``validation_input(x)`` may map the source validation
    slices before the segmenter sees them (default: unchanged).
    """

    extra_modules: dict[str, nn.Module]
    extra_optimisers: dict[str, torch.optim.Optimizer]
    extra_schedulers: dict[str, Any]

    def build_models(self) -> None:
        variant = self.cfg.variant
        if self.cfg.train.dims != 2:
            raise LmisaError(f"variant {variant}: only the 2D path is implemented for the peer methods")
        if self.dist is not None:
            raise LmisaError(f"variant {variant}: distributed (torchrun) training is not supported for peer methods")
        if self.data.target_train is None:
            raise LmisaError(f"variant {variant}: a peer UDA method needs the target domain's images (--target)")
        self.extra_modules = {}
        self.extra_optimisers = {}
        self.extra_schedulers = {}
        self.critic = None  # the LMISA shape critic is not used by the peers
        self.build_peer_models()

    def build_peer_models(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _nan(self) -> torch.Tensor:
        """A device-side NaN statistic (a term that does not apply at this step), no host sync."""
        return torch.full((), math.nan, device=self.device)

    # ------------------------------------------------------------------ validation
    def validation_input(self) -> tuple[Callable[[torch.Tensor], torch.Tensor] | None, list[nn.Module]]:
        """``(transform, modules it uses)`` applied to source validation inputs; default none."""
        return None, []

    @torch.no_grad()
    def validation_step(self) -> dict[str, float]:
        transform, parts = self.validation_input()
        net = self.net
        self.net = _TransformedNet(net, transform, parts)
        try:
            return super().validation_step()
        finally:
            self.net = net

    # ------------------------------------------------------------------ logging
    def parameter_counts(self) -> dict[str, int]:
        counts = {"net": count_parameters(self.net)}
        counts.update({k: count_parameters(m) for k, m in self.extra_modules.items()})
        return counts

    def on_epoch_end(self, val: dict[str, float]) -> None:
        for sched in self.extra_schedulers.values():
            sched.step()
        super().on_epoch_end(val)

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        state = super().state()
        state["peer"] = {
            "modules": {k: m.state_dict() for k, m in self.extra_modules.items()},
            "optimisers": {k: o.state_dict() for k, o in self.extra_optimisers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.extra_schedulers.items()},
        }
        return state

    def load(self, path) -> None:
        super().load(path)
        state = load_checkpoint(path, map_location=self.device)
        peer = state.get("peer")
        if peer is None:
            raise LmisaError(f"{path}: no peer state in the checkpoint (not a {self.cfg.variant} run?)")
        for kind, objects in (("modules", self.extra_modules), ("optimisers", self.extra_optimisers),
                              ("schedulers", self.extra_schedulers)):
            missing = sorted(set(objects) - set(peer[kind]))
            if missing:
                raise LmisaError(f"{path}: the checkpoint lacks the {kind} {', '.join(missing)}")
            for k, obj in objects.items():
                obj.load_state_dict(peer[kind][k])
