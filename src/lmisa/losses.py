"""LMISA losses: segmentation, balanced reconstruction, WGAN-GP critic/adversarial, label-map helpers.

METHOD.md sections 3-4.  Every loss returns a 0-d tensor and reads nothing back to the host (no
``.item()``, no data-dependent Python branching), so a training step stays asynchronous on a GPU.
Losses that are sensitive to precision (reconstruction, critic scores, gradient penalty) compute in
float32 even when the networks run under ``torch.autocast`` (bf16/fp16).

Conventions: network outputs are channel-first ``(N, C, *S)``; integer label maps are ``(N, *S)``
(the segmentation loss also accepts a singleton channel ``(N, 1, *S)``).

The generator loss of the paper is ``1 * generator_adversarial_loss + 40 * reconstruction_loss +
40 * cross-entropy`` (source only); the critic is trained with ``critic_loss`` (penalty weight 10).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "SegmentationLoss",
    "segmentation_loss",
    "reconstruction_loss",
    "gradient_penalty",
    "critic_loss",
    "generator_adversarial_loss",
    "to_critic_input",
    "one_hot",
    "soften_label_maps",
]


# --- segmentation ------------------------------------------------------------------------------------


def _check_labels(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``target`` as ``(N, *S)`` long, checked against ``logits (N, C, *S)``."""
    if target.dim() == logits.dim() and target.shape[1] == 1:
        target = target[:, 0]
    if target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}: "
            f"expected integer labels of shape (N, *spatial) = {tuple(logits.shape[:1] + logits.shape[2:])}"
        )
    if target.is_floating_point() or target.is_complex():
        raise ValueError(f"target must hold integer class indices, got dtype {target.dtype}")
    return target.long()


class SegmentationLoss(nn.Module):
    """``loss(logits (N, C, *S), target (N, *S) int) -> 0-d tensor``; see ``segmentation_loss``."""

    def __init__(
        self,
        kind: str = "ce",
        class_weights: Sequence[float] | torch.Tensor | None = None,
        lambda_dice: float = 1.0,
        lambda_ce: float = 1.0,
        include_background: bool = True,
    ):
        super().__init__()
        if kind not in ("ce", "dice_ce"):
            raise ValueError(f"segmentation loss kind must be 'ce' or 'dice_ce', got {kind!r}")
        self.kind = kind
        w = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32).flatten()
        self.register_buffer("class_weights", w)
        self.loss: nn.Module | None = None
        if kind == "dice_ce":
            from monai.losses import DiceCELoss

            self.loss = DiceCELoss(
                include_background=include_background,
                to_onehot_y=True,
                softmax=True,
                weight=w,
                lambda_dice=lambda_dice,
                lambda_ce=lambda_ce,
            )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = _check_labels(logits, target)
        w = self.class_weights
        if w is not None and w.numel() != logits.shape[1]:
            raise ValueError(f"{w.numel()} class weights for {logits.shape[1]} classes")
        logits = logits.float()
        if self.kind == "ce":
            return F.cross_entropy(logits, target, weight=w)
        assert self.loss is not None  # MONAI keeps its weights as buffers: .to(device) moves them
        return self.loss(logits, target.unsqueeze(1))


def segmentation_loss(
    kind: str = "ce",
    class_weights: Sequence[float] | torch.Tensor | None = None,
    lambda_dice: float = 1.0,
    lambda_ce: float = 1.0,
    include_background: bool = True,
) -> SegmentationLoss:
    """A segmentation loss ``f(logits (N, C, *S), target (N, *S) int) -> 0-d tensor``.

    ``kind="ce"``: ``torch.nn.functional.cross_entropy`` (the paper's loss, weight 40 in the generator
    loss).  ``kind="dice_ce"``: MONAI's ``DiceCELoss(to_onehot_y=True, softmax=True)`` with
    ``lambda_dice``/``lambda_ce``/``include_background``.  ``class_weights`` (one per class) rescale the
    cross-entropy (and, in MONAI, the Dice term).  The result is an ``nn.Module``: ``.to(device)``
    moves the class weights.
    """
    return SegmentationLoss(kind, class_weights, lambda_dice, lambda_ce, include_background)


# --- reconstruction ----------------------------------------------------------------------------------


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error balanced between target pixels above zero and at-or-below zero.

    For each sample: ``0.5 * (mean SE over {target > 0} + mean SE over {target <= 0})``, averaged over
    the batch, so both sets weigh the same however few pixels one has (the input is z-scored, so the
    sets are roughly "structure" and "background").  A sample whose one set is empty uses the mean
    over the other set alone (no NaN).  ``recon`` and ``target`` must have the same shape ``(N, ...)``;
    computed in float32, no host sync.

    The authors weight each pixel by the other set's share, which equals this loss times
    ``p * (1 - p)`` (p = share of positive pixels), i.e. the same balance with a per-image scale.
    """
    if recon.shape != target.shape:
        raise ValueError(f"recon shape {tuple(recon.shape)} != target shape {tuple(target.shape)}")
    recon = recon.float().flatten(1)
    target = target.float().flatten(1)
    se = (recon - target).square()
    pos = (target > 0).to(se.dtype)
    neg = 1.0 - pos
    n_pos = pos.sum(1)
    n_neg = neg.sum(1)
    mean_pos = (se * pos).sum(1) / n_pos.clamp_min(1.0)
    mean_neg = (se * neg).sum(1) / n_neg.clamp_min(1.0)
    n_sets = (n_pos > 0).to(se.dtype) + (n_neg > 0).to(se.dtype)
    return ((mean_pos + mean_neg) / n_sets.clamp_min(1.0)).mean()


# --- WGAN-GP -----------------------------------------------------------------------------------------


def _per_sample_score(scores: torch.Tensor, patch_reduction: str) -> torch.Tensor:
    scores = scores.float().reshape(scores.shape[0], -1)
    if patch_reduction == "mean":
        return scores.mean(1)
    if patch_reduction == "sum":
        return scores.sum(1)
    raise ValueError(f"patch_reduction must be 'mean' or 'sum', got {patch_reduction!r}")


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    patch_reduction: str = "mean",
) -> torch.Tensor:
    """WGAN-GP penalty ``mean_n (||grad_x f(x_n)||_2 - 1)^2`` at ``x_n = eps_n real_n + (1 - eps_n) fake_n``.

    ``eps_n ~ U(0, 1)``, one per sample; the norm runs over all non-batch axes of the critic's INPUT;
    the graph is kept (``create_graph=True``) so the penalty trains the critic.  ``f(x)`` is the
    critic's score per sample: the mean of its patch map (``patch_reduction="mean"``, the same reduction
    ``critic_loss`` applies to the scores), or the sum (``"sum"``, what the authors' TensorFlow gradient
    of a patch map amounts to).  ``real``/``fake`` are detached (this is the critic's term).  The
    interpolation, the gradient norm and the penalty are float32 even under autocast.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real {tuple(real.shape)} and fake {tuple(fake.shape)} must have the same shape")
    real = real.detach().float()
    fake = fake.detach().float()
    eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device, dtype=torch.float32)
    interp = (eps * real + (1.0 - eps) * fake).requires_grad_(True)
    score = _per_sample_score(critic(interp), patch_reduction)
    (grad,) = torch.autograd.grad(score.sum(), interp, create_graph=True)
    norm = (grad.float().reshape(grad.shape[0], -1).square().sum(1) + 1e-12).sqrt()
    return (norm - 1.0).square().mean()


def weighted_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The mean of per-sample ``values`` (N,) weighted by ``weight`` (N,); 0 where every weight is 0."""
    w = weight.to(values.dtype)
    return (values * w).sum() / w.sum().clamp_min(1e-12)


def critic_loss(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    gp_weight: float = 10.0,
    patch_reduction: str = "mean",
    fake_weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """WGAN-GP critic loss ``mean D(fake) - mean D(real) + gp_weight * gradient_penalty``.

    ``real``: background-free one-hot (possibly softened) source label maps; ``fake``: background-free
    softmax predictions on target images (detached here: the critic step does not train the generator).
    ``fake_weight`` (N,), optional: weights of the fake maps in ``mean D(fake)`` (0 leaves a map out;
    the penalty still runs over every pair; with no weighted map, only the penalty). Minimising it raises the scores of real maps.  Returns
    ``(loss, stats)``; ``stats`` holds detached 0-d float32 tensors: ``d_real``, ``d_fake``,
    ``wasserstein`` (= d_real - d_fake, the critic's estimate of the distance; it should stay bounded),
    ``gradient_penalty`` and ``loss``.
    """
    fake = fake.detach()
    d_real = critic(real).float().mean()
    d_fake = critic(fake).float()
    if fake_weight is None:
        d_fake = d_fake.mean()
    else:
        d_fake = weighted_mean(_per_sample_score(d_fake, "mean"), fake_weight)
        # no fake map judged: no Wasserstein term (else D(real) alone would drift up), the penalty only
        d_real = d_real * (fake_weight.sum() > 0).to(d_real.dtype)
    gp = gradient_penalty(critic, real, fake, patch_reduction=patch_reduction)
    loss = d_fake - d_real + gp_weight * gp
    stats = {
        "d_real": d_real.detach(),
        "d_fake": d_fake.detach(),
        "wasserstein": (d_real - d_fake).detach(),
        "gradient_penalty": gp.detach(),
        "loss": loss.detach(),
    }
    return loss, stats


def generator_adversarial_loss(
    critic: Callable[[torch.Tensor], torch.Tensor], fake: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """``-mean D(fake)`` (float32): the generator's WGAN term; gradients flow into ``fake``.

    ``weight`` (N,), optional: per-map weights of the mean (a map of weight 0 gets no adversarial
    gradient). The critic's parameters receive gradients too unless frozen (the trainer freezes them: only
    the generator's optimiser steps on this term).
    """
    scores = critic(fake).float()
    return -(scores.mean() if weight is None else weighted_mean(_per_sample_score(scores, "mean"), weight))


# --- label-map helpers -------------------------------------------------------------------------------


def to_critic_input(maps: torch.Tensor) -> torch.Tensor:
    """Drop the background channel (channel 0) of ``(N, C, *S)`` probabilities or one-hot maps."""
    if maps.dim() < 3 or maps.shape[1] < 2:
        raise ValueError(f"expected (N, C>=2, *spatial) maps with the background in channel 0, got {tuple(maps.shape)}")
    return maps[:, 1:]


def _gaussian_kernel(sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    radius = max(1, int(math.ceil(3.0 * sigma)))
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def soften_label_maps(maps: torch.Tensor, smoothing: float = 0.0, blur_sigma: float = 0.0) -> torch.Tensor:
    """Soften ``(N, C, *S)`` one-hot maps so a critic cannot tell them from softmax output by hardness alone.

    ``blur_sigma > 0``: separable Gaussian blur of every channel (sigma in pixels, replicate padding;
    the channels still sum to 1).  ``smoothing > 0``: label smoothing ``(1 - s) * y + s / C``.  Blur is
    applied first.  (METHOD.md section 6: a critic comparing one-hot labels with soft predictions can
    win on softness alone.)
    """
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    if blur_sigma < 0:
        raise ValueError(f"blur_sigma must be >= 0, got {blur_sigma}")
    out = maps if maps.is_floating_point() else maps.float()
    if blur_sigma > 0:
        spatial = out.dim() - 2
        if spatial not in (1, 2, 3):
            raise ValueError(f"blur needs 1-3 spatial axes, got shape {tuple(out.shape)}")
        conv = (F.conv1d, F.conv2d, F.conv3d)[spatial - 1]
        k = _gaussian_kernel(blur_sigma, out.device, out.dtype)
        r = k.numel() // 2
        c = out.shape[1]
        for axis in range(spatial):
            shape = [1, 1] + [1] * spatial
            shape[2 + axis] = k.numel()
            weight = k.reshape(shape).expand(c, *shape[1:]).contiguous()
            pad = [0, 0] * spatial
            pad[2 * (spatial - 1 - axis)] = r  # F.pad lists the last axis first
            pad[2 * (spatial - 1 - axis) + 1] = r
            out = conv(F.pad(out, pad, mode="replicate"), weight, groups=c)
    if smoothing > 0:
        out = out * (1.0 - smoothing) + smoothing / out.shape[1]
    return out


def one_hot(
    labels: torch.Tensor,
    num_classes: int,
    smoothing: float = 0.0,
    blur_sigma: float = 0.0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Integer labels ``(N, *S)`` -> channel-first one-hot ``(N, num_classes, *S)``.

    Optional softening of the result for use as "real" critic input: ``smoothing`` (label smoothing) and
    ``blur_sigma`` (Gaussian blur, pixels); see ``soften_label_maps``.
    """
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    out = F.one_hot(labels.long(), num_classes).movedim(-1, 1).to(dtype)
    if smoothing > 0 or blur_sigma > 0:
        out = soften_label_maps(out, smoothing=smoothing, blur_sigma=blur_sigma)
    return out
