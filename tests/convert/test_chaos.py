"""lmisa convert chaos: tiny DICOM series (SimpleITK) + PNG masks (Pillow) in the CHAOS layout.

Every DICOM slice's pixels encode its InstanceNumber, and every PNG carries a mask that is distinctive
for that instance and asymmetric in rows/cols, on non-square 12x16 slices: the tests prove that each PNG
lands on the slice of its paired DICOM file, not transposed or flipped, whatever the file name order,
the InstanceNumber order and the position order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from lmisa.cli import app
from lmisa.convert import convert_chaos
from lmisa.io import read_image, read_label

sitk = pytest.importorskip("SimpleITK")

ROWS, COLS = 12, 16
SPACING = (0.75, 0.7, 3.0)  # (sx, sy, sz)
MR_GREYS = {1: 63, 2: 126, 3: 189, 4: 252}


def pixels(instance: int) -> np.ndarray:
    """DICOM pixel array of the slice with this InstanceNumber: value // 100 is the instance."""
    return (instance * 100 + np.arange(COLS)[None, :] + 0 * np.arange(ROWS)[:, None]).astype(np.int16)


def mask_labels(instance: int, n_labels: int) -> np.ndarray:
    """Target labels (rows, cols) for that instance: liver down column 0, last label along row 0."""
    m = np.zeros((ROWS, COLS), np.uint8)
    m[: instance + 1, 0] = 1
    m[0, 2 : 3 + instance] = n_labels
    if n_labels == 4:
        m[ROWS - 1, COLS - 1] = 2
        m[ROWS - 2, COLS - 1 - instance] = 3
    return m


def write_png(path: Path, labels: np.ndarray, mr: bool = True, grey_override: int | None = None) -> None:
    grey = np.zeros(labels.shape, np.uint8)
    for lab in np.unique(labels[labels > 0]):
        grey[labels == lab] = MR_GREYS[int(lab)] if mr else 255
    if grey_override is not None:
        grey[ROWS // 2, COLS // 2] = grey_override
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grey, mode="L").save(path)


def write_series(folder: Path, slices: list[tuple[str, int, int]], series_uid: str, modality: str = "MR") -> None:
    """``slices``: (file name, InstanceNumber, position index along +z). Files written in shuffled order."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    order = np.random.default_rng(len(slices)).permutation(len(slices))
    for i in order:
        name, instance, z = slices[i]
        img = sitk.GetImageFromArray(pixels(instance))
        img.SetSpacing(SPACING[:2])
        ipp = (-5.0, 7.0, 100.0 + z * SPACING[2])
        for tag, value in {
            "0020|0032": "\\".join(f"{v:g}" for v in ipp),
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0020|0013": str(instance),
            "0008|0060": modality,
            "0020|000e": series_uid,
            "0020|000d": series_uid + ".0",
            "0018|0050": str(SPACING[2]),
        }.items():
            img.SetMetaData(tag, value)
        writer.SetFileName(str(folder / name))
        writer.Execute(img)


def check_case(dst: Path, case: str, n_slices: int, n_labels: int) -> list[int]:
    """Assert every label slice is the mask of the instance its image slice came from; return instances."""
    img = read_image(dst / "imagesTr" / f"{case}_0000.nii.gz", dtype=None)
    lab = read_label(dst / "labelsTr" / f"{case}.nii.gz")
    assert img.array.shape == lab.array.shape == (n_slices, ROWS, COLS)
    np.testing.assert_allclose(img.affine, lab.affine)
    assert img.spacing == pytest.approx((SPACING[2], SPACING[1], SPACING[0]))
    np.testing.assert_allclose(img.affine[:3, 3], [5.0, -7.0, 100.0])  # LPS -> RAS origin, lowest slice first
    instances = []
    for k in range(n_slices):
        inst = int(img.array[k, 0, 0]) // 100
        np.testing.assert_array_equal(img.array[k], pixels(inst))
        np.testing.assert_array_equal(lab.array[k], mask_labels(inst, n_labels), err_msg=f"slice {k}")
        instances.append(inst)
    return instances


def make_t2spir(patient: Path, n: int = 4, drop_png: bool = False, bad_grey: int | None = None) -> None:
    """IMG-0004-000NN.dcm with NN = InstanceNumber; instance 1 is the top slice (positions reversed)."""
    slices = [(f"IMG-0004-{i:05d}.dcm", i, n - i) for i in range(1, n + 1)]
    write_series(patient / "T2SPIR" / "DICOM_anon", slices, f"1.2.826.0.1.{abs(hash(patient.name)) % 10**6}.2")
    for i in range(1, n + 1):
        if drop_png and i == 2:
            continue
        write_png(
            patient / "T2SPIR" / "Ground" / f"IMG-0004-{i:05d}.png",
            mask_labels(i, 4),
            grey_override=bad_grey if i == 3 else None,
        )


def test_t2spir_pairs_by_name_across_reversed_positions(tmp_path: Path) -> None:
    src, dst = tmp_path / "CHAOS", tmp_path / "out"
    make_t2spir(src / "MR" / "1")
    make_t2spir(src / "MR" / "10", n=5)
    (src / "MR" / "3" / "T2SPIR" / "DICOM_anon").mkdir(parents=True)  # no Ground: unlabelled
    report = convert_chaos(src, dst, modality="t2spir")
    assert report.converted == ["chaos_1", "chaos_10"] and not report.failed
    assert list(report.skipped) == ["chaos_3"]
    assert check_case(dst, "chaos_1", 4, 4) == [4, 3, 2, 1]  # lowest z first = highest instance
    assert check_case(dst, "chaos_10", 5, 4) == [5, 4, 3, 2, 1]
    meta = json.loads((dst / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "liver": 1, "right_kidney": 2, "left_kidney": 3, "spleen": 4}
    assert meta["numTraining"] == 2 and meta["channel_names"] == {"0": "MR"}


def _ct_patient(patient: Path, n: int, reversed_masks: bool, seed: int) -> None:
    """CT: shuffled meaningless DICOM names; liver_GT_XXX.png follows InstanceNumber order."""
    rng = np.random.default_rng(seed)
    names = [f"i{v:04d},0000b.dcm" for v in rng.permutation(np.arange(10, 10 + n) * 7 % 97)]
    slices = []
    for i in range(1, n + 1):
        z = n - i if reversed_masks else i - 1
        slices.append((names[i - 1], i, z))
        write_png(patient / "Ground" / f"liver_GT_{i - 1:03d}.png", mask_labels(i, 1), mr=False)
    write_series(patient / "DICOM_anon", slices, f"1.2.826.0.2.{seed}", modality="CT")


def test_names_win_over_instance_order_when_stems_match(tmp_path: Path) -> None:
    """PNG stems equal to DICOM stems pair by name even when the names do not follow InstanceNumber."""
    patient = tmp_path / "CHAOS" / "MR" / "4"
    perm = [3, 1, 4, 2]  # file IMG-...-0000{perm[i-1]} holds instance i
    slices = [(f"IMG-0004-{perm[i - 1]:05d}.dcm", i, i - 1) for i in range(1, 5)]
    write_series(patient / "T2SPIR" / "DICOM_anon", slices, "1.2.826.0.4.1")
    for i in range(1, 5):
        write_png(patient / "T2SPIR" / "Ground" / f"IMG-0004-{perm[i - 1]:05d}.png", mask_labels(i, 4))
    report = convert_chaos(tmp_path / "CHAOS", tmp_path / "out", modality="t2spir")
    assert report.converted == ["chaos_4"], report.failed
    assert check_case(tmp_path / "out", "chaos_4", 4, 4) == [1, 2, 3, 4]


def test_ct_pairs_by_instance_number_whatever_the_position_order(tmp_path: Path) -> None:
    src, dst = tmp_path / "CHAOS", tmp_path / "out"
    _ct_patient(src / "CT" / "2", 4, reversed_masks=True, seed=2)
    _ct_patient(src / "CT" / "6", 5, reversed_masks=False, seed=6)
    report = convert_chaos(src, dst, modality="ct")
    assert report.converted == ["chaos_2", "chaos_6"], report.failed
    assert report.labels == {"background": 0, "liver": 1}
    assert check_case(dst, "chaos_2", 4, 1) == [4, 3, 2, 1]
    assert check_case(dst, "chaos_6", 5, 1) == [1, 2, 3, 4, 5]
    assert json.loads((dst / "dataset.json").read_text())["channel_names"] == {"0": "CT"}


def test_t1dual_in_and_out_phase_share_ground(tmp_path: Path) -> None:
    """Out-phase odd, in-phase even instance numbers (as in CHAOS); Ground named after the in-phase files."""
    patient = tmp_path / "CHAOS" / "MR" / "5"
    n = 3
    inphase = [(f"IMG-0004-{2 * j:05d}.dcm", 2 * j, n - j) for j in range(1, n + 1)]
    outphase = [(f"IMG-0004-{2 * j - 1:05d}.dcm", 2 * j - 1, n - j) for j in range(1, n + 1)]
    write_series(patient / "T1DUAL" / "DICOM_anon" / "InPhase", inphase, "1.2.826.0.3.1")
    write_series(patient / "T1DUAL" / "DICOM_anon" / "OutPhase", outphase, "1.2.826.0.3.2")
    for j in range(1, n + 1):  # the mask of in-phase instance 2j
        write_png(patient / "T1DUAL" / "Ground" / f"IMG-0004-{2 * j:05d}.png", mask_labels(2 * j, 4))
    r_in = convert_chaos(tmp_path / "CHAOS", tmp_path / "in", modality="t1in")
    r_out = convert_chaos(tmp_path / "CHAOS", tmp_path / "out", modality="t1out")
    assert r_in.converted == r_out.converted == ["chaos_5"]
    assert check_case(tmp_path / "in", "chaos_5", n, 4) == [6, 4, 2]
    lab_in = read_label(tmp_path / "in" / "labelsTr" / "chaos_5.nii.gz").array
    lab_out = read_label(tmp_path / "out" / "labelsTr" / "chaos_5.nii.gz").array
    np.testing.assert_array_equal(lab_out, lab_in)  # paired by instance order, same anatomy per slice


def test_malformed_cases_fail_alone_with_nothing_written(tmp_path: Path) -> None:
    src, dst = tmp_path / "CHAOS", tmp_path / "out"
    make_t2spir(src / "MR" / "1")
    make_t2spir(src / "MR" / "2", drop_png=True)
    make_t2spir(src / "MR" / "8", bad_grey=100)
    report = convert_chaos(src, dst, modality="t2spir")
    assert report.converted == ["chaos_1"]
    assert report.failed["chaos_2"].startswith("chaos_2: ") and "mismatched slice count" in report.failed["chaos_2"]
    assert "3 PNG mask(s) for 4 DICOM slice(s)" in report.failed["chaos_2"]
    msg = report.failed["chaos_8"]
    assert msg.startswith("chaos_8: unknown grey value 100 in ") and msg.endswith("IMG-0004-00003.png")
    assert "\n" not in msg
    files = sorted(p.name for sub in ("imagesTr", "labelsTr") for p in (dst / sub).iterdir())
    assert files == ["chaos_1.nii.gz", "chaos_1_0000.nii.gz"]
    assert not [p for p in dst.iterdir() if p.name.startswith(".")]
    assert json.loads((dst / "dataset.json").read_text())["numTraining"] == 1


def test_png_size_must_match_dicom(tmp_path: Path) -> None:
    src, dst = tmp_path / "CHAOS", tmp_path / "out"
    make_t2spir(src / "MR" / "1")
    png = src / "MR" / "1" / "T2SPIR" / "Ground" / "IMG-0004-00002.png"
    Image.fromarray(np.zeros((COLS, ROWS), np.uint8), mode="L").save(png)  # transposed size
    report = convert_chaos(src, dst, modality="t2spir")
    assert not report.converted and "IMG-0004-00002.png: size 16x12" in report.failed["chaos_1"]
    assert not (dst / "dataset.json").exists()


def test_cli(tmp_path: Path) -> None:
    src, dst = tmp_path / "CHAOS", tmp_path / "out"
    make_t2spir(src / "MR" / "1")
    make_t2spir(src / "MR" / "2", drop_png=True)
    runner = CliRunner()
    res = runner.invoke(app, ["convert", "chaos", str(src), str(dst), "--modality", "t2spir"])
    assert res.exit_code == 1
    assert "Converted 1 case(s)" in res.output and "chaos_2: " in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["convert", "chaos", str(src), str(tmp_path / "ct"), "--modality", "ct"])
    assert res.exit_code == 1 and "no CHAOS CT folder" in res.output
