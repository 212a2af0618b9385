"""Voxel-axis orientation codes from headers, and the one-orientation check over training images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lmisa.io import MedicalImage, write_image
from lmisa.orientation import axis_codes, axis_codes_of, needs_turning, orientation_problems, to_axes


def _write(path: Path, affine: np.ndarray) -> Path:
    write_image(path, MedicalImage(np.zeros((2, 3, 4), np.float32), affine))
    return path


def test_axis_codes_follow_the_affine() -> None:
    assert axis_codes_of(np.diag([1.0, 1.0, 1.0, 1.0])) == "RAS"
    assert axis_codes_of(np.diag([-1.0, -1.0, 1.0, 1.0])) == "LPS"
    sagittal = np.array([[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]], float)
    assert axis_codes_of(sagittal) == "ASR"


def test_only_images_along_other_anatomical_axes_are_named(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.nii.gz", np.diag([-1.5, 1.5, 3.0, 1.0]))
    b = _write(tmp_path / "b.nii.gz", np.diag([0.8, -0.8, 5.0, 1.0]))  # flipped twice: turned, no problem
    c = _write(tmp_path / "c.nii.gz", np.array([[0, 0, 1.5, 0], [2.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 0, 1]]))
    assert axis_codes(a) == "LAS" and axis_codes(b) == "RPS" and orientation_problems([a, b]) == []
    problems = orientation_problems([a, b, c])
    assert [p.path for p in problems] == [c]
    assert f"voxel axes ASR run along other anatomical axes than LAS ({a})" in problems[0].message
    assert needs_turning([a, b], "LAS") and not needs_turning([a], "LAS") and not needs_turning([b], None)


def test_to_axes_turns_an_image_and_its_labels_back_exactly() -> None:
    rng = np.random.default_rng(0)
    sagittal = np.array([[0, 0, 1.5, 10], [2.0, 0, 0, -5], [0, 3.0, 0, 7], [0, 0, 0, 1]])  # voxel axes A, S, R
    image = MedicalImage(rng.normal(size=(4, 5, 6)).astype(np.float32), sagittal)
    turned, back = to_axes(image, "LAS")
    assert axis_codes_of(turned.affine) == "LAS" and turned.shape == (5, 6, 4)  # axial: z from the S axis (5), y from A (6), x from R (4)
    world = lambda img, zyx: img.affine @ np.array([*zyx[::-1], 1.0])  # noqa: E731
    assert np.allclose(world(image, (1, 2, 3)), world(turned, _find(turned, image.array[1, 2, 3])))
    np.testing.assert_array_equal(back(turned.array), image.array)
    same, identity = to_axes(turned, "LAS")
    assert same is turned and identity(turned.array) is turned.array


def _find(image: MedicalImage, value: float) -> tuple[int, int, int]:
    (z,), (y,), (x,) = np.nonzero(image.array == value)
    return int(z), int(y), int(x)


def test_an_affine_without_a_direction_is_left_as_stored() -> None:
    image = MedicalImage(np.zeros((2, 3, 4), np.float32), np.diag([1.0, 1.0, 0.0, 1.0]))
    assert axis_codes_of(image.affine) == "RA?"
    assert to_axes(image, "LAS")[0] is image and to_axes(MedicalImage(image.array, np.eye(4)), "RA?")[0].array is image.array
