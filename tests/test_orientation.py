"""Voxel-axis orientation codes from headers, and the one-orientation check over training images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lmisa.io import MedicalImage, write_image
from lmisa.orientation import axis_codes, axis_codes_of, orientation_problems


def _write(path: Path, affine: np.ndarray) -> Path:
    write_image(path, MedicalImage(np.zeros((2, 3, 4), np.float32), affine))
    return path


def test_axis_codes_follow_the_affine() -> None:
    assert axis_codes_of(np.diag([1.0, 1.0, 1.0, 1.0])) == "RAS"
    assert axis_codes_of(np.diag([-1.0, -1.0, 1.0, 1.0])) == "LPS"
    sagittal = np.array([[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]], float)
    assert axis_codes_of(sagittal) == "ASR"


def test_only_images_unlike_the_first_are_named(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.nii.gz", np.diag([-1.5, 1.5, 3.0, 1.0]))
    b = _write(tmp_path / "b.nii.gz", np.diag([-0.8, 0.8, 5.0, 1.0]))  # other spacing, same axes
    c = _write(tmp_path / "c.nii.gz", np.diag([1.5, 1.5, 3.0, 1.0]))  # left-right flipped
    assert axis_codes(a) == "LAS" and orientation_problems([a, b]) == []
    problems = orientation_problems([a, b, c])
    assert [p.path for p in problems] == [c]
    assert "RAS differ from a.nii.gz's LAS" in problems[0].message
