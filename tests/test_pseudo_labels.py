"""Pseudo-label folders for self-training: every map checked against its target image, the target's own labels refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from lmisa.datasets import Domain
from lmisa.errors import LmisaError
from lmisa.pseudo_labels import pseudo_label_jobs, pseudo_label_tag


@pytest.fixture
def target_and_maps(tmp_path: Path, nnunet_factory) -> tuple[Domain, Path]:
    """A target data set and a folder of label maps for its cases (its labels copied: as a model would predict)."""
    root = nnunet_factory("tgt", n_cases=2, shape=(4, 16, 16), labels={"background": 0, "organ": 1})
    maps = tmp_path / "pseudo"
    shutil.copytree(root / "labelsTr", maps)
    return Domain.open(root), maps


def _rewrite(path: Path, change) -> None:
    img = nib.load(path)
    arr = change(np.asarray(img.dataobj).copy())
    nib.save(nib.Nifti1Image(arr, img.affine), path)


def test_jobs_pair_each_case_with_its_map(target_and_maps) -> None:
    target, maps = target_and_maps
    jobs = pseudo_label_jobs(maps, target, ["case_000", "case_001"])
    assert [(n, lab.name) for n, _, lab in jobs] == [("case_000", "case_000.nii.gz"), ("case_001", "case_001.nii.gz")]
    assert all(img.name == f"{n}_0000.nii.gz" for n, img, _ in jobs)


def test_the_targets_own_labels_are_refused(target_and_maps) -> None:
    target, _ = target_and_maps
    with pytest.raises(LmisaError, match="own label folder"):
        pseudo_label_jobs(target.root / "labelsTr", target, ["case_000"])


def test_a_missing_folder_or_map_is_named(target_and_maps, tmp_path: Path) -> None:
    target, maps = target_and_maps
    with pytest.raises(LmisaError, match="folder not found"):
        pseudo_label_jobs(tmp_path / "nowhere", target, ["case_000"])
    (maps / "case_001.nii.gz").unlink()
    with pytest.raises(LmisaError, match=r"case_001\.nii\.gz: no pseudo-label map for target case case_001"):
        pseudo_label_jobs(maps, target, ["case_000", "case_001"])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: np.where(a > 0, 7, 0).astype(np.uint8), r"label values \[7\] not declared"),
        (lambda a: a[:, :, :2], "shape"),
    ],
)
def test_a_bad_map_is_one_line_naming_it(target_and_maps, change, message) -> None:
    target, maps = target_and_maps
    _rewrite(maps / "case_000.nii.gz", change)
    with pytest.raises(LmisaError, match=message) as err:
        pseudo_label_jobs(maps, target, ["case_000", "case_001"])
    assert "1 problem(s)" in str(err.value) and "case_000.nii.gz" in str(err.value)


def test_the_tag_changes_when_a_map_is_made_again(target_and_maps) -> None:
    target, maps = target_and_maps
    jobs = pseudo_label_jobs(maps, target, ["case_000", "case_001"])
    before = pseudo_label_tag(jobs)
    assert pseudo_label_tag(jobs) == before
    _rewrite(maps / "case_000.nii.gz", lambda a: np.zeros_like(a))
    assert pseudo_label_tag(jobs) != before
