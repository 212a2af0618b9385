"""Pseudo-label folders for self-training: every map checked against its target image and the run's labels, the
target's own labels refused (as a folder, a link or a copy), a changed folder refused on resume."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from lmisa.datasets import Domain
from lmisa.errors import LmisaError
from lmisa.pseudo_labels import check_same_pseudo_labels, pseudo_label_jobs, pseudo_label_tag


@pytest.fixture
def target_and_maps(tmp_path: Path, nnunet_factory) -> tuple[Domain, Path]:
    """A target data set and a folder of label maps for its cases (its labels written again as int16: a model's
    prediction, not a copy of the label files)."""
    root = nnunet_factory("tgt", n_cases=2, shape=(4, 16, 16), labels={"background": 0, "organ": 1})
    maps = tmp_path / "pseudo"
    maps.mkdir()
    for label in (root / "labelsTr").iterdir():
        _rewrite_as_int16(label, maps / label.name)
    return Domain.open(root), maps


def _rewrite_as_int16(label: Path, out: Path) -> None:
    img = nib.load(label)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj).astype(np.int16), img.affine), out)


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
    assert "\n" not in str(err.value) and "case_000.nii.gz" in str(err.value)


def test_the_tag_changes_when_a_map_is_made_again(target_and_maps) -> None:
    target, maps = target_and_maps
    jobs = pseudo_label_jobs(maps, target, ["case_000", "case_001"])
    before = pseudo_label_tag(jobs)
    assert pseudo_label_tag(jobs) == before
    _rewrite(maps / "case_000.nii.gz", lambda a: np.zeros_like(a))
    assert pseudo_label_tag(jobs) != before


def test_a_copy_or_a_link_of_the_targets_own_labels_is_refused(target_and_maps, tmp_path: Path) -> None:
    target, maps = target_and_maps
    own = target.root / "labelsTr"
    shutil.copyfile(own / "case_000.nii.gz", maps / "case_000.nii.gz")
    (maps / "case_001.nii.gz").unlink()
    (maps / "case_001.nii.gz").symlink_to(own / "case_000.nii.gz")  # a link to another case's label
    with pytest.raises(LmisaError, match="2 problem") as err:
        pseudo_label_jobs(maps, target, ["case_000", "case_001"])
    assert str(err.value).count("is one of the target's own label maps") == 2
    (maps / "case_001.nii.gz").unlink()
    raw = tmp_path / "raw.nii"
    raw.write_bytes(gzip.decompress((own / "case_001.nii.gz").read_bytes()))
    (maps / "case_001.nii.gz").write_bytes(gzip.compress(raw.read_bytes()))  # gzipped again: other bytes, same NIfTI
    (maps / "case_000.nii.gz").unlink()
    _rewrite_as_int16(own / "case_000.nii.gz", maps / "case_000.nii.gz")
    with pytest.raises(LmisaError, match="case_001.nii.gz: is one of the target's own label maps"):
        pseudo_label_jobs(maps, target, ["case_000", "case_001"])


def test_a_case_with_two_maps_or_none_in_the_target_is_named(target_and_maps) -> None:
    target, maps = target_and_maps
    with pytest.raises(LmisaError, match="no target training case case_009"):
        pseudo_label_jobs(maps, target, ["case_000", "case_009"])


def test_values_are_checked_against_the_runs_labels_not_the_targets_table(target_and_maps) -> None:
    target, maps = target_and_maps
    run_labels = {"background": 0, "organ": 1, "other": 2}
    _rewrite(maps / "case_000.nii.gz", lambda a: np.where(a > 0, 2, 0).astype(np.uint8))
    pseudo_label_jobs(maps, target, ["case_000", "case_001"], run_labels)  # 2 is the run's, not the target's
    with pytest.raises(LmisaError, match=r"label values \[2\] not declared"):
        pseudo_label_jobs(maps, target, ["case_000", "case_001"], {"background": 0, "organ": 1})


def test_maps_as_predict_writes_them_serve_a_target_stored_as_nii(tmp_path: Path, nnunet_factory) -> None:
    root = nnunet_factory("tgt", n_cases=1, shape=(4, 16, 16), labels={"background": 0, "organ": 1})
    for gz in [*root.glob("*/*.nii.gz")]:  # the same data set stored as .nii
        nib.save(nib.load(gz), gz.with_suffix(""))
        gz.unlink()
    meta = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**meta, "file_ending": ".nii"}))
    maps = tmp_path / "pseudo"
    maps.mkdir()
    img = nib.load(root / "labelsTr" / "case_000.nii")
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj).astype(np.int16), img.affine), maps / "case_000.nii.gz")
    [(_, _, label)] = pseudo_label_jobs(maps, Domain.open(root), ["case_000"])
    assert label.name == "case_000.nii.gz"
    nib.save(nib.load(label), maps / "case_000.nii")  # a stale map beside predict's: which one is meant?
    with pytest.raises(LmisaError, match=r"two maps for target case case_000 \(case_000.nii and case_000.nii.gz\)"):
        pseudo_label_jobs(maps, Domain.open(root), ["case_000"])


def test_a_resume_refuses_maps_changed_since_the_run_started(target_and_maps) -> None:
    target, maps = target_and_maps
    jobs = pseudo_label_jobs(maps, target, ["case_000", "case_001"])
    recorded = pseudo_label_tag(jobs)
    check_same_pseudo_labels(recorded, jobs, str(maps))
    check_same_pseudo_labels(None, jobs, str(maps))  # a run from before the fingerprint was recorded
    (maps / "case_001.nii.gz").touch()
    shutil.copyfile(maps / "case_000.nii.gz", maps / "copy")
    (maps / "copy").replace(maps / "case_000.nii.gz")  # copied back without its times: the same maps
    check_same_pseudo_labels(recorded, jobs, str(maps))
    _rewrite(maps / "case_000.nii.gz", lambda a: np.zeros_like(a))
    with pytest.raises(LmisaError, match="changed since the run started"):
        check_same_pseudo_labels(recorded, jobs, str(maps))
