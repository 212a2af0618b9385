"""Batched augmentation on the device: random in-plane affine, gamma, noise; then z-scoring.

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


def random_affine_matrices(n: int, cfg: AugmentConfig, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """``(n, 2, 3)`` matrices for ``affine_grid``: rotation, isotropic zoom, shift."""
    angle = _uniform(n, -cfg.rotate_deg, cfg.rotate_deg, g, device) * (math.pi / 180)
    zoom = _uniform(n, cfg.scale[0], cfg.scale[1], g, device)
    shift = _uniform(2 * n, -2 * cfg.shift, 2 * cfg.shift, g, device).view(n, 2)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    return torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )


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
    if cfg.noise_std > 0:
        x = x + cfg.noise_std * torch.randn(x.shape, generator=g, device=device)
    return x, y


def standardise(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Z-score each sample and channel over its pixels (the network's input normalisation)."""
    dims = tuple(range(2, x.ndim))
    mean = x.mean(dim=dims, keepdim=True)
    std = x.std(dim=dims, keepdim=True)
    return (x - mean) / (std + eps)
