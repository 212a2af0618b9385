"""``cyclegan_seg``: image-level adaptation -- CycleGAN translation, then segmentation of translated images.

The two-stage baseline of the UDA literature (the "CycleGAN" row of the SIFA and LMISA tables): a
CycleGAN (Zhu et al., ICCV 2017) learns to translate source slices to the target appearance and back;
a segmentation network is then trained on translated source slices with the source labels and applied
to target slices as they are.  Both stages run inside one ``lmisa train`` run (one run folder, one
log, one checkpoint file, resumable anywhere):

* stage 1, the first ``round(stage_split * train.epochs)`` epochs (``stage_split = 0.5`` by default;
  see "Stage split" below): the CycleGAN -- translators ``G_s2t``, ``G_t2s`` and PatchGAN
  discriminators ``D_t``, ``D_s``.  Each step: one translator update on ``LSGAN(D_t(G_s2t(xs))) +
  LSGAN(D_s(G_t2s(xt))) + 10 * (|G_t2s(G_s2t(xs)) - xs|_1 + |G_s2t(G_t2s(xt)) - xt|_1)``, then one update of both discriminators on the LSGAN loss
  ``0.5 ((D(real) - 1)^2 + D(fake)^2)`` with the step's (detached) translations.  Adam, lr 2e-4,
  betas (0.5, 0.999); the learning rate is constant for the first half of stage 1 and decays
  linearly towards 0 over the second half (CycleGAN's schedule, per epoch).
* stage 2, the remaining epochs: the segmenter ``net`` -- LMISA's HybridNet of ``cfg.model`` (the
  same network and size as LMISA's generator; its reconstruction head is unused) -- trained with the
  run's segmentation loss (``cfg.loss.seg``, cross-entropy by default) on ``standardise(G_s2t(xs))``
  with ``ys``; the translator is frozen (eval mode, no gradient).  Adam with ``cfg.train.lr``, decayed
  by ``cfg.train.lr_decay`` every ``cfg.train.lr_decay_every`` epochs counted from the start of stage 2.

Stage split: ``lmisa.config`` has no section for peer settings yet (and this module may not change it),
so the fraction is read from ``cfg.peer.stage_split`` when the configuration has such a section, and
is otherwise the class attribute ``CycleGANSegTrainer.stage_split`` (0.5).  The epoch where stage 2
starts is a pure function of the saved configuration, so a resumed run splits where the run started.

Model selection (``best.pt``) uses the source validation slices *translated by G_s2t*, i.e. what the
segmenter is trained on; stage-1 epochs report NaN validation (the segmenter is untrained) and never
become ``best``.  A resume in stage 2 starts from the saved translator and never retrains stage 1.
Prediction needs only ``net``: ``lmisa predict`` segments target images directly.

Networks (``in_channels = C = 2 * context_slices + 1``; defaults, ``widths[0] = 16``,
``critic_widths[0] = 16``):

* translators: :class:`lmisa.peers.blocks.ResnetGenerator` ``C -> C``, c7s1-32, d64, d128, 9 x R128,
  u64, u32, c7s1-C, instance norm without affine parameters, reflect padding (PyTorch CycleGAN); output
  ``x + residual`` (linear; see deviations);
* discriminators: 70x70 PatchGAN, ``ndf = 64`` (PyTorch CycleGAN: padding 1, biases, plain instance norm).

Exact parameter counts at the defaults (``C = 1``, 5 classes; asserted by the tests):

==============================================  ==========
segmenter ``net`` (HybridNet, instance norm) = inference net  774,592
translator ``G_s2t`` (= ``G_t2s``)                2,844,289
discriminator ``D_t`` (= ``D_s``)                 2,762,689
training total                                   11,988,548
==============================================  ==========

Deviations from the published CycleGAN (all deliberate, all documented here):

* inputs are z-scored intensities, not images scaled to [-1, 1]: the translators end without tanh and
  add their input (``out = x + residual``, as SIFA's translators with ``skip=True``);
* no identity loss, no history pool of 50 generated images (the discriminators see the current
  step's translations); one discriminator step per translator step;
* epochs here are ``train.steps_per_epoch`` random slice pairs, not passes over an unpaired set;
* the segmenter of stage 2 is LMISA's HybridNet (not a U-Net/DeepLab of the original papers), so the
  comparison with LMISA isolates the adaptation method;
* its input is re-z-scored after translation (prediction z-scores target slices the same way).

Left out: the 3D path and distributed (torchrun) training (refused with an error).
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from lmisa.augment import standardise
from lmisa.errors import LmisaError
from lmisa.peers.blocks import (
    PatchDiscriminator,
    PeerTrainer,
    ResnetGenerator,
    l1_loss,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    peer_widths,
)

__all__ = ["CycleGANSegTrainer", "build_translators", "stage1_epochs", "PARAMS_NET", "PARAMS_TRANSLATOR", "PARAMS_DISCRIMINATOR",
           "PARAMS_TRAINING", "PARAMS_INFERENCE"]

PARAMS_NET = 774_592
PARAMS_TRANSLATOR = 2_844_289
PARAMS_DISCRIMINATOR = 2_762_689
PARAMS_TRAINING = PARAMS_NET + 2 * PARAMS_TRANSLATOR + 2 * PARAMS_DISCRIMINATOR  # 11,988,548
PARAMS_INFERENCE = PARAMS_NET

CYCLE_WEIGHT = 10.0
GAN_LR = 2e-4
GAN_BETAS = (0.5, 0.999)
RES_BLOCKS = 9


def build_translators(cfg, in_channels: int) -> dict[str, nn.Module]:
    """``{"g_s2t", "g_t2s", "d_t", "d_s"}``: the CycleGAN of a ``cyclegan_seg`` run of ``cfg``."""
    w = peer_widths(cfg)
    return {
        "g_s2t": ResnetGenerator(in_channels, in_channels, w["ngf"], RES_BLOCKS, "reflect", affine=False),
        "g_t2s": ResnetGenerator(in_channels, in_channels, w["ngf"], RES_BLOCKS, "reflect", affine=False),
        "d_t": PatchDiscriminator(in_channels, w["ndf"], 1, padding=1, bias=True, affine=False),
        "d_s": PatchDiscriminator(in_channels, w["ndf"], 1, padding=1, bias=True, affine=False),
    }


def _peer_option(cfg, name: str, default):
    """``cfg.peer.<name>`` if the configuration has such a section, else ``default``."""
    return getattr(getattr(cfg, "peer", None), name, default)


def stage1_epochs(cfg, default_split: float = 0.5) -> int:
    """Epochs of stage 1 (CycleGAN): ``round(stage_split * train.epochs)``, within ``[0, epochs]``."""
    split = float(_peer_option(cfg, "stage_split", default_split))
    if not 0.0 <= split <= 1.0:
        raise LmisaError(f"cyclegan_seg: stage_split must be within [0, 1], got {split}")
    epochs = cfg.train.epochs
    return min(epochs, max(0, int(round(split * epochs))))


class CycleGANSegTrainer(PeerTrainer):
    """Stage 1: CycleGAN; stage 2: the segmenter ``net`` on translated source slices (see the module doc)."""

    stage_split: float = 0.5  # share of the epochs that train the CycleGAN

    # ------------------------------------------------------------------ set-up
    def build_peer_models(self) -> None:
        from lmisa.training.variants import build_inference_net

        self.net = build_inference_net(self.cfg, self.in_channels, self.num_classes).to(self.device)
        parts = build_translators(self.cfg, self.in_channels)
        for name, module in parts.items():
            setattr(self, name, module.to(self.device))
        self.extra_modules = {k: getattr(self, k) for k in parts}
        self.stage1_epochs = stage1_epochs(self.cfg, self.stage_split)

    def build_optimisers(self) -> None:
        t = self.cfg.train
        n1 = self.stage1_epochs
        self.opt = torch.optim.Adam(self.net.parameters(), lr=t.lr)
        # the segmenter's step decay counts epochs from the start of stage 2
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda e: t.lr_decay ** (max(0, e - n1) // t.lr_decay_every)
        )
        self.opt_critic = self.sched_critic = None
        gen = list(self.g_s2t.parameters()) + list(self.g_t2s.parameters())
        disc = list(self.d_t.parameters()) + list(self.d_s.parameters())
        self.opt_gen = torch.optim.Adam(gen, lr=GAN_LR, betas=GAN_BETAS)
        self.opt_disc = torch.optim.Adam(disc, lr=GAN_LR, betas=GAN_BETAS)
        n_const = math.ceil(n1 / 2)
        n_decay = n1 - n_const

        def linear(e: int) -> float:  # CycleGAN: constant, then linearly towards 0 (per epoch)
            return max(0.0, 1.0 - max(0, e + 1 - n_const) / float(n_decay + 1))

        self.sched_gen = torch.optim.lr_scheduler.LambdaLR(self.opt_gen, linear)
        self.sched_disc = torch.optim.lr_scheduler.LambdaLR(self.opt_disc, linear)
        self.extra_optimisers = {"opt_gen": self.opt_gen, "opt_disc": self.opt_disc}
        self.extra_schedulers = {"sched_gen": self.sched_gen, "sched_disc": self.sched_disc}

    @property
    def in_stage1(self) -> bool:
        return self.epoch < self.stage1_epochs

    # ------------------------------------------------------------------ loop hooks
    def on_epoch_start(self) -> None:
        super().on_epoch_start()
        stage1 = self.in_stage1
        for name in ("g_s2t", "g_t2s", "d_t", "d_s"):
            getattr(self, name).train(stage1).requires_grad_(stage1)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.in_stage1:
            return self.translator_step(batch)
        return self.segmenter_step(batch)

    def translator_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One CycleGAN update: translators (LSGAN + cycle), then both discriminators (LSGAN)."""
        xs, xt = batch["xs"], batch["xt"]
        with self.autocast():
            fake_t = self.g_s2t(xs)
            fake_s = self.g_t2s(xt)
            rec_s = self.g_t2s(fake_t)
            rec_t = self.g_s2t(fake_s)
            adv = lsgan_generator_loss(self.d_t(fake_t)) + lsgan_generator_loss(self.d_s(fake_s))
            cycle = l1_loss(rec_s, xs) + l1_loss(rec_t, xt)
            loss_gen = adv + CYCLE_WEIGHT * cycle
        gen_params = [p for g in (self.g_s2t, self.g_t2s) for p in g.parameters()]
        self.opt_gen.zero_grad(set_to_none=True)
        loss_gen.backward(inputs=gen_params)  # the discriminators get no gradient from this loss
        self.opt_gen.step()
        with self.autocast():
            loss_disc = lsgan_discriminator_loss(self.d_t(xt), self.d_t(fake_t.detach())) + lsgan_discriminator_loss(
                self.d_s(xs), self.d_s(fake_s.detach())
            )
        self.opt_disc.zero_grad(set_to_none=True)
        loss_disc.backward()
        self.opt_disc.step()
        return {"seg": self._nan(), "adv": adv.detach(), "cycle": cycle.detach(), "disc": loss_disc.detach()}

    def segmenter_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One segmenter update on translated source slices (the translator frozen)."""
        xs, ys = batch["xs"], batch["ys"]
        with torch.no_grad(), self.autocast():
            translated = self.g_s2t(xs)
        x = standardise(translated.float())
        with self.autocast():
            seg, _ = self.net(x)
            loss = self.seg_loss(seg.float(), ys)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        nan = self._nan()
        return {"seg": loss.detach(), "adv": nan, "cycle": nan, "disc": nan}

    def on_epoch_end(self, val: dict[str, float]) -> None:
        with warnings.catch_warnings():  # the segmenter's scheduler also counts stage-1 epochs (no opt.step yet)
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
            super().on_epoch_end(val)

    # ------------------------------------------------------------------ validation
    def validation_input(self):
        return (lambda x: standardise(self.g_s2t(x).float())), [self.g_s2t]

    @torch.no_grad()
    def validation_step(self) -> dict[str, float]:
        if self.in_stage1:  # the segmenter is not trained yet: nothing to select
            return {"val_loss": math.nan, "val_dice": math.nan}
        return super().validation_step()
