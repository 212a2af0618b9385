"""lmisa convert kits19: tiny KiTS19-layout cases written in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from typer.testing import CliRunner

from lmisa.cli import app
from lmisa.convert import convert_kits19
from lmisa.io import read_image, read_label

# KiTS19-style affine: voxel axis i is the slice axis (5 mm), j and k are in-plane.
KITS_AFFINE = np.array([[0.0, 0.0, -0.8, 0.0], [0.0, -0.8, 0.0, 0.0], [-5.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


def _write(path: Path, data: np.ndarray, affine: np.ndarray = KITS_AFFINE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))


def make_kits(root: Path, n: int = 2, unlabelled: tuple[int, ...] = (), seed: int = 0) -> dict[str, np.ndarray]:
    """Cases in the real layout; file arrays (slice, H, W) = (4, 16, 12). Returns the file segmentations."""
    rng = np.random.default_rng(seed)
    segs = {}
    for i in range(n):
        case = root / f"case_{i:05d}"
        img = rng.integers(-1000, 1000, (4, 16, 12)).astype(np.int16)
        _write(case / "imaging.nii.gz", img)
        if i in unlabelled:
            continue
        seg = np.zeros((4, 16, 12), np.uint8)
        seg[1:3, 4:10, 3:8] = 1
        seg[2, 5:7, 4:6] = 2
        seg[i % 4, 0, 0] = 2  # a case-specific voxel
        _write(case / "segmentation.nii.gz", seg)
        segs[case.name] = seg
    return segs


def test_merges_tumour_keeps_geometry_and_skips_unlabelled(tmp_path: Path) -> None:
    src, dst = tmp_path / "kits19", tmp_path / "out"
    segs = make_kits(src, n=3, unlabelled=(1,))
    report = convert_kits19(src, dst)
    assert report.converted == ["case_00000", "case_00002"]
    assert list(report.skipped) == ["case_00001"] and "segmentation" in report.skipped["case_00001"]
    assert not report.failed and report.ok
    meta = json.loads((dst / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "kidney": 1}
    assert meta["numTraining"] == 2 and meta["file_ending"] == ".nii.gz" and meta["channel_names"] == {"0": "CT"}
    for name, seg in segs.items():
        src_img = read_image(src / name / "imaging.nii.gz", dtype=None)
        img = read_image(dst / "imagesTr" / f"{name}_0000.nii.gz", dtype=None)
        lab = read_label(dst / "labelsTr" / f"{name}.nii.gz")
        np.testing.assert_array_equal(img.array, src_img.array)
        assert img.array.dtype == np.int16
        np.testing.assert_allclose(img.affine, KITS_AFFINE)  # not reoriented
        np.testing.assert_allclose(lab.affine, KITS_AFFINE)
        np.testing.assert_array_equal(lab.array, (seg > 0).astype(np.uint8).T)  # lmisa arrays are the file's transpose
    assert not (dst / "imagesTr" / "case_00001_0000.nii.gz").exists()
    assert not [p for p in dst.iterdir() if p.name.startswith(".")]  # staging removed


def test_keep_tumour(tmp_path: Path) -> None:
    src, dst = tmp_path / "kits19", tmp_path / "out"
    segs = make_kits(src, n=1)
    report = convert_kits19(src, dst, keep_tumour=True)
    assert report.labels == {"background": 0, "kidney": 1, "tumour": 2}
    lab = read_label(dst / "labelsTr" / "case_00000.nii.gz")
    np.testing.assert_array_equal(lab.array, segs["case_00000"].T)


def test_bad_case_fails_alone_and_nothing_partial(tmp_path: Path) -> None:
    src, dst = tmp_path / "kits19", tmp_path / "out"
    make_kits(src, n=3)
    bad = np.zeros((4, 16, 12), np.uint8)
    bad[0, 0, 0] = 3
    (src / "case_00001" / "segmentation.nii.gz").unlink()
    _write(src / "case_00001" / "segmentation.nii.gz", bad)
    (src / "case_00002" / "imaging.nii.gz").unlink()
    report = convert_kits19(src, dst)
    assert report.converted == ["case_00000"]
    assert "case_00001" in report.failed["case_00001"] and "unknown label value 3" in report.failed["case_00001"]
    assert "imaging.nii.gz" in report.failed["case_00002"] and "not found" in report.failed["case_00002"]
    assert sorted(p.name for p in (dst / "imagesTr").iterdir()) == ["case_00000_0000.nii.gz"]
    assert sorted(p.name for p in (dst / "labelsTr").iterdir()) == ["case_00000.nii.gz"]
    assert json.loads((dst / "dataset.json").read_text())["numTraining"] == 1


def test_cli_summary_refuses_overwrite_and_exit_codes(tmp_path: Path) -> None:
    src, dst = tmp_path / "kits19", tmp_path / "out"
    make_kits(src, n=2, unlabelled=(1,))
    runner = CliRunner()
    res = runner.invoke(app, ["convert", "kits19", str(src), str(dst)])
    assert res.exit_code == 0, res.output
    assert "Converted 1 case(s)" in res.output and "case_00001" in res.output and "Skipped 1" in res.output
    before = (dst / "labelsTr" / "case_00000.nii.gz").stat().st_mtime_ns
    res = runner.invoke(app, ["convert", "kits19", str(src), str(dst)])
    assert res.exit_code == 1 and "exists" in res.output and "Traceback" not in res.output
    assert (dst / "labelsTr" / "case_00000.nii.gz").stat().st_mtime_ns == before
    res = runner.invoke(app, ["convert", "kits19", str(src), str(dst), "--overwrite", "--keep-tumour"])
    assert res.exit_code == 0, res.output
    assert json.loads((dst / "dataset.json").read_text())["labels"]["tumour"] == 2
    # a failing case -> exit 1, listed
    (src / "case_00000" / "imaging.nii.gz").write_bytes(b"not a nifti")
    res = runner.invoke(app, ["convert", "kits19", str(src), str(tmp_path / "out2")])
    assert res.exit_code == 1
    assert "case_00000" in res.output and "Traceback" not in res.output


def test_missing_source_is_one_line_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["convert", "kits19", str(tmp_path / "nope"), str(tmp_path / "out")])
    assert res.exit_code == 1 and "not found" in res.output
    assert not (tmp_path / "out").exists()


def test_foreign_files_refuse_and_overwrite_lists_stale(tmp_path: Path) -> None:
    src, dst = tmp_path / "kits19", tmp_path / "out"
    make_kits(src, n=2)
    (dst / "labelsTr").mkdir(parents=True)
    (dst / "labelsTr" / "other_000.nii.gz").write_bytes(b"x")
    try:
        convert_kits19(src, dst)
    except FileExistsError as exc:
        assert "other_000.nii.gz" in str(exc)
    else:
        raise AssertionError("expected FileExistsError")
    assert not (dst / "imagesTr").exists() and not (dst / "dataset.json").exists()
    report = convert_kits19(src, dst, overwrite=True)
    assert report.converted == ["case_00000", "case_00001"]
    assert report.stale == ["labelsTr/other_000.nii.gz"]
    assert json.loads((dst / "dataset.json").read_text())["numTraining"] == 2
