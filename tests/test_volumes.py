"""Organ volumes in mL from the voxel size; ratios and score of predictions against other cases' labels."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from lmisa.cli import app
from lmisa.errors import LmisaError
from lmisa.evaluation import EvaluationError
from lmisa.volumes import compare_volumes, label_volumes_ml, outside_region_share

LABELS = {"background": 0, "liver": 1, "spleen": 2}


def _label_map(path: Path, liver: int, spleen: int, voxel_mm: tuple[float, float, float]) -> Path:
    a = np.zeros(1000, dtype=np.uint8)
    a[:liver] = 1
    a[liver : liver + spleen] = 2
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(a.reshape(10, 10, 10), np.diag([*voxel_mm, 1.0])), str(path))
    return path


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """References (a data set with dataset.json) and predictions on a coarser grid: the same liver in
    mL, a spleen a quarter of the reference size."""
    ref = tmp_path / "source"
    for i in range(3):
        _label_map(ref / "labelsTr" / f"r{i}.nii.gz", 100 + i, 40, (1.0, 1.0, 1.0))
    (ref / "dataset.json").write_text(json.dumps({"labels": LABELS}))
    for i in range(3):
        _label_map(tmp_path / "pred" / f"p{i}.nii.gz", 50 + i, 5, (2.0, 1.0, 1.0))
    return tmp_path / "pred", ref


def test_volumes_use_the_voxel_size(tmp_path: Path) -> None:
    path = _label_map(tmp_path / "a.nii.gz", liver=100, spleen=10, voxel_mm=(2.0, 2.0, 5.0))
    assert label_volumes_ml(path, LABELS) == pytest.approx({"liver": 2.0, "spleen": 0.2})


def test_ratios_and_score_show_an_erased_organ(folders) -> None:
    check = compare_volumes(*folders)
    assert check.organs["liver"]["ratio"] == pytest.approx(102 / 101)
    assert check.organs["spleen"]["ratio"] == pytest.approx(0.25)
    assert check.score == pytest.approx((math.log(102 / 101) + math.log(4)) / 2)
    assert check.implausible == ["spleen"] and check.n_predictions == check.n_references == 3


def _slices_with_organ(path: Path, slices: list[int], z: int, slice_mm: float) -> None:
    """A label map of ``z`` slices (the last NIfTI axis) ``slice_mm`` apart, 4 organ voxels on each of ``slices``."""
    a = np.zeros((2, 2, z), dtype=np.uint8)
    a[:, :, slices] = 1
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(a, np.diag([1.0, 1.0, slice_mm, 1.0])), str(path))


def test_outside_region_share_counts_organs_beyond_the_source_region(tmp_path: Path) -> None:
    # the source's longest organ region: slices 2-4 of 10 mm = 30 mm (another case 20 mm); margin 1.5 -> 45 mm
    _slices_with_organ(tmp_path / "source/labelsTr/a.nii.gz", [2, 3, 4], 8, 10.0)
    _slices_with_organ(tmp_path / "source/labelsTr/b.nii.gz", [1, 2], 8, 10.0)
    # at 5 mm a 45 mm window holds 9 slices: 10..18 (9 slices) stay, the 3 slices far away are outside
    _slices_with_organ(tmp_path / "pred/p.nii.gz", [0, 1, 2, *range(10, 19)], 30, 5.0)
    _slices_with_organ(tmp_path / "pred/q.nii.gz", [4, 5], 30, 5.0)  # all inside
    r = outside_region_share(tmp_path / "pred", tmp_path / "source", 1.5)
    assert r["region_mm"] == pytest.approx(30.0)
    assert r["share"] == pytest.approx(3 / 14) and r["per_case"] == {"p": pytest.approx(3 / 12), "q": 0.0}


def test_outside_region_share_needs_a_source_organ_and_a_margin(tmp_path: Path) -> None:
    _slices_with_organ(tmp_path / "source/labelsTr/a.nii.gz", [], 8, 10.0)
    _slices_with_organ(tmp_path / "pred/p.nii.gz", [1], 8, 10.0)
    with pytest.raises(EvaluationError, match="no label map holds an organ"):
        outside_region_share(tmp_path / "pred", tmp_path / "source", 1.1)
    with pytest.raises(ValueError, match="margin >= 1"):
        outside_region_share(tmp_path / "pred", tmp_path / "source", 0.5)


def test_labels_are_needed_and_a_broken_file_is_named(folders, tmp_path: Path) -> None:
    pred, ref = folders
    (ref / "dataset.json").unlink()
    with pytest.raises(LmisaError, match="no dataset.json"):
        compare_volumes(pred, ref)
    (pred / "p9.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(LmisaError, match="p9.nii.gz: unreadable"):
        compare_volumes(pred, ref, LABELS)


def test_cli_prints_the_table_and_never_overwrites(folders, tmp_path: Path) -> None:
    pred, ref = folders
    out = tmp_path / "volumes.json"
    result = CliRunner().invoke(app, ["volumes", "--pred", str(pred), "--ref", str(ref), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "spleen" in result.output and "outside 0.5-2.0" in result.output
    assert json.loads(out.read_text())["implausible"] == ["spleen"]
    again = CliRunner().invoke(app, ["volumes", "--pred", str(pred), "--ref", str(ref), "--out", str(out)])
    assert again.exit_code != 0 and "exists" in again.output
    folder = CliRunner().invoke(app, ["volumes", "--pred", str(pred), "--ref", str(ref), "--out", str(tmp_path),
                                      "--overwrite"])
    assert folder.exit_code == 1 and "is a folder" in folder.output and "Traceback" not in folder.output


def test_predicted_values_no_organ_has_are_named_not_counted(folders) -> None:
    pred, ref = folders
    path = pred / "p1.nii.gz"
    img = nib.load(str(path))
    a = np.asarray(img.dataobj).copy()
    a[a == 2] = 9  # a value the reference does not declare
    nib.save(nib.Nifti1Image(a, img.affine), str(path))
    check = compare_volumes(pred, ref)
    assert check.undeclared_by_case == {"p1": [9]} and check.to_dict()["undeclared_by_case"] == {"p1": [9]}
    printed = CliRunner().invoke(app, ["volumes", "--pred", str(pred), "--ref", str(ref)], env={"COLUMNS": "200"})
    assert printed.exit_code == 0 and "9 in 1 case(s) (p1)" in printed.output


@pytest.mark.parametrize("bad, message", [(0.4, "non-integer"), (math.nan, "NaN")])
def test_a_map_evaluate_would_refuse_is_refused(folders, bad: float, message: str) -> None:
    pred, ref = folders
    path = pred / "p1.nii.gz"
    img = nib.load(str(path))
    data = np.asarray(img.dataobj).astype(np.float32)
    data[0, 0, 0] = bad
    nib.save(nib.Nifti1Image(data, img.affine), str(path))
    with pytest.raises(LmisaError, match=f"p1.nii.gz: label map .*{message}"):
        compare_volumes(pred, ref)


def test_an_undeclared_value_in_a_reference_is_refused(folders) -> None:
    pred, ref = folders
    path = ref / "labelsTr" / "r0.nii.gz"
    img = nib.load(str(path))
    data = np.asarray(img.dataobj).copy()
    data[-1, -1, -1] = 9
    nib.save(nib.Nifti1Image(data, img.affine), str(path))
    with pytest.raises(LmisaError, match=r"r0.nii.gz: label values \[9\]"):
        compare_volumes(pred, ref)
