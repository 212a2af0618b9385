"""``adaoutput``: output-space adversarial adaptation (AdaptSegNet; Tsai et al., CVPR 2018), single level.

One segmentation network ``net`` -- LMISA's HybridNet of ``cfg.model``, the same network and size as
LMISA's generator (its reconstruction head is unused) -- and a fully-convolutional discriminator ``D``
on its softmax output.  Each step (source batch ``xs, ys``, target batch ``xt``):

1. segmenter update: ``CE(net(xs), ys) + 0.001 * BCE(D(softmax(net(xt))), source)`` -- the
   segmentation loss on labelled source slices (``cfg.loss.seg``, cross-entropy by default, weight 1)
   plus the adversarial term that makes target predictions look like source predictions to ``D``
   (both domains in one forward pass, as LMISA's trainer does);
2. discriminator update: ``0.5 * (BCE(D(softmax(net(xs))), source) + BCE(D(softmax(net(xt))), target))``
   on the (detached) predictions of step 1.

Label convention (AdaptSegNet's code): source = 0, target = 1; BCE-with-logits, float32.
Optimisers: the segmenter as LMISA's (Adam, ``cfg.train.lr``, step decay of ``cfg.train``); the
discriminator Adam lr 1e-4, betas (0.9, 0.99), with AdaptSegNet's polynomial decay
``(1 - epoch / epochs) ** 0.9`` (per epoch).

Discriminator (:class:`lmisa.peers.blocks.FCDiscriminator`): 4x4 convs with stride 2, ``num_classes ->
64 -> 128 -> 256 -> 512 -> 1``, leaky ReLU 0.2, no normalisation (``ndf = 4 * model.critic_widths[0]``).

Exact parameter counts at the defaults (1 input channel, 5 classes; asserted by the tests):

==============================================  =========
segmenter ``net`` (HybridNet) = inference net      774,592
discriminator ``D``                              2,766,785
training total                                   3,541,377
==============================================  =========

Deviations from the published method: the segmenter is LMISA's HybridNet trained with Adam (AdaptSegNet:
DeepLab-v2/ResNet-101 with SGD, lr 2.5e-4, poly decay), at the input resolution (no down-scaled
output to up-sample); single-level adaptation only (the paper's multi-level variant adds a second
discriminator on an intermediate classifier; left out); epochs are ``train.steps_per_epoch`` steps.
Inputs are the z-scored raw slices of the run (``data.input = "raw"`` for every peer).

Left out: the multi-level variant, the 3D path and distributed (torchrun) training (refused).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lmisa.peers.blocks import FCDiscriminator, PeerTrainer, peer_widths

__all__ = ["AdaOutputTrainer", "build_discriminator", "PARAMS_NET", "PARAMS_DISCRIMINATOR", "PARAMS_TRAINING",
           "PARAMS_INFERENCE", "ADV_WEIGHT", "SOURCE_LABEL", "TARGET_LABEL"]

PARAMS_NET = 774_592
PARAMS_DISCRIMINATOR = 2_766_785
PARAMS_TRAINING = PARAMS_NET + PARAMS_DISCRIMINATOR  # 3,541,377
PARAMS_INFERENCE = PARAMS_NET

ADV_WEIGHT = 0.001
SOURCE_LABEL = 0.0
TARGET_LABEL = 1.0
D_LR = 1e-4
D_BETAS = (0.9, 0.99)
POLY_POWER = 0.9


def build_discriminator(cfg, num_classes: int) -> FCDiscriminator:
    """The output-space discriminator of an ``adaoutput`` run of ``cfg``."""
    return FCDiscriminator(num_classes, peer_widths(cfg)["ndf"])


def _bce(logits: torch.Tensor, label: float) -> torch.Tensor:
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, label))


class AdaOutputTrainer(PeerTrainer):
    """Segmenter + output-space discriminator, both updated at every step (see the module docstring)."""

    def build_peer_models(self) -> None:
        from lmisa.training.variants import build_inference_net

        self.net = build_inference_net(self.cfg, self.in_channels, self.num_classes).to(self.device)
        self.disc = build_discriminator(self.cfg, self.num_classes).to(self.device)
        self.extra_modules = {"disc": self.disc}

    def build_optimisers(self) -> None:
        super().build_optimisers()  # Adam + StepLR for net (the critic is None for peers)
        epochs = max(1, self.cfg.train.epochs)
        self.opt_disc = torch.optim.Adam(self.disc.parameters(), lr=D_LR, betas=D_BETAS)
        self.sched_disc = torch.optim.lr_scheduler.LambdaLR(
            self.opt_disc, lambda e: max(0.0, 1.0 - e / epochs) ** POLY_POWER
        )
        self.extra_optimisers = {"opt_disc": self.opt_disc}
        self.extra_schedulers = {"sched_disc": self.sched_disc}

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        xs, ys, xt = batch["xs"], batch["ys"], batch["xt"]
        n = xs.shape[0]
        with self.autocast():
            seg, _ = self.net(torch.cat([xs, xt]))
            seg_s, seg_t = seg[:n].float(), seg[n:].float()
            loss_seg = self.seg_loss(seg_s, ys)
            p_s, p_t = torch.softmax(seg_s, 1), torch.softmax(seg_t, 1)
            loss_adv = _bce(self.disc(p_t), SOURCE_LABEL)  # make target outputs look like source outputs
            total = loss_seg + ADV_WEIGHT * loss_adv
        self.opt.zero_grad(set_to_none=True)
        total.backward(inputs=list(self.net.parameters()))  # D gets no gradient from the segmenter's loss
        self.opt.step()
        with self.autocast():
            d_s, d_t = self.disc(p_s.detach()), self.disc(p_t.detach())
            loss_disc = 0.5 * (_bce(d_s, SOURCE_LABEL) + _bce(d_t, TARGET_LABEL))
        self.opt_disc.zero_grad(set_to_none=True)
        loss_disc.backward()
        self.opt_disc.step()
        return {
            "seg": loss_seg.detach(),
            "adv": loss_adv.detach(),
            "disc": loss_disc.detach(),
            "total": total.detach(),
            "d_target_is_target": torch.sigmoid(d_t.detach().float()).mean(),
        }
