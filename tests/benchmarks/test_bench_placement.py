"""benchmarks/bench_placement.py: the strided placement's slice choice and its held counts."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_benchmark("bench_placement")


def test_every_stride_th_slice_of_each_case_from_its_first(bench) -> None:
    assert bench.placement_slices([0, 5], [5, 3], 2).tolist() == [0, 2, 4, 5, 7]
    assert bench.placement_slices([0, 4], [4, 2], 1).tolist() == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="stride of at least 1"):
        bench.placement_slices([0], [3], 0)


def test_each_slice_holds_the_count_of_the_last_predicted_one_of_its_case(bench) -> None:
    assert bench.hold_counts(np.array([1, 3, 5, 7, 9]), [5, 3], 2).tolist() == [1, 1, 3, 3, 5, 7, 7, 9]
    with pytest.raises(ValueError, match="4 amounts for 5 predicted slices"):
        bench.hold_counts(np.array([1, 3, 5, 7]), [5, 3], 2)


def test_window_starts_per_case(bench) -> None:
    assert bench.window_starts(np.array([1, 2, 6, 7]), [0, 5], [5, 4]) == [1, 1]
