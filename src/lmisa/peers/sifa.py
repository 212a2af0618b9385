"""``sifa``: synergistic image and feature alignment (Chen, Dou, Chen, Qin, Heng; IEEE TMI 39(7) 2020).

Follows the authors' TensorFlow code (GitHub cchen-cc/SIFA, ``model.py`` / ``main.py`` / ``losses.py``)
layer by layer.  Names (source = labelled domain ``xs, ys``, target = unlabelled ``xt``):

* ``G_t`` (``g_t``): source -> target translator, the ResNet generator c7s1-32, d64, d128, 9 x R128,
  u64, u32, c7s1-C (instance norm with scale/offset, zero padding, biases: the authors' ``g_A``);
* ``E`` (``net.encoder``): the shared encoder, a deep residual network with dilated convolutions
  (the authors' ``e_B``), batch norm, ReLU, three 2x poolings::

      c7-16, R16, pool, R32, pool, R64, R64, pool, R128, R128, R256, R256, R256, R256,
      R512, R512 (-> low-level features), D512, D512 (dilation 2), c3-512, c3-512 (-> features)

  (``R`` a residual block of two 3x3 convs, channels raised by zero-padding the shortcut; ``D`` the
  same with dilated convs, which carry biases as the authors');
* ``C`` (``net.classifier``): 1x1 conv 512 -> classes, bilinear up-sampling to the input size (``s_B``);
  ``C_ll`` (``classifier_ll``): the same on the low-level features (deep supervision, ``s_B_ll``);
* ``U`` (``decoder``): target -> source decoder from E's features: c3-128, 4 x R128 (instance norm),
  three transposed convs (64, 64, 32), c7-C, plus the input image (``de_B`` with ``skip=True``);
* ``D_t`` (``d_t``): PatchGAN on target-appearance images (real ``xt``, fake ``G_t(xs)``);
  ``D_s`` (``d_s``): PatchGAN on source-appearance images with a second, auxiliary output map (real
  ``xs`` / fake ``U(E(xt))``; auxiliary: real ``U(E(G_t(xs)))`` / fake ``U(E(xt))``, i.e. features
  from the two domains told apart after decoding); ``D_p`` (``d_p``) and ``D_p_ll`` (``d_p_ll``):
  PatchGANs on the segmentation outputs (real: predictions on translated source, fake: on target).

Losses (LSGAN everywhere, ``L_adv(D, x) = mean (D(x) - 1)^2``; discriminators ``0.5 ((D(real)-1)^2 +
D(fake)^2)``), with ``cyc = 10 |U(E(G_t(xs))) - xs|_1 + 10 |G_t(U(E(xt))) - xt|_1``:

* ``G_t``: ``cyc + L_adv(D_t, G_t(xs))``                                           (image level, weight 1)
* ``U``:   ``cyc + L_adv(D_s, U(E(xt)))``                                           (image level, weight 1)
* ``E, C, C_ll``: ``seg + 0.1 seg_ll + 0.1 (cyc + L_adv(D_s, U(E(xt)))) + 0.1 L_adv(D_p, C(E(xt)))
  + 0.01 L_adv(D_p_ll, C_ll(E(xt))) + 0.1 L_adv(D_s_aux, U(E(xt)))``, with ``seg = wCE + Dice`` on
  ``C(E(G_t(xs)))`` against ``ys`` (the authors' class-weighted cross-entropy and Dice) and an L2 weight
  decay of 1e-4 (the authors' ``0.0001 * l2_loss``, as Adam ``weight_decay``);
* discriminators: the LSGAN loss with the step's detached images / predictions.

These are the weights of the authors' code: segmentation 1 (CE + Dice), image-level adversarial 1,
feature-/output-level adversarial 0.1 (0.01 for the low-level output), cycle 10 -- used unchanged.
Optimisers (authors' values): Adam lr 2e-4 for ``E + C + C_ll`` (default betas); Adam lr 2e-4, betas
(0.5, 0.999) for ``G_t + U`` and for the discriminators; constant learning rates (``cfg.train.lr`` and
its decay are not used by this variant).

Inference network (``net``, what ``lmisa predict`` runs): ``C(E(x))`` (:class:`SIFASegmenter`).  Model
selection uses source validation slices translated by ``G_t`` (what ``C(E(.))`` is trained on).

Exact parameter counts at the defaults (1 input channel, 5 classes; asserted by the tests):

=====================================  ==========
``E`` (encoder)                         27,519,472
``C`` (classifier)                           2,560
inference ``net = E + C``               27,522,032
``C_ll`` (low-level classifier)              2,560
``G_t`` (translator)                     2,849,537
``U`` (decoder)                          1,902,848
``D_t``                                  2,763,520
``D_s`` (with auxiliary map)             2,771,712
``D_p`` (= ``D_p_ll``, 5 input maps)     2,767,616
training total                          43,347,441
=====================================  ==========

Simplifications and deviations (all deliberate):

* one forward pass per step and one update of every network from it (the authors run their six
  updates one after another, each with a fresh forward pass through the already-updated networks);
  gradients go only to the networks each loss trains (``backward(inputs=...)``);
* no history pool of 50 generated images for the discriminators; no dropout (the authors'
  ``keep_rate`` is 1.0 in their released configuration);
* translator and decoder outputs are linear, ``x + residual`` (the authors: ``tanh(x + residual)`` on
  images in [-1, 1]; inputs here are z-scored intensities); translated source slices are re-z-scored
  before the encoder (prediction z-scores target slices the same way);
* ``D_p`` / ``D_p_ll`` see softmax probabilities (the authors feed logits);
* batch norm eps 1e-3 and momentum 0.1 (TensorFlow: decay 0.9); normal initialisation with the
  authors' standard deviations (0.01 for E and the classifiers, 0.02 for the GAN networks) but not
  truncated at 2 std (PyTorch's truncated normal takes seconds for 43 M weights on a CPU);
* inputs: ``C = 2 * context_slices + 1`` channels (the authors stack 3 neighbouring slices and compare
  only the centre one in the cycle loss; here translators map all C channels);
* epochs are ``train.steps_per_epoch`` random slice pairs; widths follow ``cfg.model`` (see
  :func:`lmisa.peers.blocks.peer_widths`; the defaults give the published sizes).

Left out: the 3D path and distributed (torchrun) training (refused with an error).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lmisa.augment import standardise
from lmisa.nets.pooling import MaxPool2d
from lmisa.peers.blocks import (
    PatchDiscriminator,
    PeerTrainer,
    ResnetGenerator,
    ResBlock,
    init_normal,
    l1_loss,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    peer_widths,
    soft_dice_loss,
    weighted_cross_entropy,
)

__all__ = [
    "SIFAEncoder",
    "SIFASegmenter",
    "SIFADecoder",
    "SIFATrainer",
    "build_inference_net",
    "build_sifa",
    "PARAMS",
    "PARAMS_TRAINING",
    "PARAMS_INFERENCE",
]

PARAMS = {
    "encoder": 27_519_472,
    "classifier": 2_560,
    "classifier_ll": 2_560,
    "g_t": 2_849_537,
    "decoder": 1_902_848,
    "d_t": 2_763_520,
    "d_s": 2_771_712,
    "d_p": 2_767_616,
    "d_p_ll": 2_767_616,
}
PARAMS_INFERENCE = PARAMS["encoder"] + PARAMS["classifier"]  # 27,522,032
PARAMS_TRAINING = sum(PARAMS.values())  # 43,347,441

CYCLE_WEIGHT = 10.0
W_SEG_LL = 0.1
W_SEG_CYCLE = 0.1  # weight of U's loss (cycle + image adversarial) in the encoder's loss
W_ADV_P = 0.1
W_ADV_P_LL = 0.01
W_ADV_AUX = 0.1
LR = 2e-4
GAN_BETAS = (0.5, 0.999)
WEIGHT_DECAY = 1e-4
BN_EPS = 1e-3


# --------------------------------------------------------------------------------------------------
# networks


class _EncBlock(nn.Module):
    """Residual block of two 3x3 convs + batch norm; the shortcut is zero-padded in channels when widening.

    ``dilation=2``: the authors' dilated block (``build_drn_block``), whose convs carry biases.
    """

    def __init__(self, cin: int, cout: int, dilation: int = 1):
        super().__init__()
        bias = dilation > 1
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=bias)
        self.bn1 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=dilation, dilation=dilation, bias=bias)
        self.bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.pad = (cout - cin) // 2
        if cout - cin != 2 * self.pad:
            raise ValueError(f"channel increase {cin} -> {cout} must be even")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(y + x)


def _conv_bn_relu(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout, eps=BN_EPS),
                         nn.ReLU(inplace=True))


class SIFAEncoder(nn.Module):
    """The shared encoder E: ``x (N, C, H, W) -> (features, low-level features)``, both ``(N, 32 fb, H/8, W/8)``."""

    def __init__(self, in_channels: int = 1, fb: int = 16):
        super().__init__()
        self.out_channels = 32 * fb
        self.stem = _conv_bn_relu(in_channels, fb, 7)
        self.level1 = nn.Sequential(_EncBlock(fb, fb), MaxPool2d(2))
        self.level2 = nn.Sequential(_EncBlock(fb, 2 * fb), MaxPool2d(2))
        self.level3 = nn.Sequential(_EncBlock(2 * fb, 4 * fb), _EncBlock(4 * fb, 4 * fb), MaxPool2d(2))
        self.level4 = nn.Sequential(
            _EncBlock(4 * fb, 8 * fb), _EncBlock(8 * fb, 8 * fb),
            _EncBlock(8 * fb, 16 * fb), _EncBlock(16 * fb, 16 * fb), _EncBlock(16 * fb, 16 * fb),
            _EncBlock(16 * fb, 16 * fb),
            _EncBlock(16 * fb, 32 * fb), _EncBlock(32 * fb, 32 * fb),
        )
        self.dilated = nn.Sequential(
            _EncBlock(32 * fb, 32 * fb, dilation=2), _EncBlock(32 * fb, 32 * fb, dilation=2),
            _conv_bn_relu(32 * fb, 32 * fb, 3), _conv_bn_relu(32 * fb, 32 * fb, 3),
        )
        init_normal(self, 0.01)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = self.level4(self.level3(self.level2(self.level1(self.stem(x)))))
        return self.dilated(low), low


class SIFASegmenter(nn.Module):
    """The inference network ``C(E(x))``: logits ``(N, num_classes, H, W)`` (bilinear up-sampling x8).

    ``forward_seg`` = ``forward`` (for ``lmisa predict`` / export); ``forward_features`` also returns
    the encoder's features (training).  H and W must be multiples of 8.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 5, fb: int = 16):
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.encoder = SIFAEncoder(in_channels, fb)
        self.classifier = nn.Conv2d(self.encoder.out_channels, num_classes, 1, bias=False)
        init_normal(self.classifier, 0.01)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if x.shape[-1] % 8 or x.shape[-2] % 8:
            raise ValueError(f"SIFA input sides must be multiples of 8, got {tuple(x.shape[-2:])}")
        feat, low = self.encoder(x)
        logits = F.interpolate(self.classifier(feat), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits, feat, low

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]

    def forward_seg(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)


class SIFADecoder(nn.Module):
    """U: E's features ``(N, 32 fb, h, w)`` -> a source-appearance image ``(N, C, 8h, 8w)`` (+ the input image)."""

    def __init__(self, in_features: int = 512, out_channels: int = 1, ngf: int = 32):
        super().__init__()
        self.out_channels = out_channels

        def up(cin: int, cout: int) -> list[nn.Module]:
            return [nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1),
                    nn.InstanceNorm2d(cout, affine=True), nn.ReLU(inplace=True)]

        self.body = nn.Sequential(
            nn.Conv2d(in_features, 4 * ngf, 3, padding=1, bias=False), nn.InstanceNorm2d(4 * ngf, affine=True),
            nn.ReLU(inplace=True),
            *[ResBlock(4 * ngf, "zeros", bias=False, affine=True) for _ in range(4)],
            *up(4 * ngf, 2 * ngf), *up(2 * ngf, 2 * ngf), *up(2 * ngf, ngf),
            nn.Conv2d(ngf, out_channels, 7, padding=3, bias=False),
        )
        init_normal(self, 0.02)

    def forward(self, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return image[:, : self.out_channels] + self.body(features)


def build_inference_net(cfg, in_channels: int, num_classes: int) -> SIFASegmenter:
    """``E + C`` of a ``sifa`` run of ``cfg`` (what its checkpoints save as ``net``)."""
    return SIFASegmenter(in_channels, num_classes, peer_widths(cfg)["enc"])


def build_sifa(cfg, in_channels: int, num_classes: int) -> dict[str, nn.Module]:
    """Every network of a ``sifa`` run: ``net`` (E + C) and the training-only ones (see ``PARAMS``)."""
    w = peer_widths(cfg)
    net = build_inference_net(cfg, in_channels, num_classes)
    feat = net.encoder.out_channels

    def patch(cin: int, cout: int = 1) -> PatchDiscriminator:
        d = PatchDiscriminator(cin, w["ndf"], cout, padding=2, bias=False, affine=True)
        return init_normal(d, 0.02)

    g_t = init_normal(ResnetGenerator(in_channels, in_channels, w["ngf"], 9, "zeros", affine=True), 0.02)
    classifier_ll = init_normal(nn.Conv2d(feat, num_classes, 1, bias=False), 0.01)
    return {
        "net": net,
        "classifier_ll": classifier_ll,
        "g_t": g_t,
        "decoder": SIFADecoder(feat, in_channels, w["ngf"]),
        "d_t": patch(in_channels),
        "d_s": patch(in_channels, 2),
        "d_p": patch(num_classes),
        "d_p_ll": patch(num_classes),
    }


def parameter_table(modules: dict[str, nn.Module]) -> dict[str, int]:
    """Per-network parameter counts in the layout of ``PARAMS`` (``net`` split into encoder and classifier)."""
    from lmisa.nets import count_parameters

    net = modules["net"]
    table = {"encoder": count_parameters(net.encoder), "classifier": count_parameters(net.classifier)}
    table.update({k: count_parameters(m) for k, m in modules.items() if k != "net"})
    return table


# --------------------------------------------------------------------------------------------------
# trainer


class SIFATrainer(PeerTrainer):
    """SIFA: all networks updated at every step from one forward pass (see the module docstring)."""

    def build_peer_models(self) -> None:
        modules = build_sifa(self.cfg, self.in_channels, self.num_classes)
        for name, module in modules.items():
            setattr(self, name, module.to(self.device))
        self.extra_modules = {k: getattr(self, k) for k in modules if k != "net"}

    def build_optimisers(self) -> None:
        seg = list(self.net.parameters()) + list(self.classifier_ll.parameters())
        self.opt = torch.optim.Adam(seg, lr=LR, weight_decay=WEIGHT_DECAY)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda e: 1.0)  # constant, as the authors'
        self.opt_critic = self.sched_critic = None
        gen = list(self.g_t.parameters()) + list(self.decoder.parameters())
        disc = [p for k in ("d_t", "d_s", "d_p", "d_p_ll") for p in getattr(self, k).parameters()]
        # Adam is per parameter: one optimiser over several networks = one per network
        self.opt_gen = torch.optim.Adam(gen, lr=LR, betas=GAN_BETAS)
        self.opt_disc = torch.optim.Adam(disc, lr=LR, betas=GAN_BETAS)
        self.extra_optimisers = {"opt_gen": self.opt_gen, "opt_disc": self.opt_disc}

    def _low_logits(self, low: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.classifier_ll(low), size=like.shape[-2:], mode="bilinear", align_corners=False)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        xs, ys, xt = batch["xs"], batch["ys"], batch["xt"]
        with self.autocast():
            fake_t = self.g_t(xs)  # source -> target appearance
            logit_ft, feat_ft, low_ft = self.net.forward_features(standardise(fake_t.float()))
            logit_t, feat_t, low_t = self.net.forward_features(xt)
            fake_s = self.decoder(feat_t, xt)  # target -> source appearance
            cyc_s = self.decoder(feat_ft, fake_t)  # xs -> target -> back to source
            cyc_t = self.g_t(fake_s)  # xt -> source -> back to target
            logit_ll_ft, logit_ll_t = self._low_logits(low_ft, xs), self._low_logits(low_t, xt)

            cycle = CYCLE_WEIGHT * (l1_loss(cyc_s, xs) + l1_loss(cyc_t, xt))
            adv_t = lsgan_generator_loss(self.d_t(fake_t))
            ds_fake = self.d_s(fake_s)
            adv_s = lsgan_generator_loss(ds_fake[:, :1])
            adv_aux = lsgan_generator_loss(ds_fake[:, 1:])
            p_ft, p_t = torch.softmax(logit_ft.float(), 1), torch.softmax(logit_t.float(), 1)
            p_ll_ft, p_ll_t = torch.softmax(logit_ll_ft.float(), 1), torch.softmax(logit_ll_t.float(), 1)
            adv_p = lsgan_generator_loss(self.d_p(p_t))
            adv_p_ll = lsgan_generator_loss(self.d_p_ll(p_ll_t))
            seg = weighted_cross_entropy(logit_ft, ys) + soft_dice_loss(logit_ft, ys)
            seg_ll = weighted_cross_entropy(logit_ll_ft, ys) + soft_dice_loss(logit_ll_ft, ys)
            # G_t's loss is cycle + adv_t and U's cycle + adv_s: adv_t does not depend on U nor adv_s on
            # G_t, so one backward of their sum into (G_t, U) gives each exactly its own gradient.
            loss_gen = cycle + adv_t + adv_s
            loss_seg = (seg + W_SEG_LL * seg_ll + W_SEG_CYCLE * (cycle + adv_s) + W_ADV_P * adv_p
                        + W_ADV_P_LL * adv_p_ll + W_ADV_AUX * adv_aux)
        gen_params = list(self.g_t.parameters()) + list(self.decoder.parameters())
        seg_params = list(self.net.parameters()) + list(self.classifier_ll.parameters())
        self.opt_gen.zero_grad(set_to_none=True)
        self.opt.zero_grad(set_to_none=True)
        loss_gen.backward(inputs=gen_params, retain_graph=True)
        loss_seg.backward(inputs=seg_params)
        self.opt_gen.step()
        self.opt.step()

        with self.autocast():
            disc_t = lsgan_discriminator_loss(self.d_t(xt), self.d_t(fake_t.detach()))
            ds_real, ds_fake, ds_cyc = self.d_s(xs), self.d_s(fake_s.detach()), self.d_s(cyc_s.detach())
            disc_s = lsgan_discriminator_loss(ds_real[:, :1], ds_fake[:, :1]) + lsgan_discriminator_loss(
                ds_cyc[:, 1:], ds_fake[:, 1:]
            )
            disc_p = lsgan_discriminator_loss(self.d_p(p_ft.detach()), self.d_p(p_t.detach()))
            disc_p_ll = lsgan_discriminator_loss(self.d_p_ll(p_ll_ft.detach()), self.d_p_ll(p_ll_t.detach()))
            loss_disc = disc_t + disc_s + disc_p + disc_p_ll
        self.opt_disc.zero_grad(set_to_none=True)
        loss_disc.backward()
        self.opt_disc.step()
        return {
            "seg": seg.detach(),
            "seg_ll": seg_ll.detach(),
            "cycle": cycle.detach(),
            "adv_t": adv_t.detach(),
            "adv_s": adv_s.detach(),
            "adv_aux": adv_aux.detach(),
            "adv_p": adv_p.detach(),
            "disc_t": disc_t.detach(),
            "disc_s": disc_s.detach(),
            "disc_p": (disc_p + disc_p_ll).detach(),
        }

    def validation_input(self):
        return (lambda x: standardise(self.g_t(x).float())), [self.g_t]
