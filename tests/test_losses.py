"""Losses: segmentation (CE / MONAI DiceCE), balanced reconstruction, WGAN-GP, label-map helpers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss

from lmisa.losses import (
    critic_loss,
    generator_adversarial_loss,
    gradient_penalty,
    one_hot,
    reconstruction_loss,
    segmentation_loss,
    soften_label_maps,
    to_critic_input,
    weighted_mean,
)
from lmisa.nets import build_critic


# --- segmentation ------------------------------------------------------------------------------------


def test_ce_matches_torch_and_accepts_channel_target():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 8, 8)
    target = torch.randint(0, 5, (2, 8, 8))
    loss = segmentation_loss("ce")
    torch.testing.assert_close(loss(logits, target), F.cross_entropy(logits, target))
    torch.testing.assert_close(loss(logits, target[:, None]), F.cross_entropy(logits, target))
    w = [0.1, 1.0, 2.0, 2.0, 1.0]
    torch.testing.assert_close(
        segmentation_loss("ce", class_weights=w)(logits, target), F.cross_entropy(logits, target, weight=torch.tensor(w))
    )


def test_dice_ce_uses_monai():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 8, 8, 8)
    target = torch.randint(0, 4, (2, 8, 8, 8))
    loss = segmentation_loss("dice_ce")
    assert isinstance(loss.loss, DiceCELoss)
    ref = DiceCELoss(to_onehot_y=True, softmax=True)(logits, target[:, None])
    torch.testing.assert_close(loss(logits, target), ref)
    assert not torch.allclose(loss(logits, target), F.cross_entropy(logits, target))
    w = torch.tensor([0.5, 1.0, 1.0, 2.0])
    ref_w = DiceCELoss(to_onehot_y=True, softmax=True, weight=w)(logits, target[:, None])
    torch.testing.assert_close(segmentation_loss("dice_ce", class_weights=w)(logits, target), ref_w)


def test_segmentation_loss_errors():
    with pytest.raises(ValueError, match="kind"):
        segmentation_loss("focal")
    with pytest.raises(ValueError, match="does not match"):
        segmentation_loss()(torch.randn(2, 3, 8, 8), torch.zeros(2, 8, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        segmentation_loss()(torch.randn(2, 3, 8, 8), torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match="class weights"):
        segmentation_loss(class_weights=[1.0, 2.0])(torch.randn(2, 3, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long))


def test_segmentation_loss_trains_a_logit_map():
    target = torch.randint(0, 3, (1, 6, 6))
    logits = torch.zeros(1, 3, 6, 6, requires_grad=True)
    loss_fn = segmentation_loss("dice_ce")
    opt = torch.optim.Adam([logits], lr=0.1)
    first = loss_fn(logits, target).item()
    for _ in range(20):
        opt.zero_grad()
        loss_fn(logits, target).backward()
        opt.step()
    assert loss_fn(logits, target).item() < 0.5 * first


# --- reconstruction ----------------------------------------------------------------------------------


def _one_positive_target():
    target = -torch.ones(1, 1, 10, 10)
    target[0, 0, 3, 4] = 2.0  # 1 pixel above zero, 99 at or below
    return target


def test_reconstruction_loss_balances_positive_and_negative_sets():
    target = _one_positive_target()
    pos = target > 0
    err_pos = target + pos.float()  # error 1 on the single positive pixel only
    err_neg = target + (~pos).float()  # error 1 on all 99 negative pixels
    assert reconstruction_loss(err_pos, target).item() == pytest.approx(0.5)
    assert reconstruction_loss(err_neg, target).item() == pytest.approx(0.5)
    one_neg = target.clone()
    one_neg[0, 0, 0, 0] += 1.0  # error 1 on one of the 99 negatives
    assert reconstruction_loss(one_neg, target).item() == pytest.approx(0.5 / 99)


def test_reconstruction_loss_zero_when_perfect_and_no_nan_for_empty_set():
    target = _one_positive_target()
    assert reconstruction_loss(target.clone(), target).item() == 0.0
    all_neg = -torch.rand(2, 1, 8, 8)  # no positive pixel at all
    recon = torch.zeros_like(all_neg, requires_grad=True)
    loss = reconstruction_loss(recon, all_neg)
    torch.testing.assert_close(loss, all_neg.square().mean())
    loss.backward()
    assert torch.isfinite(recon.grad).all()
    all_pos = torch.rand(1, 1, 4, 4) + 0.1
    torch.testing.assert_close(reconstruction_loss(torch.zeros_like(all_pos), all_pos), all_pos.square().mean())


def test_reconstruction_loss_per_sample_average_and_dtype():
    a = _one_positive_target()
    b = torch.ones(1, 1, 10, 10)
    recon = torch.cat([a + 1.0, b])  # sample a: error 1 everywhere -> 1; sample b: perfect -> 0
    assert reconstruction_loss(recon, torch.cat([a, b])).item() == pytest.approx(0.5)
    out = reconstruction_loss(recon.bfloat16(), torch.cat([a, b]))
    assert out.dtype == torch.float32
    with pytest.raises(ValueError, match="shape"):
        reconstruction_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 4, 4))


# --- WGAN-GP -----------------------------------------------------------------------------------------


class LinearCritic(torch.nn.Module):
    """D(x) = sum(w * x): gradient w everywhere, so the penalty is exactly (||w|| - 1)^2."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = torch.nn.Parameter(w.clone())

    def forward(self, x):
        return (self.w * x).flatten(1).sum(1).reshape(-1, 1, 1, 1)


class SquareCritic(torch.nn.Module):
    """D(x) = 0.5 * sum(x^2): gradient x, position-dependent; records its inputs."""

    def __init__(self):
        super().__init__()
        self.inputs: list[torch.Tensor] = []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return 0.5 * x.square().flatten(1).sum(1).reshape(-1, 1, 1, 1)


def test_gradient_penalty_linear_critic_exact():
    w = torch.full((4, 3, 3), 0.5)  # ||w|| = 0.5 * 6 = 3
    critic = LinearCritic(w)
    real = torch.rand(5, 4, 3, 3)
    fake = torch.rand(5, 4, 3, 3)
    gp = gradient_penalty(critic, real, fake)
    assert gp.item() == pytest.approx((3.0 - 1.0) ** 2, rel=1e-6)
    # create_graph=True: the penalty trains the critic; d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    gp.backward()
    torch.testing.assert_close(critic.w.grad, 2 * (3.0 - 1.0) * w / 3.0)
    # already 1-Lipschitz with unit norm -> no penalty
    unit = LinearCritic(torch.full((4, 3, 3), 1 / 6))
    assert gradient_penalty(unit, real, fake).item() == pytest.approx(0.0, abs=1e-10)


def test_gradient_penalty_is_taken_at_interpolates():
    torch.manual_seed(0)
    critic = SquareCritic()
    real = torch.rand(64, 2, 4, 4) + 1.0
    fake = -torch.rand(64, 2, 4, 4)
    gp = gradient_penalty(critic, real, fake)
    (x,) = critic.inputs
    # every sample lies on the segment between its real and fake, with one eps per sample
    eps = ((x - fake) / (real - fake)).flatten(1)
    torch.testing.assert_close(eps, eps[:, :1].expand_as(eps))
    e = eps[:, 0]
    assert (e >= 0).all() and (e <= 1).all()
    assert e.std() > 0.1  # drawn per sample, not one for the batch
    # gradient of 0.5 ||x||^2 is x: penalty = mean (||x|| - 1)^2 at those points
    expected = (x.flatten(1).norm(dim=1) - 1).square().mean()
    torch.testing.assert_close(gp, expected)


def test_critic_loss_sign_conventions():
    critic = LinearCritic(torch.ones(1, 2, 2))  # D(x) = sum(x)
    real = torch.ones(3, 1, 2, 2)  # D = 4
    fake = torch.zeros(3, 1, 2, 2, requires_grad=True)  # D = 0
    loss, stats = critic_loss(critic, real, fake, gp_weight=0.0)
    assert loss.item() == pytest.approx(-4.0)  # mean D(fake) - mean D(real)
    assert stats["wasserstein"].item() == pytest.approx(4.0)
    assert stats["d_real"].item() == pytest.approx(4.0) and stats["d_fake"].item() == 0.0
    assert all(not v.requires_grad for v in stats.values())
    loss.backward()
    assert fake.grad is None  # the critic step does not reach the generator
    assert critic.w.grad.sum().item() < 0  # descending raises D(real) - D(fake)
    # with the penalty: ||w|| = 2 -> (2 - 1)^2 = 1
    loss, stats = critic_loss(critic, real, fake, gp_weight=10.0)
    assert loss.item() == pytest.approx(-4.0 + 10.0)
    assert stats["gradient_penalty"].item() == pytest.approx(1.0)
    # generator term: -mean D(fake); its gradient pushes fake toward higher critic scores
    g = generator_adversarial_loss(critic, fake)
    assert g.item() == 0.0
    g.backward()
    assert (fake.grad < 0).all()


def test_weighted_adversarial_terms_judge_only_the_weighted_maps():
    critic = LinearCritic(torch.ones(1, 2, 2))  # D(x) = sum(x)
    real = torch.ones(3, 1, 2, 2)
    fake = torch.stack([torch.full((1, 2, 2), v) for v in (0.0, 0.5, 1.0)]).requires_grad_(True)  # D = 0, 2, 4
    weight = torch.tensor([0.0, 1.0, 1.0])
    # all-ones weights are the plain mean
    torch.testing.assert_close(generator_adversarial_loss(critic, fake, torch.ones(3)), generator_adversarial_loss(critic, fake))
    torch.testing.assert_close(critic_loss(critic, real, fake, 0.0, fake_weight=torch.ones(3))[0],
                               critic_loss(critic, real, fake, 0.0)[0])
    # weight 0 leaves a map out of both terms, and it gets no adversarial gradient
    g = generator_adversarial_loss(critic, fake, weight)
    assert g.item() == pytest.approx(-3.0)
    g.backward()
    assert (fake.grad[0] == 0).all() and (fake.grad[1:] < 0).all()
    loss, stats = critic_loss(critic, real, fake, gp_weight=0.0, fake_weight=weight)
    assert stats["d_fake"].item() == pytest.approx(3.0) and loss.item() == pytest.approx(3.0 - 4.0)
    # no weighted map: no adversarial term (not a NaN)
    none = generator_adversarial_loss(critic, fake, torch.zeros(3))
    assert none.item() == 0.0
    loss, stats = critic_loss(critic, real, fake, 10.0, fake_weight=torch.zeros(3))
    torch.testing.assert_close(loss, 10.0 * stats["gradient_penalty"])  # the penalty only: D(real) does not drift
    assert weighted_mean(torch.tensor([1.0, 3.0]), torch.tensor([1.0, 3.0])).item() == 2.5


def test_patch_reduction_mean_vs_sum():
    critic = build_critic(in_channels=2, widths=(4, 8))
    real, fake = torch.rand(2, 2, 16, 16), torch.rand(2, 2, 16, 16)
    torch.manual_seed(1)
    g_mean = gradient_penalty(critic, real, fake, patch_reduction="mean")
    torch.manual_seed(1)
    g_sum = gradient_penalty(critic, real, fake, patch_reduction="sum")
    assert not torch.allclose(g_mean, g_sum)
    with pytest.raises(ValueError):
        gradient_penalty(critic, real, fake, patch_reduction="max")
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(critic, real, fake[:1])


def test_critic_loss_under_bf16_autocast_is_float32_and_close():
    torch.manual_seed(0)
    critic = build_critic(in_channels=3)
    real = to_critic_input(one_hot(torch.randint(0, 4, (2, 32, 32)), 4))
    fake = to_critic_input(torch.softmax(torch.randn(2, 4, 32, 32), 1))
    torch.manual_seed(5)
    ref, ref_stats = critic_loss(critic, real, fake)
    torch.manual_seed(5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, stats = critic_loss(critic, real, fake)
        g = generator_adversarial_loss(critic, fake)
    assert loss.dtype == torch.float32 and g.dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in stats.values())
    assert torch.isfinite(loss)
    torch.testing.assert_close(stats["gradient_penalty"], ref_stats["gradient_penalty"], rtol=0.05, atol=0.02)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in critic.parameters())


# --- label-map helpers -------------------------------------------------------------------------------


def test_one_hot_and_to_critic_input():
    labels = torch.tensor([[[0, 1], [2, 4]]])
    oh = one_hot(labels, 5)
    assert oh.shape == (1, 5, 2, 2) and oh.dtype == torch.float32
    assert oh[0, :, 1, 1].tolist() == [0, 0, 0, 0, 1]
    torch.testing.assert_close(oh.sum(1), torch.ones(1, 2, 2))
    crit = to_critic_input(oh)
    assert crit.shape == (1, 4, 2, 2)
    torch.testing.assert_close(crit, oh[:, 1:])
    with pytest.raises(ValueError):
        to_critic_input(torch.rand(1, 1, 4, 4))
    with pytest.raises(ValueError):
        one_hot(torch.rand(1, 4, 4), 3)
    assert one_hot(torch.zeros(2, 3, 4, 5, dtype=torch.long), 3).shape == (2, 3, 3, 4, 5)


def test_label_smoothing_and_blur():
    labels = torch.zeros(1, 16, 16, dtype=torch.long)
    labels[0, 4:12, 4:12] = 1
    s = one_hot(labels, 3, smoothing=0.3)
    assert s.max().item() == pytest.approx(0.7 + 0.1)
    assert s.min().item() == pytest.approx(0.1)
    torch.testing.assert_close(s.sum(1), torch.ones(1, 16, 16))
    b = one_hot(labels, 3, blur_sigma=1.0)
    torch.testing.assert_close(b.sum(1), torch.ones(1, 16, 16))
    assert 0.0 < b[0, 1, 4, 4].item() < 1.0  # soft at the boundary
    assert b[0, 1, 8, 8].item() == pytest.approx(1.0, abs=1e-3)  # still confident inside
    assert b[0, 1, 0, 0].item() == pytest.approx(0.0, abs=1e-6)
    torch.testing.assert_close(b[0, 1], b[0, 1].T)  # axes treated alike
    b3 = one_hot(torch.randint(0, 3, (1, 6, 8, 10)), 3, blur_sigma=0.8, smoothing=0.1)
    assert b3.shape == (1, 3, 6, 8, 10)
    torch.testing.assert_close(b3.sum(1), torch.ones(1, 6, 8, 10))
    const = torch.ones(1, 2, 8, 8) * 0.5
    torch.testing.assert_close(soften_label_maps(const, blur_sigma=2.0), const)
    with pytest.raises(ValueError):
        soften_label_maps(const, smoothing=1.0)
    assert math.isclose(soften_label_maps(const).sum().item(), const.sum().item())
