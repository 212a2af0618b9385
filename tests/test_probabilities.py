"""A case's class probabilities on disk: the round trip, and a bad file named in one line."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest

import lmisa.probabilities
from lmisa.errors import LmisaError
from lmisa.probabilities import read_probabilities, write_probabilities


def test_the_docstring_example_runs() -> None:
    assert doctest.testmod(lmisa.probabilities).failed == 0


def test_round_trip_and_no_overwrite(tmp_path: Path) -> None:
    probs = np.random.default_rng(0).random((3, 2, 4, 5)).astype(np.float16)
    affine = np.diag([1.5, 1.5, 4.0, 1.0])
    path = write_probabilities(tmp_path / "c.npz", probs, affine, {"background": 0, "a": 1, "b": 2})
    read = read_probabilities(path)
    np.testing.assert_array_equal(read.probabilities, probs)
    np.testing.assert_array_equal(read.affine, affine)
    assert read.labels == {"background": 0, "a": 1, "b": 2}
    with pytest.raises(FileExistsError):
        write_probabilities(path, probs * 0, affine, {})
    np.testing.assert_array_equal(read_probabilities(path).probabilities, probs)
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # no temporary file left


def test_read_probabilities_names_a_bad_file(tmp_path: Path) -> None:
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(LmisaError, match="x.npz: not a probabilities file"):
        read_probabilities(tmp_path / "x.npz")
    with pytest.raises(LmisaError, match="y.npz: probabilities file not found"):
        read_probabilities(tmp_path / "y.npz")
    np.savez(tmp_path / "z.npz", other=np.zeros(2))
    with pytest.raises(LmisaError, match="z.npz: not a probabilities file"):
        read_probabilities(tmp_path / "z.npz")
