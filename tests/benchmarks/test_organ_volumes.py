"""The label-free organ-size check: volumes in mL from the voxel size, ratios and the score."""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import load_benchmark

LABELS = {"background": 0, "liver": 1, "spleen": 2}


@pytest.fixture(scope="module")
def organ_volumes():
    return load_benchmark("organ_volumes")


def _label_map(path: Path, liver: int, spleen: int, voxel_mm: tuple[float, float, float]) -> Path:
    a = np.zeros(1000, dtype=np.uint8)
    a[:liver] = 1
    a[liver : liver + spleen] = 2
    nib.save(nib.Nifti1Image(a.reshape(10, 10, 10), np.diag([*voxel_mm, 1.0])), str(path))
    return path


def test_volumes_use_the_voxel_size(organ_volumes, tmp_path: Path) -> None:
    path = _label_map(tmp_path / "a.nii.gz", liver=100, spleen=10, voxel_mm=(2.0, 2.0, 5.0))
    assert organ_volumes.label_volumes_ml(path, LABELS) == pytest.approx({"liver": 2.0, "spleen": 0.2})


def test_ratios_and_score_show_an_erased_organ(organ_volumes, tmp_path: Path) -> None:
    refs = [_label_map(tmp_path / f"r{i}.nii.gz", 100 + i, 40, (1.0, 1.0, 1.0)) for i in range(3)]
    # predictions on a coarser grid: same liver volume in mL, spleen a quarter of the reference
    preds = [_label_map(tmp_path / f"p{i}.nii.gz", 50 + i, 5, (2.0, 1.0, 1.0)) for i in range(3)]
    out = organ_volumes.volume_ratios(preds, refs, LABELS)
    assert out["organs"]["liver"]["ratio"] == pytest.approx(102 / 101)
    assert out["organs"]["spleen"]["ratio"] == pytest.approx(0.25)
    assert out["score"] == pytest.approx((math.log(102 / 101) + math.log(4)) / 2)
    assert out["cases"] == 3
