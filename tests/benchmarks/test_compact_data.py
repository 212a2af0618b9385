"""Moving the benchmark to a lent machine: test sets round-trip losslessly, training sets compactly."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from conftest import load_benchmark
from lmisa.io import read_image, read_label


@pytest.fixture(scope="module")
def compact() -> ModuleType:
    return load_benchmark("compact_data")


def test_test_sets_round_trip_losslessly(compact, nnunet_factory, tmp_path: Path) -> None:
    src = nnunet_factory("MR_test", n_cases=2)
    compact.pack_test(tmp_path / "packed", [src])
    compact.unpack_data(tmp_path / "packed", tmp_path / "back")
    for image_path in sorted((src / "imagesTr").iterdir()):
        case = image_path.name[: -len("_0000.nii.gz")]
        a, b = read_image(image_path, dtype=None), read_image(tmp_path / "back" / "MR_test" / "imagesTr" / image_path.name, dtype=None)
        assert a.array.dtype == b.array.dtype and np.array_equal(a.array, b.array)
        np.testing.assert_allclose(a.affine, b.affine, atol=1e-6)
        la = read_label(src / "labelsTr" / f"{case}.nii.gz").array
        assert np.array_equal(la, read_label(tmp_path / "back" / "MR_test" / "labelsTr" / f"{case}.nii.gz").array)


def test_training_sets_are_resampled_to_the_spacing(compact, nnunet_factory, tmp_path: Path) -> None:
    src = nnunet_factory("CT_train", n_cases=1)
    compact.pack_data(tmp_path / "packed", 4.0, [src])
    compact.unpack_data(tmp_path / "packed", tmp_path / "back")
    image = read_image(next((tmp_path / "back" / "CT_train" / "imagesTr").iterdir()), dtype=None)
    assert image.array.dtype == np.uint8
    np.testing.assert_allclose(image.spacing[-2:], (4.0, 4.0), rtol=1e-5)
