"""The critic's real-map prior from anatomy: organ spans in the source labels over target scan lengths."""

from __future__ import annotations

import doctest

import pytest
import torch

import lmisa.real_prior
from lmisa.preprocess import SliceSet
from lmisa.real_prior import estimate_organ_share, expected_organ_fraction, organ_spans_mm


def _cases(*organ_slices_per_case: tuple[int, list[int]]) -> SliceSet:
    """Cases of ``n`` 8x8 slices, a 2x2 organ on the listed slices."""
    labels, starts, lengths, owner = [], [], [], []
    for i, (n, organ) in enumerate(organ_slices_per_case):
        lab = torch.zeros(n, 8, 8, dtype=torch.uint8)
        lab[organ, 2:4, 2:4] = 1
        starts.append(sum(lengths))
        lengths.append(n)
        labels.append(lab)
        owner.append(torch.full((n,), i))
    labels = torch.cat(labels)
    return SliceSet(torch.zeros(labels.shape, dtype=torch.float16), labels, torch.cat(owner),
                    [f"c{i}" for i in range(len(lengths))], torch.tensor(starts), torch.tensor(lengths))


def test_organ_span_runs_from_the_first_to_the_last_organ_slice_in_mm() -> None:
    cases = _cases((10, [2, 3, 6]), (6, []), (8, [0]))
    assert organ_spans_mm(cases, [2.0, 5.0, 3.0]) == [10.0, 3.0]  # 5 slices x 2 mm; the empty case has none
    assert organ_spans_mm(cases, [2.0, 5.0, 3.0], min_pixels=5) == []  # 2x2 = 4 pixels: below the minimum


def test_expected_fraction_covers_long_scans_partly_and_short_ones_whole() -> None:
    assert expected_organ_fraction(200.0, [100], [5.0]) == 0.4  # 500 mm chest-to-pelvis scan
    assert expected_organ_fraction(200.0, [30], [5.0]) == 1.0  # a 150 mm scan inside the organ region
    assert expected_organ_fraction(200.0, [100, 30], [5.0, 5.0]) == pytest.approx(70 / 130)
    with pytest.raises(ValueError, match="at least one slice"):
        expected_organ_fraction(200.0, [], [])


def test_the_estimate_takes_the_median_source_span_for_both_sides() -> None:
    source = _cases((10, [1, 2]), (10, [1, 2, 3]), (10, [0, 1, 2, 3, 4, 5, 6, 7]))  # 20, 30, 80 mm at 10 mm
    share = estimate_organ_share(source, [10.0] * 3, [20, 5], [5.0, 5.0])
    assert share.span_mm == 30.0 and share.target == pytest.approx((6 + 5) / 25)
    assert share.source == pytest.approx(3 * 3 / 30)  # 30 mm of each 100 mm source scan
    with pytest.raises(ValueError, match="no source case has a slice with 1 or more organ pixels"):
        estimate_organ_share(_cases((4, [])), [1.0], [4], [1.0])


def test_docstring_examples_run() -> None:
    assert doctest.testmod(lmisa.real_prior).failed == 0
