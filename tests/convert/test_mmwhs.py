"""lmisa convert mmwhs: tiny MM-WHS 2017 pairs with the raw label codes."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from typer.testing import CliRunner

from lmisa.cli import app
from lmisa.convert import convert_mmwhs
from lmisa.io import read_image, read_label

AFFINE = np.array([[-0.5, 0.0, 0.0, 10.0], [0.0, -0.6, 0.0, 20.0], [0.0, 0.0, 1.25, -30.0], [0.0, 0.0, 0.0, 1.0]])
CODES = (0, 205, 420, 500, 550, 600, 820, 850)


def _codes_volume(seed: int) -> np.ndarray:
    """File array (16, 16, 4): every code present, in a case-specific arrangement."""
    rng = np.random.default_rng(seed)
    return rng.choice(np.array(CODES), size=(16, 16, 4)).astype(np.float32)  # MM-WHS labels are often float


def make_mmwhs(root: Path, modality: str = "ct", numbers=(1001, 1002)) -> dict[str, np.ndarray]:
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for n in numbers:
        img = np.random.default_rng(n).normal(size=(16, 16, 4)).astype(np.float32)
        lab = _codes_volume(n)
        nib.save(nib.Nifti1Image(img, AFFINE), str(root / f"{modality}_train_{n}_image.nii.gz"))
        nib.save(nib.Nifti1Image(lab, AFFINE), str(root / f"{modality}_train_{n}_label.nii.gz"))
        out[f"{modality}_{n}"] = lab
    return out


def test_default_four_structures(tmp_path: Path) -> None:
    src, dst = tmp_path / "mmwhs", tmp_path / "out"
    labs = make_mmwhs(src, "ct")
    make_mmwhs(src, "mr", numbers=(1001,))  # other modality: ignored
    report = convert_mmwhs(src, dst, modality="ct")
    assert report.converted == ["ct_1001", "ct_1002"] and not report.failed
    meta = json.loads((dst / "dataset.json").read_text())
    assert meta["labels"] == {
        "background": 0, "myocardium": 1, "left_atrium": 2, "left_ventricle": 3, "ascending_aorta": 4
    }
    assert meta["numTraining"] == 2 and meta["channel_names"] == {"0": "CT"}
    expected_map = {0: 0, 205: 1, 420: 2, 500: 3, 550: 0, 600: 0, 820: 4, 850: 0}
    for name, raw in labs.items():
        lab = read_label(dst / "labelsTr" / f"{name}.nii.gz")
        expected = np.vectorize(expected_map.get)(raw.astype(int)).astype(np.uint8)
        np.testing.assert_array_equal(lab.array, expected.T)
        np.testing.assert_allclose(lab.affine, AFFINE)
        img = read_image(dst / "imagesTr" / f"{name}_0000.nii.gz")
        np.testing.assert_allclose(img.affine, AFFINE)
    assert not (dst / "imagesTr" / "mr_1001_0000.nii.gz").exists()


def test_all_structures_and_subfolder_layout(tmp_path: Path) -> None:
    src, dst = tmp_path / "mmwhs", tmp_path / "out"
    labs = make_mmwhs(src / "mr_train", "mr", numbers=(1003,))
    report = convert_mmwhs(src, dst, modality="mr", all_structures=True)
    assert report.converted == ["mr_1003"]
    assert list(report.labels.items()) == [
        ("background", 0), ("myocardium", 1), ("left_atrium", 2), ("left_ventricle", 3), ("right_atrium", 4),
        ("right_ventricle", 5), ("ascending_aorta", 6), ("pulmonary_artery", 7),
    ]
    assert json.loads((dst / "dataset.json").read_text())["channel_names"] == {"0": "MR"}
    lab = read_label(dst / "labelsTr" / "mr_1003.nii.gz")
    expected = np.searchsorted(np.array(CODES), labs["mr_1003"].astype(int)).astype(np.uint8)
    np.testing.assert_array_equal(lab.array, expected.T)


def test_unknown_code_and_missing_label_fail_alone(tmp_path: Path) -> None:
    src, dst = tmp_path / "mmwhs", tmp_path / "out"
    make_mmwhs(src, "ct", numbers=(1001, 1002, 1003))
    bad = _codes_volume(1002)
    bad[3, 3, 1] = 421
    nib.save(nib.Nifti1Image(bad, AFFINE), str(src / "ct_train_1002_label.nii.gz"))
    (src / "ct_train_1003_label.nii.gz").unlink()
    report = convert_mmwhs(src, dst, modality="ct")
    assert report.converted == ["ct_1001"]
    assert report.failed["ct_1002"].startswith("ct_1002: unknown label code 421 in ")
    assert "ct_train_1002_label.nii.gz" in report.failed["ct_1002"]
    assert "ct_train_1003_label.nii.gz" in report.failed["ct_1003"]
    names = sorted(p.name for p in (dst / "imagesTr").iterdir()) + sorted(p.name for p in (dst / "labelsTr").iterdir())
    assert names == ["ct_1001_0000.nii.gz", "ct_1001.nii.gz"]
    assert json.loads((dst / "dataset.json").read_text())["numTraining"] == 1


def test_geometry_mismatch_is_an_error(tmp_path: Path) -> None:
    src, dst = tmp_path / "mmwhs", tmp_path / "out"
    make_mmwhs(src, "ct", numbers=(1001,))
    other = AFFINE.copy()
    other[0, 3] += 5.0
    nib.save(nib.Nifti1Image(_codes_volume(1001), other), str(src / "ct_train_1001_label.nii.gz"))
    report = convert_mmwhs(src, dst, modality="ct")
    assert not report.converted and "affine differs" in report.failed["ct_1001"]
    assert not (dst / "dataset.json").exists()


def test_cli_requires_modality_and_reports_failures(tmp_path: Path) -> None:
    src, dst = tmp_path / "mmwhs", tmp_path / "out"
    make_mmwhs(src, "ct", numbers=(1001, 1002))
    bad = _codes_volume(1002)
    bad[0, 0, 0] = 7
    nib.save(nib.Nifti1Image(bad, AFFINE), str(src / "ct_train_1002_label.nii.gz"))
    runner = CliRunner()
    res = runner.invoke(app, ["convert", "mmwhs", str(src), str(dst)])
    assert res.exit_code != 0 and "--modality" in res.output
    res = runner.invoke(app, ["convert", "mmwhs", str(src), str(dst), "--modality", "ct", "--all-structures"])
    assert res.exit_code == 1
    assert "Converted 1 case(s)" in res.output and "ct_1002: unknown label code 7" in res.output
    assert json.loads((dst / "dataset.json").read_text())["labels"]["pulmonary_artery"] == 7
