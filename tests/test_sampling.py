"""Slice sampling on the device: the critic's real maps can match a given share of organ slices."""

from __future__ import annotations

import pytest
import torch

from lmisa.preprocess import SliceSet
from lmisa.sampling import SliceSampler, organ_pixel_quantile, organ_slices


def _slices(labels: torch.Tensor) -> SliceSet:
    n = labels.shape[0]
    return SliceSet(
        inputs=torch.zeros(n, *labels.shape[1:], dtype=torch.float16), labels=labels,
        case_of_slice=torch.zeros(n, dtype=torch.int64), case_names=["a"],
        case_starts=torch.zeros(1, dtype=torch.int64), case_lengths=torch.full((1,), n, dtype=torch.int64),
    )


def test_organ_slices_counts_pixels() -> None:
    labels = torch.zeros(3, 8, 8, dtype=torch.uint8)
    labels[1, 0, 0] = 2
    labels[2, :2, :2] = 1
    assert organ_slices(labels).tolist() == [False, True, True]
    assert organ_slices(labels, min_pixels=4).tolist() == [False, False, True]


def test_match_organ_fraction_draws_organ_slices_that_often() -> None:
    labels = torch.zeros(100, 8, 8, dtype=torch.uint8)
    labels[:10, :3, :3] = 1  # 10 % of the slices hold an organ
    labels[10, 0, 0] = 1  # one stray pixel: not an organ slice at min_pixels=4
    sampler = SliceSampler(_slices(labels), 4000, torch.Generator().manual_seed(0), with_labels=True)
    share = lambda: organ_slices(sampler.sample()[1], 4).float().mean().item()  # noqa: E731
    assert abs(share() - 0.10) < 0.03  # uniform
    sampler.match_organ_fraction(0.8, min_pixels=4)
    assert abs(share() - 0.8) < 0.03
    sampler.match_organ_fraction(0.0, min_pixels=4)
    assert share() == 0.0


def test_organ_pixel_quantile() -> None:
    labels = torch.zeros(5, 4, 4, dtype=torch.long)
    for i, n in enumerate([0, 2, 4, 6, 8]):
        labels[i].view(-1)[:n] = 1
    assert organ_pixel_quantile(labels, 0.0, 1) == 1
    assert organ_pixel_quantile(labels, 0.5, 1) == 5  # median of 2, 4, 6, 8, rounded up
    assert organ_pixel_quantile(labels, 0.5, 3) == 6  # of 4, 6, 8: the map with 2 does not hold an organ
    assert organ_pixel_quantile(torch.zeros(2, 4, 4), 0.5, 3) == 3


def test_restrict_to_draws_only_the_given_slices_until_lifted() -> None:
    sampler = SliceSampler(_slices(torch.zeros(50, 4, 4, dtype=torch.uint8)), 500, torch.Generator().manual_seed(0),
                           with_labels=False)
    sampler.restrict_to(torch.tensor([3, 7]))
    assert set(sampler.draw_indices().tolist()) == {3, 7}
    sampler.restrict_to(None)
    assert len(set(sampler.draw_indices().tolist())) > 2
    with pytest.raises(ValueError, match="at least one slice"):
        sampler.restrict_to(torch.tensor([], dtype=torch.int64))
