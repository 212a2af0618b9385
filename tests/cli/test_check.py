from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from lmisa.cli import app
from lmisa.io import MedicalImage, read_image, write_image

runner = CliRunner()


def _break_three_ways(root: Path) -> tuple[Path, Path, Path]:
    images, labels = root / "imagesTr", root / "labelsTr"
    (labels / "case_000.nii.gz").unlink()
    img = read_image(images / "case_001_0000.nii.gz")
    write_image(labels / "case_001.nii.gz", MedicalImage(np.zeros((5, 32, 32), np.uint8), img.affine), overwrite=True)
    lab = read_image(labels / "case_002.nii.gz", dtype=None)
    lab.array[0, 0, 0] = 6
    write_image(labels / "case_002.nii.gz", lab, overwrite=True)
    return images / "case_000_0000.nii.gz", labels / "case_001.nii.gz", labels / "case_002.nii.gz"


def test_check_reports_every_problem_and_exits_1(nnunet_factory) -> None:
    root = nnunet_factory(n_cases=4)
    missing, shape, values = _break_three_ways(root)
    result = runner.invoke(app, ["check", str(root)])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert any(line.startswith(f"{missing}: ") and "no label" in line for line in lines), result.output
    assert any(line.startswith(f"{shape}: ") and "shape" in line for line in lines), result.output
    assert any(line.startswith(f"{values}: ") and "[6]" in line for line in lines), result.output
    assert "3 problems" in lines[-1]
    assert "Traceback" not in result.output


def test_check_clean_dataset_exits_0(nnunet_factory) -> None:
    a = nnunet_factory("a", n_cases=2)
    b = nnunet_factory("b", n_cases=3, labels={"background": 0, "liver": 1, "spleen": 2})
    result = runner.invoke(app, ["check", str(a), str(b)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("ok: 2 cases, labels 0=background, 1=organ")
    assert lines[1].startswith("ok: 3 cases, labels 0=background, 1=liver, 2=spleen")


def test_check_missing_path_and_unlabelled_target(tmp_path: Path, nnunet_factory) -> None:
    result = runner.invoke(app, ["check", str(tmp_path / "nope")])
    assert result.exit_code == 1 and "nope: data set folder not found" in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    root = nnunet_factory(n_cases=2)
    for f in (root / "labelsTr").iterdir():
        f.unlink()
    assert runner.invoke(app, ["check", str(root)]).exit_code == 1
    result = runner.invoke(app, ["check", "--no-labels", str(root)])
    assert result.exit_code == 0 and result.output.startswith("ok: 2 cases"), result.output


def test_check_truncated_file_no_traceback(nnunet_factory) -> None:
    root = nnunet_factory(n_cases=2)
    f = root / "labelsTr" / "case_000.nii.gz"
    f.write_bytes(f.read_bytes()[:50])
    result = runner.invoke(app, ["check", str(root)])
    assert result.exit_code == 1 and str(f) in result.output and "Traceback" not in result.output


def test_check_names_scans_along_other_anatomical_axes_across_data_sets(nnunet_factory) -> None:
    a = nnunet_factory("a", n_cases=2)
    b = nnunet_factory("b", n_cases=2, seed=1)
    sagittal = np.array([[0, 0, 3.0, 0], [1.5, 0, 0, 0], [0, 1.5, 0, 0], [0, 0, 0, 1]])
    for path in (b / "imagesTr" / "case_001_0000.nii.gz", b / "labelsTr" / "case_001.nii.gz"):
        write_image(path, MedicalImage(read_image(path, dtype=None).array, sagittal), overwrite=True)
    assert runner.invoke(app, ["check", str(b)]).exit_code == 1  # within one data set too
    result = runner.invoke(app, ["check", str(a), str(b)])
    assert result.exit_code == 1
    assert f"{b / 'imagesTr' / 'case_001_0000.nii.gz'}: voxel axes ASR run along other anatomical axes than RAS" in result.output
