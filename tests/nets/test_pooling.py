"""lmisa.nets.pooling: the plain op's values, indices and gradients (a double backward included), faster on the CPU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lmisa.losses import gradient_penalty
from lmisa.nets import build_critic
from lmisa.nets.pooling import MaxPool2d, MaxPool3d

CASES = [(MaxPool2d, nn.MaxPool2d, (2, 3, 9, 10)), (MaxPool3d, nn.MaxPool3d, (2, 3, 5, 9, 10))]


@pytest.mark.parametrize("ours, plain, shape", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_values_and_gradients_are_the_plain_ops_bit_for_bit(ours, plain, shape, dtype) -> None:
    x = torch.randn(*shape).to(dtype)
    if dtype == torch.bfloat16:
        x = x.round()  # ties: the gradient must go where the plain op sends it
    grad = torch.randn_like(plain(2)(x))
    results = []
    for pool in (ours(2), plain(2)):
        xi = x.clone().requires_grad_(True)
        y = pool(xi)
        y.backward(grad)
        results.append((y, xi.grad))
    (y, g), (y0, g0) = results
    assert y.is_contiguous() and torch.equal(y, y0) and torch.equal(g, g0)


@pytest.mark.parametrize("ours, plain, shape", CASES)
def test_gradients_of_gradients_match(ours, plain, shape) -> None:
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(ours(2), (x,))


def test_the_critics_gradient_penalty_is_unchanged() -> None:
    torch.manual_seed(0)
    critic = build_critic(2, 4)
    real, fake = torch.rand(3, 4, 16, 16), torch.rand(3, 4, 16, 16)
    penalties = []
    for pool in (MaxPool2d, nn.MaxPool2d):
        for i, layer in enumerate(critic.body):
            if isinstance(layer, nn.MaxPool2d):
                critic.body[i] = pool(2)
        torch.manual_seed(1)
        penalty = gradient_penalty(critic, real, fake)
        grads = torch.autograd.grad(penalty, list(critic.parameters()))
        penalties.append((penalty, grads))
    (p, g), (p0, g0) = penalties
    assert torch.equal(p, p0) and all(torch.equal(a, b) for a, b in zip(g, g0))


@pytest.mark.parametrize("ours, plain, shape", CASES)
def test_scripted_and_traced_layers_run_the_plain_op(ours, plain, shape) -> None:
    x = torch.randn(*shape)
    assert torch.equal(torch.jit.script(ours(2))(x), plain(2)(x))
    assert torch.equal(torch.jit.trace(ours(2), x)(x), plain(2)(x))


@pytest.mark.parametrize("ours, plain, shape", CASES)
def test_the_channels_last_path_runs_on_the_cpu_and_unbatched_input_takes_the_plain_one(ours, plain, shape) -> None:
    x = torch.randn(*shape, requires_grad=True)
    assert type(ours(2)(x).grad_fn).__name__ == "_ChannelsLastMaxPoolBackward"
    assert torch.equal(ours(2)(x[0]), plain(2)(x[0]))
