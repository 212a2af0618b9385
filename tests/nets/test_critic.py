"""ShapeCritic: shapes, parameter counts, no batch norm, it trains."""

from __future__ import annotations

import pytest
import torch

import lmisa.nets.critic
from lmisa.losses import critic_loss, one_hot, to_critic_input
from lmisa.nets import ShapeCritic, build_critic, count_parameters

# Documented in lmisa/nets/critic.py (in_channels=4, default widths).
CRITIC_PARAMS = {2: 102_352, 3: 319_312}


@pytest.mark.parametrize("dims", [2, 3])
def test_parameter_counts_match_docstring(dims):
    n = count_parameters(build_critic(dims=dims))
    assert n == CRITIC_PARAMS[dims]
    assert f"{n:,}" in lmisa.nets.critic.__doc__
    k = 7**dims
    t = 3**dims
    assert n == k * 4 * 16 + 16 + t * (16 * 16 + 16 * 32 + 32 * 64 + 64 * 128) + 128


@pytest.mark.parametrize(
    "dims,size,out",
    [
        (2, (64, 64), (8, 8)),
        (2, (32, 48), (4, 6)),
        (2, (20, 20), (2, 2)),
        (3, (16, 16, 16), (2, 2, 2)),
        (3, (8, 16, 32), (1, 2, 4)),
    ],
)
def test_patch_map_shape(dims, size, out):
    critic = build_critic(dims=dims, in_channels=3)
    assert critic(torch.rand(2, 3, *size)).shape == (2, 1, *out)


def test_no_batch_norm_and_options():
    for norm in ("none", "instance", "layer"):
        critic = build_critic(norm=norm)
        assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in critic.modules())
        assert critic(torch.rand(2, 4, 32, 32)).shape == (2, 1, 4, 4)
    with pytest.raises(ValueError, match="batch"):
        ShapeCritic(norm="batch")
    with pytest.raises(ValueError, match="expects"):
        build_critic(in_channels=4)(torch.rand(1, 5, 32, 32))


def test_samples_are_independent():
    """No cross-sample coupling (needed for a per-sample gradient penalty)."""
    critic = build_critic(norm="instance")
    a, b = torch.rand(1, 4, 32, 32), torch.rand(1, 4, 32, 32)
    torch.testing.assert_close(critic(torch.cat([a, b]))[:1], critic(a))


def test_critic_learns_to_separate_real_from_fake():
    torch.manual_seed(0)
    critic = build_critic(in_channels=2, widths=(8, 16, 32))
    opt = torch.optim.Adam(critic.parameters(), lr=1e-3, betas=(0.5, 0.9))
    labels = torch.zeros(4, 32, 32, dtype=torch.long)
    labels[:, 8:20, 8:20] = 1
    labels[:, 22:28, 4:30] = 2
    real = to_critic_input(one_hot(labels, 3))
    fake = to_critic_input(torch.softmax(torch.randn(4, 3, 32, 32), 1))
    _, first = critic_loss(critic, real, fake)
    for _ in range(25):
        opt.zero_grad()
        loss, stats = critic_loss(critic, real, fake)
        loss.backward()
        opt.step()
    _, last = critic_loss(critic, real, fake)
    assert last["loss"] < first["loss"]
    assert last["wasserstein"] > first["wasserstein"]
