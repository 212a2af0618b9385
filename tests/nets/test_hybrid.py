"""HybridNet: shapes, parameter counts, size check, recon modes, export, and that it trains."""

from __future__ import annotations

import doctest
import warnings

import pytest
import torch

import lmisa.nets
from lmisa.nets import HybridNet, build_generator, count_inference_parameters, count_parameters

# The counts documented in lmisa/nets/hybrid.py (in_channels=1, num_classes=5, default widths).
GEN_PARAMS = {
    (2, "decoder"): 772_736,
    (3, "decoder"): 2_288_864,
    (2, "bottleneck"): 991_616,
    (3, "bottleneck"): 2_945_504,
}


@pytest.mark.parametrize("dims,recon_from", list(GEN_PARAMS))
def test_parameter_counts_match_docstring(dims, recon_from):
    net = build_generator(dims=dims, recon_from=recon_from)
    assert count_parameters(net) == GEN_PARAMS[(dims, recon_from)]
    doc = lmisa.nets.hybrid.__doc__
    assert f"{GEN_PARAMS[(dims, recon_from)]:,}" in doc


@pytest.mark.parametrize("recon_from", ["decoder", "bottleneck"])
def test_inference_parameters_are_the_ones_forward_seg_uses(recon_from):
    net = build_generator(recon_from=recon_from, norm="instance", widths=(4, 8))
    net.forward_seg(torch.rand(1, 1, 16, 16)).sum().backward()
    used = sum(p.numel() for p in net.parameters() if p.grad is not None)
    assert count_inference_parameters(net) == used < count_parameters(net)
    assert count_inference_parameters(build_generator(recon_from="bottleneck", norm="instance")) == 774_576


def test_parameter_count_formula_2d():
    """The authors' 2D generator, counted by hand: stem + encoder + decoder + two bias-free 1x1 heads."""
    stem = 7 * 7 * 16 + 16
    enc = sum(2 * 9 * w * w for w in (16, 32, 64, 128))
    dec = 0
    for w, deeper in ((64, 256), (32, 64), (16, 32)):
        dec += 9 * deeper * w + 9 * 3 * w * w + 9 * w * w + 3 * w * w
    heads = 16 * 5 + 16
    assert stem + enc + dec + heads == GEN_PARAMS[(2, "decoder")]
    assert count_parameters(build_generator(recon_from="decoder"), trainable_only=True) == GEN_PARAMS[(2, "decoder")]


@pytest.mark.parametrize("size", [(8, 8), (32, 48), (64, 64), (24, 40)])
@pytest.mark.parametrize("recon_from", ["decoder", "bottleneck"])
def test_shapes_2d(size, recon_from):
    net = build_generator(dims=2, in_channels=3, num_classes=4, recon_from=recon_from)
    seg, rec = net(torch.randn(2, 3, *size))
    assert seg.shape == (2, 4, *size)
    assert rec.shape == (2, 1, *size)
    assert net.forward_seg(torch.randn(1, 3, *size)).shape == (1, 4, *size)


@pytest.mark.parametrize("size", [(8, 8, 8), (8, 16, 24), (16, 16, 16)])
@pytest.mark.parametrize("recon_from", ["decoder", "bottleneck"])
def test_shapes_3d(size, recon_from):
    net = build_generator(dims=3, num_classes=5, recon_from=recon_from, stem_kernel=(3, 7, 7))
    seg, rec = net(torch.randn(1, 1, *size))
    assert seg.shape == (1, 5, *size)
    assert rec.shape == (1, 1, *size)


def test_configurable_depth_widths_and_norm():
    net = build_generator(widths=(8, 12, 40), norm="instance")  # non-doubling widths -> 1x1 projections
    assert net.levels == 3 and net.multiple == 4
    seg, rec = net(torch.randn(2, 1, 12, 20))
    assert seg.shape == (2, 5, 12, 20) and rec.shape == (2, 1, 12, 20)
    net = build_generator(widths=(16, 32), norm="batch")
    assert net(torch.randn(2, 1, 6, 10))[0].shape == (2, 5, 6, 10)
    default = build_generator()
    assert not any(isinstance(m, (torch.nn.InstanceNorm2d, torch.nn.BatchNorm2d)) for m in default.modules())


@pytest.mark.parametrize(
    "dims,shape,bad",
    [(2, (1, 1, 60, 64), "(60, 64)"), (2, (1, 1, 64, 4), "(64, 4)"), (3, (1, 1, 16, 12, 16), "(16, 12, 16)")],
)
def test_incompatible_size_raises(dims, shape, bad):
    net = build_generator(dims=dims)
    with pytest.raises(ValueError, match=r"divisible by 8") as err:
        net(torch.zeros(shape))
    assert bad in str(err.value)
    with pytest.raises(ValueError, match=r"divisible by 8"):
        net.forward_seg(torch.zeros(shape))


def test_wrong_rank_or_channels_raise():
    with pytest.raises(ValueError, match="4-D input"):
        build_generator()(torch.zeros(1, 1, 16, 16, 16))
    with pytest.raises(ValueError, match="input channel"):
        build_generator(in_channels=3)(torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError):
        build_generator(recon_from="latent")
    with pytest.raises(ValueError):
        build_generator(norm="group")
    with pytest.raises(ValueError):
        build_generator(dims=1)


def test_recon_from_modes_differ_in_structure():
    dec = build_generator(recon_from="decoder")
    bot = build_generator(recon_from="bottleneck")
    assert len(dec.recon_decoder) == 0 and len(bot.recon_decoder) == 3
    x = torch.randn(1, 1, 32, 32)
    # Decoder mode: the recon head reads the shared (skip-connected) decoder.  Bottleneck mode: the recon
    # comes from its own skip-free path, so perturbing the shared decoder's last block (the one fed by
    # the shallowest skip) changes the segmentation but not the reconstruction.
    for net, recon_changes in ((dec, True), (bot, False)):
        seg0, rec0 = net(x)
        with torch.no_grad():
            net.decoder[-1].conv1.weight.add_(0.5)  # last decoder block: uses the shallowest skip
        seg1, rec1 = net(x)
        assert not torch.allclose(seg0, seg1)
        assert (not torch.allclose(rec0, rec1)) == recon_changes


def test_forward_seg_matches_forward_and_skips_recon_decoder():
    net = build_generator(recon_from="bottleneck").eval()
    calls = []
    net.recon_decoder[0].register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(2, 1, 32, 32)
    seg = net.forward_seg(x)
    assert not calls
    torch.testing.assert_close(seg, net(x)[0])
    assert calls


class _SegOnly(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.forward_seg(x)


@pytest.mark.parametrize("dims", [2, 3])
def test_forward_seg_is_traceable(dims):
    net = build_generator(dims=dims, recon_from="bottleneck").eval()
    size = (32, 32) if dims == 2 else (8, 16, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # jit deprecation notices
        traced = torch.jit.trace(_SegOnly(net), torch.randn(1, 1, *size), check_trace=False)
    other = (48, 32) if dims == 2 else (16, 8, 16)  # a different size than the example input
    x = torch.randn(2, 1, *other)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), net.forward_seg(x))


def test_scriptable():
    net = build_generator().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(net)
    x = torch.randn(1, 1, 16, 24)
    with torch.no_grad():
        torch.testing.assert_close(scripted.forward_seg(x), net.forward_seg(x))


def test_generator_trains_on_toy_task():
    """A few Adam steps on a bright-square task lower segmentation + reconstruction loss."""
    torch.manual_seed(0)
    net = HybridNet(dims=2, num_classes=2, widths=(8, 16, 32))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.randn(4, 1, 16, 16) * 0.1
    y = torch.zeros(4, 16, 16, dtype=torch.long)
    for i in range(4):
        r, c = 2 + 2 * i, 3 + i
        x[i, 0, r : r + 6, c : c + 6] += 1.0
        y[i, r : r + 6, c : c + 6] = 1

    def loss_fn():
        seg, rec = net(x)
        return torch.nn.functional.cross_entropy(seg, y) + (rec - x).square().mean()

    first = loss_fn().item()
    for _ in range(20):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    assert loss_fn().item() < 0.5 * first


def test_nets_doctest():
    result = doctest.testmod(lmisa.nets, verbose=False)
    assert result.attempted >= 4 and result.failed == 0
