"""Batched augmentation on the device: random in-plane affine, gamma, intensity curve, shading, noise; z-scoring.

MONAI's RandAffine draws and warps one sample at a time on the host; the same transform for a whole
batch as one ``affine_grid`` + ``grid_sample`` keeps the GPU fed with no loader. There is no flip:
a left-right flip would swap the left and right kidney labels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lmisa.config import AugmentConfig


def _uniform(n: int, lo: float, hi: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, device=device)


def affine_matrices(angle_deg: torch.Tensor, zoom: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``(n, 2, 3)`` matrices for ``affine_grid`` from ``n`` angles (degrees), isotropic zooms (> 1 magnifies)
    and ``(n, 2)`` shifts (in normalised coordinates, -1..1 across the frame)."""
    angle = angle_deg * (math.pi / 180)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    return torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )


def random_affine_matrices(n: int, cfg: AugmentConfig, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """``(n, 2, 3)`` matrices for ``affine_grid``: rotation, isotropic zoom, shift."""
    angle = _uniform(n, -cfg.rotate_deg, cfg.rotate_deg, g, device)
    zoom = _uniform(n, cfg.scale[0], cfg.scale[1], g, device)
    shift = _uniform(2 * n, -2 * cfg.shift, 2 * cfg.shift, g, device).view(n, 2)
    return affine_matrices(angle, zoom, shift)


def random_affine_matrices_3d(n: int, cfg: AugmentConfig, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """``(n, 3, 4)`` matrices: the in-plane rotation/zoom/shift of the 2D case, depth untouched."""
    inplane = random_affine_matrices(n, cfg, g, device)  # (n, 2, 3) over (x, y)
    theta = torch.zeros(n, 3, 4, device=device)
    theta[:, :2, :2] = inplane[:, :, :2]
    theta[:, :2, 3] = inplane[:, :, 2]
    theta[:, 2, 2] = 1.0
    return theta


def augment_batch(
    x: torch.Tensor, y: torch.Tensor | None, cfg: AugmentConfig, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Augment ``x`` (B, C, H, W) or (B, C, D, H, W) in [0, 1] and its labels with the same warp."""
    if not cfg.enabled:
        return x, y
    n, device = x.shape[0], x.device
    make = random_affine_matrices_3d if x.ndim == 5 else random_affine_matrices
    theta = make(n, cfg, g, device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if y is not None:
        y = F.grid_sample(y[:, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
        y = y[:, 0].long()
    gamma = _uniform(n, cfg.gamma[0], cfg.gamma[1], g, device).view(n, *([1] * (x.ndim - 1)))
    x = x.clamp_min(0).pow(gamma)
    # Pixels at 0 (air, the padding, an MR's masked background; below one 8-bit step, which the warp's
    # interpolation leaves) stay flat through the shading, the curve and the per-image noise below:
    # in MLNGM a flat region is 0, noise there a texture.
    if cfg.bias_field > 0 or cfg.remap_prob > 0 or cfg.noise_max > 0:
        inside = x > FLAT_LEVEL
        x = x * inside
    if cfg.bias_field > 0:
        x = random_bias_field(x, cfg.bias_field, g)
    if cfg.remap_prob > 0:
        x = random_intensity_curve(x, cfg.remap_prob, g)
    if cfg.noise_std > 0:
        x = x + cfg.noise_std * torch.randn(x.shape, generator=g, device=device)
    if cfg.noise_max > 0:
        std = _uniform(n, 0.0, cfg.noise_max, g, device).view(n, *([1] * (x.ndim - 1)))
        x = x + std * torch.randn(x.shape, generator=g, device=device) * inside
    return x, y


FLAT_LEVEL = 1e-3  # intensities (in [0, 1]) at or below this count as the flat outside
CURVE_KNOTS = 6  # control points of the random intensity curve, evenly spaced over [0, 1]


def random_intensity_curve(x: torch.Tensor, prob: float, g: torch.Generator) -> torch.Tensor:
    """Send each image (in [0, 1]) through its own random piecewise-linear curve with probability ``prob``.

    The curve's values at the knots are uniform in [0, 1], so it is neither monotone nor
    polarity-preserving: tissues that one modality draws apart may meet, and the other way round.
    That changes which organ boundaries carry a gradient, the modality difference that MLNGM
    (a gradient magnitude, blind to a global rescaling or inversion) cannot remove by itself.
    """
    n, device = x.shape[0], x.device
    values = torch.rand(n, CURVE_KNOTS, generator=g, device=device)
    pos = x.clamp(0, 1).flatten(1) * (CURVE_KNOTS - 1)
    lo = pos.floor().clamp_max(CURVE_KNOTS - 2)
    frac = pos - lo
    lo = lo.long()
    curved = torch.gather(values, 1, lo) * (1 - frac) + torch.gather(values, 1, lo + 1) * frac
    use = torch.rand(n, 1, generator=g, device=device) < prob
    return torch.where(use, curved, x.flatten(1)).view_as(x)


def random_bias_field(x: torch.Tensor, amplitude: float, g: torch.Generator) -> torch.Tensor:
    """Multiply each image by ``exp(a * f)``: ``f`` a smooth random field (a 4 x 4 grid of N(0, 1)
    values, upsampled), ``a`` uniform in [0, amplitude]. Receive-coil shading, as in MR."""
    n, device = x.shape[0], x.device
    coarse = torch.randn(n, 1, *([4] * (x.ndim - 2)), generator=g, device=device)
    mode = "bicubic" if x.ndim == 4 else "trilinear"
    field = F.interpolate(coarse, size=x.shape[2:], mode=mode, align_corners=True)
    a = _uniform(n, 0.0, amplitude, g, device).view(n, *([1] * (x.ndim - 1)))
    return x * torch.exp(a * field)


def standardise(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Z-score each sample and channel over its pixels (the network's input normalisation)."""
    dims = tuple(range(2, x.ndim))
    mean = x.mean(dim=dims, keepdim=True)
    std = x.std(dim=dims, keepdim=True)
    return (x - mean) / (std + eps)
