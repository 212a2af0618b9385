"""lmisa.extent: organ extents through the slices, and the cap on predicted organs."""

from __future__ import annotations

import doctest
from dataclasses import replace

import numpy as np
import pytest
import torch

import lmisa.extent
from lmisa.errors import LmisaError
from lmisa.extent import cap_extent, check_extent_margin, longest_extents_mm, presence_spans_mm, window_width
from lmisa.preprocess import SliceSet


def test_presence_spans_count_from_first_to_last_flagged_slice() -> None:
    present = [False, True, False, False, True, False] + [False, False] + [True]  # cases of 6, 2 and 1 slices
    # a gap inside counts: the first case spans slices 1..4; the second has none
    assert presence_spans_mm(present, [0, 6, 8], [6, 2, 1], [2.0, 3.0, 5.0]) == [8.0, 0.0, 5.0]


def test_longest_extents_take_each_case_with_its_own_spacing() -> None:
    lab = torch.zeros(5 + 3, 2, 2, dtype=torch.uint8)
    lab[0:4, 0, 0] = 1  # case 0 (5 slices, 2 mm): liver on 4 slices = 8 mm
    lab[5:8, 0, 0] = 1  # case 1 (3 slices, 5 mm): liver on 3 slices = 15 mm
    lab[6, 1, 1] = 2
    slices = SliceSet(torch.zeros(8, 2, 2, dtype=torch.float16), lab, torch.tensor([0] * 5 + [1] * 3),
                      ["a", "b"], torch.tensor([0, 5]), torch.tensor([5, 3]))
    organs = {"background": 0, "liver": 1, "spleen": 2, "kidney": 3}
    assert longest_extents_mm(slices, [2.0, 5.0], organs) == {"liver": 15.0, "spleen": 5.0, "kidney": 0.0}
    with pytest.raises(ValueError, match="labelled"):
        longest_extents_mm(replace(slices, labels=None), [2.0, 5.0], organs)


def test_cap_keeps_the_window_holding_most_of_the_organ() -> None:
    lab = np.zeros((10, 4, 4), np.uint8)
    lab[0:3, 0, 0] = 1  # a thin tail on slices 0-2
    lab[4:8, :2, :2] = 1  # the bulk on slices 4-7
    lab[:, 3, 3] = 2  # another organ on every slice: no cap for it
    before = lab.copy()
    out = cap_extent(lab, slice_mm=2.5, caps={1: 10.0})  # 4 slices
    assert np.array_equal(lab, before)  # input untouched
    assert np.flatnonzero((out == 1).any(axis=(1, 2))).tolist() == [4, 5, 6, 7]
    assert (out[:, 3, 3] == 2).all() and out.dtype == lab.dtype
    assert np.array_equal(out[4:8], lab[4:8])


@pytest.mark.parametrize("cap", [0.0, 25.0, 100.0])
def test_no_cap_or_a_cap_longer_than_the_organ_changes_nothing(cap: float) -> None:
    lab = np.zeros((10, 2, 2), np.uint8)
    lab[2:9, 0, 0] = 1  # 7 slices x 3.5 mm = 24.5 mm
    assert np.array_equal(cap_extent(lab, 3.5, {1: cap, 4: 1.0}), lab)


def test_a_cap_below_one_slice_keeps_one_slice() -> None:
    lab = np.zeros((4, 2, 2), np.uint8)
    lab[:, 0, 0] = 1
    lab[2, 1, 1] = 1
    assert np.flatnonzero(cap_extent(lab, 5.0, {1: 1.0}).any(axis=(1, 2))).tolist() == [2]


def test_window_width_counts_whole_slices_and_at_least_one() -> None:
    # 263 mm at 2.5 mm: 105 whole slices; an exact multiple is not lost to rounding; never 0
    assert window_width(263.0, 2.5) == 105 and window_width(0.3 * 10, 0.3) == 10 and window_width(1.0, 5.0) == 1


def test_bad_spacing_and_margin_are_refused() -> None:
    with pytest.raises(ValueError, match="slice spacing"):
        cap_extent(np.zeros((3, 2, 2), np.uint8), 0.0, {1: 5.0})
    one_slice = np.ones((1, 2, 2), np.uint8)  # nothing to cap: its spacing does not matter
    assert np.array_equal(cap_extent(one_slice, 0.0, {1: 5.0}), one_slice)
    for bad in (-0.5, float("nan"), float("inf")):
        with pytest.raises(LmisaError, match="post.extent_margin"):
            check_extent_margin(bad)
    check_extent_margin(0.0)
    check_extent_margin(1.1)


def test_docstring_examples() -> None:
    assert doctest.testmod(lmisa.extent).failed == 0
