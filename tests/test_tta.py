"""Test-time augmentation: the views undo exactly, a pointwise network is unchanged by them, and the
averaged probabilities are probabilities."""

from __future__ import annotations

import pytest
import torch

from lmisa.tta import VIEWS, _warp, inverse_matrices, tta_probabilities, view_matrices, views_within


def _blob(n: int = 2, size: int = 64) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    blob = (((yy - 30) / 12.0) ** 2 + ((xx - 36) / 8.0) ** 2 < 1).float()
    smooth = torch.nn.functional.avg_pool2d(blob[None, None], 5, stride=1, padding=2)
    return smooth.expand(n, 1, size, size).clone()


def _pointwise(x: torch.Tensor) -> torch.Tensor:
    """Logits of a per-pixel classifier (bright = class 1): every view of it agrees with the plain one."""
    return torch.cat([torch.zeros_like(x), 8 * (x - 0.5)], dim=1)


def test_views_include_the_identity_and_stay_inside_the_training_range() -> None:
    assert VIEWS[0] == (0.0, 1.0)
    assert all(abs(a) <= 15 and 0.75 <= z <= 1.2 for a, z in VIEWS)


def test_inverse_matrices_undo_each_view() -> None:
    x = _blob()
    theta = view_matrices(VIEWS[1:])
    back = inverse_matrices(theta)
    for t, b in zip(theta, back):
        there_and_back = _warp(_warp(x, t[None]), b[None])
        inner = (slice(None), slice(None), slice(16, 48), slice(16, 48))  # away from the frame's border
        torch.testing.assert_close(there_and_back[inner], x[inner], atol=0.08, rtol=0)
        eye = t[None] @ torch.cat([b, torch.tensor([[0.0, 0.0, 1.0]])])
        torch.testing.assert_close(eye, torch.eye(3)[None, :2], atol=1e-6, rtol=0)


def test_identity_only_is_the_plain_softmax() -> None:
    x = _blob()
    torch.testing.assert_close(tta_probabilities(_pointwise, x, views=[(0.0, 1.0)]), torch.softmax(_pointwise(x), 1))


def test_a_pointwise_network_is_unchanged_by_the_views() -> None:
    x = _blob()
    probs = tta_probabilities(_pointwise, x)
    assert probs.shape == (2, 2, 64, 64)
    torch.testing.assert_close(probs.sum(1), torch.ones(2, 64, 64))
    plain = torch.softmax(_pointwise(x), 1).argmax(1)
    assert (probs.argmax(1) == plain).float().mean() > 0.995


def test_segment_sees_each_view_once_per_batch() -> None:
    calls: list[tuple[int, ...]] = []

    def segment(x: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return _pointwise(x)

    tta_probabilities(segment, _blob(n=3))
    assert calls == [(3, 1, 64, 64)] * len(VIEWS)


def test_only_2d_slices() -> None:
    with pytest.raises(ValueError, match="2D slices"):
        tta_probabilities(_pointwise, torch.zeros(1, 1, 4, 8, 8))


def test_views_stay_within_the_runs_augmentation() -> None:
    assert views_within(15.0, (0.75, 1.2)) == VIEWS
    assert views_within(5.0, (1.0, 1.05)) == ((0.0, 1.0), (-5.0, 1.0), (5.0, 1.0), (0.0, 1.05))
    assert views_within(15.0, (0.75, 1.2), enabled=False) == ((0.0, 1.0),)


def test_a_non_square_frame_comes_back_exactly() -> None:
    """affine_grid works in normalised coordinates, so a view and its inverse undo each other on any frame."""
    h, w = 48, 96
    ramp = torch.stack(torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij"))[None]
    theta = view_matrices(VIEWS[1:])
    for t, b in zip(theta, inverse_matrices(theta)):
        back = _warp(_warp(ramp, t[None]), b[None])
        covered = _warp(_warp(torch.ones(1, 1, h, w), t[None]), b[None]) > 1 - 1e-6  # no padding mixed in
        torch.testing.assert_close(back[covered.expand_as(back)], ramp[covered.expand_as(ramp)], atol=1e-3, rtol=0)


def test_pixels_a_view_did_not_cover_are_decided_by_the_others() -> None:
    calls = []

    def segment(x: torch.Tensor) -> torch.Tensor:  # the identity votes class 0, the zoomed view class 1
        calls.append(1)
        logits = torch.zeros(x.shape[0], 2, *x.shape[2:])
        logits[:, 0 if len(calls) == 1 else 1] = 20.0
        return logits

    probs = tta_probabilities(segment, torch.rand(1, 1, 64, 64), views=[(0.0, 1.0), (0.0, 1.1)])
    assert probs[0, 0, 0, 0] > 0.99  # the frame's border: the 1.1 zoom never saw it
    torch.testing.assert_close(probs[0, :, 32, 32], torch.tensor([0.5, 0.5]), atol=1e-4, rtol=0)
