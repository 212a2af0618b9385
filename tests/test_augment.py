"""Batched augmentation: the appearance transforms (intensity curve, shading, noise) and their rules."""

from __future__ import annotations

import torch

from lmisa.augment import augment_batch, random_bias_field, random_intensity_curve
from lmisa.config import AugmentConfig

NO_WARP = {"rotate_deg": 0.0, "scale": (1.0, 1.0), "shift": 0.0, "gamma": (1.0, 1.0), "noise_std": 0.0}


def _ramp(n: int = 4, size: int = 16) -> torch.Tensor:
    """Images whose left quarter is exactly 0 (air) and the rest a ramp in (0, 1]."""
    x = torch.linspace(0, 1, size).repeat(n, 1, size, 1)
    x[..., : size // 4] = 0.0
    return x


def test_intensity_curve_is_piecewise_linear_per_image_and_can_invert() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.linspace(0, 1, 101).view(1, 1, 1, 101).repeat(64, 1, 1, 1)
    out = random_intensity_curve(x, prob=1.0, g=g)
    assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    # every image is a curve through its own knot values: identical inputs, different outputs
    assert not torch.allclose(out[0], out[1])
    # non-monotone curves exist (the point: boundaries may vanish or appear)
    steps = out[:, 0, 0].diff(dim=1)
    assert bool(((steps > 1e-6).any(1) & (steps < -1e-6).any(1)).any())


def test_intensity_curve_probability_zero_is_identity() -> None:
    x = torch.rand(8, 1, 10, 10)
    out = random_intensity_curve(x, prob=0.0, g=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, x)


def test_bias_field_is_smooth_positive_and_per_image() -> None:
    x = torch.ones(3, 1, 32, 32)
    out = random_bias_field(x, amplitude=0.5, g=torch.Generator().manual_seed(2))
    assert float(out.min()) > 0 and not torch.allclose(out[0], out[1])
    # smooth: neighbouring pixels differ far less than the field's range
    assert float(out.diff(dim=-1).abs().max()) < 0.5 * float(out.max() - out.min())


def test_flat_zero_regions_stay_flat_through_shading_curve_and_noise() -> None:
    cfg = AugmentConfig(**NO_WARP, remap_prob=1.0, bias_field=0.5, noise_max=0.1)
    x = _ramp()
    out, _ = augment_batch(x, None, cfg, torch.Generator().manual_seed(3))
    air = out[..., :4]
    assert float((air - air[..., :1, :1]).abs().max()) == 0.0  # one value per image: still flat
    assert float(out[..., 8:].std()) > 0  # the inside did change
