"""The critic's window over each target scan: the run of slices around the predicted organs."""

from __future__ import annotations

import numpy as np
import pytest

from lmisa.critic_window import check_critic_window, window_index
from lmisa.errors import LmisaError
from lmisa.extent import heaviest_window


def test_heaviest_window_takes_the_first_of_equal_runs() -> None:
    assert heaviest_window(np.array([0, 5, 9, 9, 1, 0]), 3) == 1
    assert heaviest_window(np.array([1, 1, 1, 1]), 2) == 0
    assert heaviest_window(np.array([3, 4]), 5) == 0  # wider than the scan


def test_window_index_per_case_with_its_own_spacing() -> None:
    pixels = [0, 0, 7, 8, 0, 0] + [4, 0, 0, 0]
    # case 1: 6 slices of 10 mm, 20 mm = 2 slices; case 2: 4 slices of 5 mm, 20 mm = 4 slices (all)
    index = window_index(pixels, case_starts=[0, 6], case_lengths=[6, 4], slice_mm=[10.0, 5.0], span_mm=20.0)
    assert index.tolist() == [2, 3, 6, 7, 8, 9]


def test_window_index_keeps_a_short_scan_whole_and_a_scan_without_organs_at_its_start() -> None:
    assert window_index([0, 0, 0], [0], [3], [10.0], 100.0).tolist() == [0, 1, 2]
    assert window_index([0, 0, 0, 0], [0], [4], [10.0], 20.0).tolist() == [0, 1]
    with pytest.raises(ValueError, match="positive span"):
        window_index([1], [0], [1], [1.0], 0.0)


@pytest.mark.parametrize("margin, dims", [(0.5, 2), (-1.0, 2), (float("inf"), 2), (1.2, 3)])
def test_check_critic_window_refuses(margin: float, dims: int) -> None:
    with pytest.raises(LmisaError, match="critic_window"):
        check_critic_window(margin, dims)


def test_check_critic_window_accepts_off_and_margins_from_one() -> None:
    for margin in (0.0, 1.0, 1.1):
        check_critic_window(margin, 2)
    check_critic_window(0.0, 3)
