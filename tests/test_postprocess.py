"""keep_largest_component: one connected object per organ, removed islands become background."""

from __future__ import annotations

import numpy as np
import pytest

from lmisa.postprocess import keep_largest_component


def _two_blobs_per_class() -> tuple[np.ndarray, dict[int, tuple[np.ndarray, np.ndarray]]]:
    lab = np.zeros((10, 40, 40), np.uint8)
    blobs = {}
    for c, (y0, x0) in enumerate([(2, 2), (2, 22), (22, 2), (22, 22)], start=1):
        big = np.zeros_like(lab, bool)
        big[1:9, y0 : y0 + 10, x0 : x0 + 8] = True
        small = np.zeros_like(lab, bool)
        small[2:4, y0 + 13 : y0 + 15, x0 + 12 : x0 + 14] = True  # separate: no shared face, edge or corner
        lab[big] = c
        lab[small] = c
        blobs[c] = (big, small)
    return lab, blobs


def test_keeps_the_largest_blob_of_every_class() -> None:
    lab, blobs = _two_blobs_per_class()
    before = lab.copy()
    out = keep_largest_component(lab)
    assert np.array_equal(lab, before)  # input untouched
    assert out.dtype == lab.dtype and out.shape == lab.shape
    for c, (big, small) in blobs.items():
        assert (out[big] == c).all()
        assert (out[small] == 0).all()
    assert set(np.unique(out)) == {0, 1, 2, 3, 4}


def test_only_the_given_classes_are_cleaned() -> None:
    lab, blobs = _two_blobs_per_class()
    out = keep_largest_component(lab, classes=[1, 3, 7])  # 7 is absent: fine
    for c, (big, small) in blobs.items():
        assert (out[big] == c).all()
        assert (out[small] == (0 if c in (1, 3) else c)).all()


def test_connectivity_full_by_default_faces_on_request() -> None:
    lab = np.zeros((3, 6, 6), np.int16)
    lab[1, 1:3, 1:3] = 2  # 4 voxels
    lab[1, 3, 3] = 2  # touches the block only by a corner (in-plane diagonal)
    lab[2, 4, 4] = 2  # touches that voxel only by a 3D corner
    assert (keep_largest_component(lab) == lab).all()  # 26-connected: one object
    faces = keep_largest_component(lab, connectivity=1)
    assert faces[1, 3, 3] == 0 and faces[2, 4, 4] == 0 and (faces[1, 1:3, 1:3] == 2).all()


def test_empty_and_trivial_inputs() -> None:
    assert keep_largest_component(np.zeros((2, 3, 4), np.uint8)).sum() == 0
    one = np.zeros((2, 3, 4), np.uint8)
    one[0, 0, 0] = 5
    assert np.array_equal(keep_largest_component(one), one)
    with pytest.raises(ValueError, match="integer"):
        keep_largest_component(np.zeros((2, 2), np.float32))
