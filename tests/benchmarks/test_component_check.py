"""benchmarks/component_check.py: the choice by position (centroids in world mm, source offsets, the component kept)
and, on a tiny real run, both choices scored on the source validation cases."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from conftest import load_benchmark, train_tiny_run


@pytest.fixture(scope="module")
def component_check() -> ModuleType:
    return load_benchmark("component_check")


def test_both_choices_are_scored_with_and_without_tta(component_check, tmp_path: Path) -> None:
    run = train_tiny_run(tmp_path)
    component_check.main([str(run), "--out", str(tmp_path / "c.json")])
    (row,) = json.loads((tmp_path / "c.json").read_text())
    assert set(row["offsets_mm"]) <= {"1", "2", "3", "4"} and row["offsets_mm"]
    for key in ("plain", "tta"):
        for choice in component_check.CHOICES:
            assert 0 <= row[f"dice_{key}_{choice}_organ_slices"] <= 100
    with pytest.raises(SystemExit, match="not a finished run"):
        component_check.main([str(tmp_path), "--out", str(tmp_path / "x.json")])


def test_centroid_follows_the_affine_from_zyx_arrays(component_check) -> None:
    mask = np.zeros((4, 5, 6), bool)
    mask[2, 1, 3] = True  # z=2, y=1, x=3
    affine = np.diag([-2.0, 1.0, 3.0, 1.0])
    affine[:3, 3] = [10.0, 20.0, 30.0]
    assert component_check.centroid_mm(mask, affine).tolist() == [4.0, 21.0, 36.0]


def test_offsets_are_means_over_the_maps_that_hold_each_organ(component_check) -> None:
    a = np.zeros((1, 1, 10), np.uint8)
    a[0, 0, 0], a[0, 0, 4] = 1, 2  # centre 2: organ 1 at -2, organ 2 at +2
    b = np.zeros((1, 1, 10), np.uint8)
    b[0, 0, 2] = 1  # alone: at its own centre
    offsets = component_check.organ_offsets_mm([(a, np.eye(4)), (b, np.eye(4)), (np.zeros((1, 1, 3)), np.eye(4))], [0, 1, 2, 3])
    assert offsets == {1: [-1.0, 0.0, 0.0], 2: [2.0, 0.0, 0.0]}


def test_the_component_nearest_the_expected_place_is_kept_not_the_largest(component_check) -> None:
    lab = np.zeros((20, 3, 3), np.uint8)
    lab[0:6] = 4  # large blob at the top (z 0-5)
    lab[10:14] = 4  # the organ, smaller (z 10-13)
    lab[15:20] = 1  # another organ below
    affine = np.eye(4)  # z is the third world axis
    centre_z = (6 * 2.5 + 4 * 11.5 + 5 * 17) / 15
    kept = component_check.keep_component_nearest(lab, affine, {4: [0.0, 0.0, 11.5 - centre_z]})
    assert (kept[10:14] == 4).all() and (kept[0:6] == 0).all() and (kept[15:] == 1).all()
    assert (component_check.keep_component_nearest(lab, affine, {})[0:6] == 4).all()  # no offset: the largest


def test_small_components_are_never_chosen_and_always_removed(component_check) -> None:
    lab = np.zeros((20, 2, 2), np.uint8)
    lab[0:10] = 1
    lab[15, 0, 0] = 1  # a speck right where the organ is expected: below min_share
    kept = component_check.keep_component_nearest(lab, np.eye(4), {1: [0.0, 0.0, 100.0]}, min_share=0.1)
    assert (kept[0:10] == 1).all() and kept[15, 0, 0] == 0


def test_input_is_left_alone_and_bad_share_refused(component_check) -> None:
    lab = np.zeros((3, 2, 2), np.uint8)
    lab[0], lab[2] = 1, 1
    before = lab.copy()
    component_check.keep_component_nearest(lab, np.eye(4), {1: [0.0, 0.0, 0.0]})
    assert (lab == before).all()
    with pytest.raises(ValueError, match="min_share"):
        component_check.keep_component_nearest(lab, np.eye(4), {}, min_share=0)
