"""Test-time augmentation for 2D slices: class probabilities averaged over a few fixed in-plane views.

Each view warps the batch of slices (rotation and zoom inside the training augmentation's range), the
network segments it, and its probabilities are warped back onto the slice; where a view did not cover a
pixel (a zoomed-in view loses the frame's border) the other views decide. The identity view is always one
of them, so every pixel has at least one.

Why not ``monai.data.TestTimeAugmentation``: it draws random invertible transforms one sample at a time on
the host (it is built to estimate uncertainty from many draws). A fixed handful of views is one batched
``affine_grid`` + ``grid_sample`` each way on the device, with :func:`lmisa.augment.affine_matrices`, the
matrices training draws from. No flips: a left-right flip would swap the left and right kidneys.

Example::

    probs = tta_probabilities(lambda x: net(standardise(x)), slices)  # (B, C, H, W), sums to 1 over C
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from lmisa.augment import affine_matrices

__all__ = ["VIEWS", "views_within", "view_matrices", "inverse_matrices", "tta_probabilities"]

# (rotation in degrees, zoom): the identity first, then +-10 degrees and 0.9 / 1.1 zoom (training draws
# +-15 degrees and 0.75-1.2)
VIEWS: tuple[tuple[float, float], ...] = ((0.0, 1.0), (-10.0, 1.0), (10.0, 1.0), (0.0, 0.9), (0.0, 1.1))


def views_within(rotate_deg: float, scale: Sequence[float], enabled: bool = True) -> tuple[tuple[float, float], ...]:
    """:data:`VIEWS` limited to a run's training augmentation (angles within +-``rotate_deg``, zooms within
    ``scale``; only the identity when it trained without augmentation): a view the network never saw in
    training would test it, not help it. The identity is always the first view."""
    views = [VIEWS[0]]
    for angle, zoom in VIEWS[1:] if enabled else ():
        view = (max(-rotate_deg, min(rotate_deg, angle)), max(scale[0], min(scale[1], zoom)))
        if view not in views:
            views.append(view)
    return tuple(views)


def view_matrices(views: Sequence[tuple[float, float]], device: torch.device | str = "cpu") -> torch.Tensor:
    """``(V, 2, 3)`` ``affine_grid`` matrices of ``views`` (angle in degrees, zoom), no shift."""
    angle = torch.tensor([a for a, _ in views], dtype=torch.float32, device=device)
    zoom = torch.tensor([z for _, z in views], dtype=torch.float32, device=device)
    return affine_matrices(angle, zoom, torch.zeros(len(views), 2, device=device))


def inverse_matrices(theta: torch.Tensor) -> torch.Tensor:
    """The ``(n, 2, 3)`` matrices that undo ``theta``: warping with one, then the other, is the identity."""
    a, t = theta[:, :, :2], theta[:, :, 2:]
    a_inv = torch.linalg.inv(a)
    return torch.cat([a_inv, -a_inv @ t], dim=2)


def _warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def tta_probabilities(
    segment: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    views: Sequence[tuple[float, float]] = VIEWS,
) -> torch.Tensor:
    """Softmax probabilities ``(B, C, H, W)`` of ``segment`` (slices -> logits) averaged over ``views``.

    ``x`` is ``(B, C, H, W)`` as training warped it (before z-scoring: ``segment`` does that). Each pixel
    averages the views that covered it.
    """
    if x.ndim != 4:
        raise ValueError(f"test-time augmentation is for 2D slices (B, C, H, W), got shape {tuple(x.shape)}")
    if not views:
        raise ValueError("test-time augmentation needs at least one view")
    total: torch.Tensor | float = 0.0
    weight: torch.Tensor | float = 0.0
    for view, theta in zip(views, view_matrices(views, x.device)):
        if tuple(view) == (0.0, 1.0):  # the identity: no warp, every pixel covered
            probs, cover = torch.softmax(segment(x).float(), dim=1), torch.ones_like(x[:, :1])
        else:
            back = inverse_matrices(theta[None])
            probs = _warp(torch.softmax(segment(_warp(x, theta[None])).float(), dim=1), back)
            cover = (_warp(torch.ones_like(x[:, :1]), back) > 0.999).float()  # pixels the view saw fully
            probs = probs * cover
        total = total + probs
        weight = weight + cover
    return total / torch.as_tensor(weight).clamp_min(1.0)
