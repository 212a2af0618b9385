"""lmisa.confusion: where the errors of a label map are."""

from __future__ import annotations

import numpy as np
import pytest

from lmisa.confusion import ErrorCounts, confusion_matrix, error_counts, error_shares


def test_counts_misses_confusions_and_false_positives_beyond_extent():
    ref = np.zeros((6, 4, 4), np.uint8)
    ref[1:4, 1:3, 1:3] = 1  # structure 1 on slices 1-3 (12 voxels)
    ref[2, 0, 0] = 2
    pred = ref.copy()
    pred[1, 1, 1] = 0  # one voxel of 1 missed
    pred[2, 1, 2] = 2  # one voxel of 1 labelled 2
    pred[5, 0:2, 0] = 1  # two voxels of 1 on slice 5, which holds no 1
    pred[2, 3, 3] = 1  # one false positive of 1 on a slice that holds 1
    counts = error_counts(pred, ref)
    m = confusion_matrix(counts, [1, 2])
    assert m[1].tolist() == [1, 10, 1]  # structure 1: missed, kept, labelled as 2
    assert m[2].tolist() == [0, 0, 1]
    assert m[0, 1] == 3 and m.sum() == ref.size
    assert counts.beyond_extent == {1: 2}
    shares = error_shares(m, [counts.beyond_extent[1], 0], ["one", "two"])
    assert shares["one"] == pytest.approx({"missed": 100 / 12, "confused": 100 / 12, "false_positive": 25.0,
                                           "beyond_extent": 100 / 6})
    assert shares["two"]["missed"] == 0.0
    assert "three" not in error_shares(np.zeros((2, 2)), [5], ["three"])  # absent from every reference


def test_counts_add_and_unknown_values_count_as_background():
    a = np.array([[[0, 1, 7]]])
    b = np.array([[[1, 1, 0]]])
    total = error_counts(a, b) + error_counts(b, a)
    assert isinstance(total, ErrorCounts)
    m = confusion_matrix(total, [1])  # value 7 is not a structure: background
    assert m.tolist() == [[2, 1], [1, 2]]


def test_large_label_values_and_shape_mismatch():
    ref = np.array([[[5000, 0]]])
    counts = error_counts(ref, ref)
    assert confusion_matrix(counts, [5000]).tolist() == [[1, 0], [0, 1]]
    with pytest.raises(ValueError, match="shape"):
        error_counts(np.zeros((2, 2, 2)), np.zeros((2, 2, 3)))
