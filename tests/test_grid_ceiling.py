"""The grid ceiling: labels taken to a training grid and back, scored against themselves."""

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
from lmisa.grid_ceiling import Grid, grid_ceiling, organ_dice, round_trip
from lmisa.io import MedicalImage

LABELS = {"background": 0, "organ": 1}


def _disc_label(shape=(4, 64, 64), radius=10.0, spacing=(3.0, 1.0, 1.0), centre=(32.0, 32.0)) -> MedicalImage:
    z, y, x = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    lab = (((y - centre[0]) ** 2 + (x - centre[1]) ** 2) < radius**2).astype(np.uint8)
    lab[0] = 0  # one slice without the organ: organ slices differ from the whole volume
    return MedicalImage(lab, np.diag([spacing[2], spacing[1], spacing[0], 1.0]))


def test_grid_parse() -> None:
    assert Grid.parse("2.5:160") == Grid(2.5, 160)
    assert Grid.parse(" 4 : 96 ") == Grid(4.0, 96)
    for bad in ("2.5", "0:96", "2.5:0", "a:b", "-1:96"):
        with pytest.raises(LmisaError, match="SPACING:SIZE"):
            Grid.parse(bad)


def test_own_grid_gives_the_label_back() -> None:
    label = _disc_label()
    for kind in ("hard", "argmax", "soft"):
        back = round_trip(label, Grid(1.0, 64), num_classes=2, kind=kind)
        assert back.shape == label.array.shape and back.dtype == np.uint8
        np.testing.assert_array_equal(back, label.array)


def test_coarser_grid_costs_boundary_dice_and_more_the_coarser() -> None:
    label = _disc_label()
    scores = {s: organ_dice(round_trip(label, Grid(s, int(64 / s)), 2), label.array, {"organ": 1}) for s in (2.0, 4.0, 8.0)}
    dice = [scores[s]["organ_slices"]["organ"] for s in (2.0, 4.0, 8.0)]
    assert 100.0 > dice[0] > dice[2] > 50.0
    # halving the grid, nearest neighbour samples each pixel's lower-right corner: a half-pixel shift that
    # labels made from area fractions do not have
    argmax = organ_dice(round_trip(label, Grid(2.0, 32), 2, "argmax"), label.array, {"organ": 1})["volume"]["organ"]
    assert argmax > dice[0]
    # the empty first slice stays empty, so the whole volume scores the same voxels
    assert scores[4.0]["volume"]["organ"] == pytest.approx(scores[4.0]["organ_slices"]["organ"])


def test_organ_outside_the_frame_is_lost() -> None:
    label = _disc_label(centre=(32.0, 6.0), radius=5.0)  # near the left edge
    back = round_trip(label, Grid(1.0, 32), 2)  # a centred 32 x 32 frame of the 64 x 64 slices
    assert back.sum() == 0
    assert organ_dice(back, label.array, {"organ": 1})["volume"]["organ"] == 0.0


def test_absent_organ_is_nan_and_left_out_of_the_means(nnunet_factory) -> None:
    root = nnunet_factory("ds", n_cases=2, labels={"background": 0, "liver": 1, "spleen": 2})
    path = root / "labelsTr" / "case_001.nii.gz"
    img = nib.load(str(path))
    data = np.asarray(img.dataobj)
    nib.save(nib.Nifti1Image(np.where(data == 2, 0, data).astype(np.uint8), img.affine), str(path))
    table = grid_ceiling(root, [Grid(1.5, 32)])
    assert math.isnan(table.rows[Grid(1.5, 32)]["hard"]["volume"]["case_001"]["spleen"])
    assert table.organ_means(Grid(1.5, 32), "hard", "volume")["spleen"] == pytest.approx(100.0)


def test_grid_ceiling_on_a_data_set(nnunet_factory) -> None:
    root = nnunet_factory("ds", n_cases=2, shape=(6, 32, 32), spacing=(3.0, 1.5, 1.5))
    grids = [Grid(1.5, 32), Grid(3.0, 16)]
    table = grid_ceiling(root, grids, kinds=("hard", "argmax", "soft"))
    assert table.organs == ["organ"]
    assert table.mean(grids[0], "hard", "organ_slices") == pytest.approx(100.0)
    assert 50.0 < table.mean(grids[1], "hard", "organ_slices") < 100.0
    assert set(table.rows[grids[1]]) == {"hard", "argmax", "soft"}
    saved = table.to_dict()
    assert [g["spacing_mm"] for g in saved["grids"]] == [1.5, 3.0]
    assert set(saved["grids"][1]["soft"]["volume"]["cases"]) == {"case_000", "case_001"}


def test_unknown_label_value_names_the_file(nnunet_factory) -> None:
    root = nnunet_factory("ds", n_cases=1)
    path = root / "labelsTr" / "case_000.nii.gz"
    img = nib.load(str(path))
    data = np.asarray(img.dataobj).copy()
    data[0, 0, 0] = 7
    nib.save(nib.Nifti1Image(data, img.affine), str(path))
    with pytest.raises(LmisaError, match=r"case_000\.nii\.gz: label values \[7\]"):
        grid_ceiling(root, [Grid(1.5, 32)])


def test_no_labelled_case_is_an_error(tmp_path: Path, nnunet_factory) -> None:
    root = nnunet_factory("ds", n_cases=1)
    (root / "labelsTr" / "case_000.nii.gz").unlink()
    with pytest.raises(LmisaError, match="no labelled training cases"):
        grid_ceiling(root, [Grid(1.5, 32)])


def test_cli_prints_and_writes_json_without_overwriting(tmp_path: Path, nnunet_factory) -> None:
    root = nnunet_factory("ds", n_cases=2)
    out = tmp_path / "ceiling.json"
    runner = CliRunner()
    done = runner.invoke(app, ["ceiling", str(root), "--grid", "1.5:32", "--grid", "3:16", "--all", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert all(f"{k} ceiling" in done.output for k in ("hard", "argmax", "soft")) and "3 mm / 16" in done.output
    saved = json.loads(out.read_text())
    assert saved["grids"][0]["hard"]["organ_slices"]["mean"] == pytest.approx(100.0)
    again = runner.invoke(app, ["ceiling", str(root), "--grid", "1.5:32", "--out", str(out)])
    assert again.exit_code != 0 and "exists" in again.output
    bad = runner.invoke(app, ["ceiling", str(root), "--grid", "1.5"])
    assert bad.exit_code != 0 and "SPACING:SIZE" in bad.output


def test_cli_corrupt_label_is_one_line_naming_the_file(nnunet_factory) -> None:
    root = nnunet_factory("ds", n_cases=1)
    (root / "labelsTr" / "case_000.nii.gz").write_bytes(b"not a nifti")
    done = CliRunner().invoke(app, ["ceiling", str(root), "--grid", "1.5:32"])
    assert done.exit_code != 0 and "case_000.nii.gz" in done.output and "Traceback" not in done.output
