"""lmisa.evaluation on tiny NIfTI data sets written in tmp_path."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lmisa.errors import LmisaError
from lmisa.evaluation import OUTPUT_FILES, evaluate_folders, load_labels, undeclared_by_value
from lmisa.io import MedicalImage, read_label, write_image
from lmisa.metrics import evaluate_case

LABELS = {"background": 0, "a": 1, "b": 2}


def copy_predictions(ref_root: Path, pred_dir: Path) -> Path:
    pred_dir.mkdir(parents=True, exist_ok=True)
    for p in sorted((ref_root / "labelsTr").glob("*.nii.gz")):
        shutil.copy(p, pred_dir / p.name)
    return pred_dir


def edit(path: Path, fn) -> None:
    img = read_label(path)
    img.array = fn(img.array.copy())
    write_image(path, img, overwrite=True)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def dataset(nnunet_factory):
    return nnunet_factory("ds", n_cases=3, labels=LABELS)


def test_perfect_predictions_and_outputs(dataset, tmp_path):
    pred = copy_predictions(dataset, tmp_path / "pred")
    out = tmp_path / "out"
    s = evaluate_folders(pred, dataset, out_dir=out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    assert s.cases == ["case_000", "case_001", "case_002"]
    assert s.labels == {"a": 1, "b": 2}  # from the data set root's dataset.json, background dropped
    rows = read_csv(out / "metrics_per_case.csv")
    assert list(rows[0]) == ["case", "structure", "dice", "assd_vox", "assd_mm", "hd95_mm", "pred_empty", "ref_empty"]
    assert len(rows) == 6
    assert all(float(r["dice"]) == 100 and float(r["assd_mm"]) == 0 and r["pred_empty"] == "0" for r in rows)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["per_structure"]["a"]["dice"] == {"mean": 100.0, "std": 0.0, "n": 3}
    assert summary["per_structure"]["b"]["counts"] == {"n_cases": 3, "n_both_empty": 0, "n_missed": 0, "n_false_positive": 0}
    assert summary["mean_over_structures"]["dice"] == {"mean": 100.0, "n_structures": 2}
    md = (out / "summary.md").read_text(encoding="utf-8")
    assert "| a | 100.00 ± 0.00 | 0.00 ± 0.00 | 0.00 ± 0.00 | 0.00 ± 0.00 |" in md
    assert "| **Mean** | **100.00** |" in md


def test_imperfect_values_match_evaluate_case_and_empties_are_counted(dataset, tmp_path):
    pred = copy_predictions(dataset, tmp_path / "pred")

    def shift(a):  # shift everything one voxel along x
        return np.roll(a, 1, axis=2)

    edit(pred / "case_000.nii.gz", shift)
    edit(pred / "case_001.nii.gz", lambda a: np.where(a == 2, 0, a).astype(np.uint8))  # b missed
    s = evaluate_folders(pred, dataset / "labelsTr", out_dir=tmp_path / "out", progress=False)
    assert s.labels == {"a": 1, "b": 2}  # labelsTr folder: its parent's dataset.json

    ref0 = read_label(dataset / "labelsTr" / "case_000.nii.gz")
    expect = evaluate_case(shift(ref0.array), ref0.array, {"a": 1, "b": 2}, ref0.spacing)
    rows = {(r["case"], r["structure"]): r for r in read_csv(tmp_path / "out" / "metrics_per_case.csv")}
    for k in ("dice", "assd_vox", "assd_mm", "hd95_mm"):
        assert float(rows[("case_000", "a")][k]) == pytest.approx(expect["a"][k], rel=1e-9)
    assert 0 < expect["a"]["dice"] < 100 and expect["a"]["assd_mm"] > expect["a"]["assd_vox"]  # spacing 1.5 mm >= 1
    missed = rows[("case_001", "b")]
    assert missed["dice"] == "0" and missed["assd_vox"] == "nan" and (missed["pred_empty"], missed["ref_empty"]) == ("1", "0")

    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))  # strict JSON: no NaN
    b = summary["per_structure"]["b"]
    assert b["counts"]["n_missed"] == 1 and b["counts"]["n_cases"] == 3
    assert b["dice"]["n"] == 3 and b["assd_vox"]["n"] == 2  # distances averaged over the defined cases only
    dice_b = [float(rows[(c, "b")]["dice"]) for c in s.cases]
    assert b["dice"]["mean"] == pytest.approx(np.mean(dice_b)) and b["dice"]["std"] == pytest.approx(np.std(dice_b))
    assd_b = [float(rows[(c, "b")]["assd_vox"]) for c in s.cases if c != "case_001"]
    assert b["assd_vox"]["mean"] == pytest.approx(np.mean(assd_b))
    means = [summary["per_structure"][x]["hd95_mm"]["mean"] for x in ("a", "b")]
    assert summary["mean_over_structures"]["hd95_mm"]["mean"] == pytest.approx(np.mean(means))
    md = (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    assert "(n=2)" in md and "missed (not predicted) in 1" in md

    errors = summary["errors"]  # where the errors are: b's voxels of case_001 all went to background
    assert errors["classes"] == ["background", "a", "b"]
    m = np.array(errors["confusion_voxels"])
    refs = [read_label(dataset / "labelsTr" / f"{c}.nii.gz").array for c in s.cases]
    assert m.sum() == sum(r.size for r in refs)
    assert m[2].sum() == sum(int((r == 2).sum()) for r in refs) and m[2, 0] >= int((refs[1] == 2).sum())
    assert set(errors["false_positive_beyond_extent_voxels"]) == {"a", "b"}
    assert "| reference \\ predicted | background | a | b |" in md and "on slices without b" in md


def test_labels_from_values_when_no_dataset_json(dataset, tmp_path):
    refs = tmp_path / "refs"
    shutil.copytree(dataset / "labelsTr", refs)
    pred = copy_predictions(dataset, tmp_path / "pred")
    # case_002: label 2 absent from both prediction and reference -> both-empty row (Dice 100, distances 0)
    for folder in (refs, pred):
        edit(folder / "case_002.nii.gz", lambda a: np.where(a == 2, 0, a).astype(np.uint8))
    s = evaluate_folders(pred, refs, out_dir=tmp_path / "out", progress=False)
    assert s.labels == {"label_1": 1, "label_2": 2}
    row = next(r for r in s.rows if r["case"] == "case_002" and r["structure"] == "label_2")
    assert row["dice"] == 100.0 and row["assd_mm"] == 0.0 and row["pred_empty"] and row["ref_empty"]
    assert s.counts["label_2"]["n_both_empty"] == 1


def test_labels_argument_path_and_mapping(dataset, tmp_path):
    pred = copy_predictions(dataset, tmp_path / "pred")
    v1 = tmp_path / "v1.json"
    v1.write_text(json.dumps({"labels": {"0": "background", "2": "only_b"}}))
    assert load_labels(v1) == {"background": 0, "only_b": 2}
    s = evaluate_folders(pred, dataset, labels=v1, out_dir=tmp_path / "o1", progress=False)
    assert list(s.per_structure) == ["only_b"]
    s = evaluate_folders(pred, dataset, labels={"A": 1}, out_dir=tmp_path / "o2", progress=False)
    assert list(s.per_structure) == ["A"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"labels": {"background": 0, "region": [1, 2]}}))
    with pytest.raises(LmisaError, match="bad.json"):
        evaluate_folders(pred, dataset, labels=bad, out_dir=tmp_path / "o3", progress=False)
    bad.write_text("[1]")
    with pytest.raises(LmisaError, match=r"bad\.json: expected a JSON object, got list$"):
        load_labels(bad)


def test_missing_prediction_is_an_error_unless_allowed(dataset, tmp_path):
    pred = copy_predictions(dataset, tmp_path / "pred")
    (pred / "case_001.nii.gz").unlink()
    with pytest.raises(LmisaError, match="case_001"):
        evaluate_folders(pred, dataset, out_dir=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    s = evaluate_folders(pred, dataset, out_dir=tmp_path / "out", allow_missing=True, progress=False)
    assert s.cases == ["case_000", "case_002"] and s.missing_predictions == ["case_001"]
    assert json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))["missing_predictions"] == ["case_001"]
    assert "Missing predictions (not evaluated): case_001" in (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")


def test_geometry_mismatch_names_the_file(dataset, tmp_path):
    pred = copy_predictions(dataset, tmp_path / "pred")
    ref = read_label(pred / "case_001.nii.gz")
    write_image(pred / "case_001.nii.gz", MedicalImage(ref.array[:, :, :-1], ref.affine), overwrite=True)
    with pytest.raises(LmisaError, match=r"case_001\.nii\.gz: shape"):
        evaluate_folders(pred, dataset, out_dir=tmp_path / "o1", progress=False)
    affine = ref.affine.copy()
    affine[0, 0] *= 2
    write_image(pred / "case_001.nii.gz", MedicalImage(ref.array, affine), overwrite=True)
    with pytest.raises(LmisaError, match=r"case_001\.nii\.gz: geometry"):
        evaluate_folders(pred, dataset, out_dir=tmp_path / "o2", progress=False)


@pytest.mark.parametrize("workers", [1, 2])
def test_every_case_that_cannot_be_scored_is_named(dataset, tmp_path, workers):
    pred = copy_predictions(dataset, tmp_path / "pred")
    ref = read_label(pred / "case_000.nii.gz")
    write_image(pred / "case_000.nii.gz", MedicalImage(ref.array[:, :, :-1], ref.affine), overwrite=True)
    (pred / "case_002.nii.gz").write_bytes((pred / "case_002.nii.gz").read_bytes()[:40])  # truncated
    with pytest.raises(LmisaError, match="2 case") as err:
        evaluate_folders(pred, dataset, out_dir=tmp_path / "out", progress=False, workers=workers)
    lines = str(err.value).splitlines()
    assert len(lines) == 3 and "case_000.nii.gz: shape" in lines[1] and "case_002.nii.gz" in lines[2]
    assert not (tmp_path / "out").exists()


def test_never_overwrites_unless_asked(dataset, tmp_path):
    pred = copy_predictions(dataset, tmp_path / "pred")
    evaluate_folders(pred, dataset, progress=False)  # default out_dir: the prediction folder
    assert (pred / "summary.json").exists()
    before = (pred / "summary.md").read_text(encoding="utf-8")
    with pytest.raises(FileExistsError, match="metrics_per_case.csv"):
        evaluate_folders(pred, dataset, progress=False)
    edit(pred / "case_000.nii.gz", lambda a: np.where(a == 1, 0, a).astype(np.uint8))
    evaluate_folders(pred, dataset, overwrite=True, progress=False)
    assert (pred / "summary.md").read_text(encoding="utf-8") != before
    assert not [p for p in pred.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_organ_slices_protocol(tmp_path):
    shape, affine = (10, 12, 12), np.diag([1.0, 1.0, 2.0, 1.0])
    ref = np.zeros(shape, np.uint8)
    ref[3:7, 3:8, 3:8] = 1
    pred = ref.copy()
    pred[0, 0:3, 0:3] = 1  # false positive on a slice without reference label
    (tmp_path / "ref").mkdir()
    write_image(tmp_path / "ref" / "x.nii.gz", MedicalImage(ref, affine))
    write_image(tmp_path / "pred" / "x.nii.gz", MedicalImage(pred, affine))
    vol = evaluate_folders(tmp_path / "pred", tmp_path / "ref", {"organ": 1}, tmp_path / "v", progress=False)
    org = evaluate_folders(tmp_path / "pred", tmp_path / "ref", {"organ": 1}, tmp_path / "o", "organ_slices", progress=False)
    assert vol.per_structure["organ"]["dice"]["mean"] == pytest.approx(100 * 2 * 100 / (100 + 109))
    assert org.per_structure["organ"]["dice"]["mean"] == 100.0 and org.protocol == "organ_slices"
    assert json.loads((tmp_path / "o" / "summary.json").read_text(encoding="utf-8"))["protocol"] == "organ_slices"
    with pytest.raises(LmisaError, match="protocol"):
        evaluate_folders(tmp_path / "pred", tmp_path / "ref", {"organ": 1}, tmp_path / "z", "slices", progress=False)


def test_pool_gives_the_same_rows(dataset, tmp_path):
    pred = copy_predictions(dataset, tmp_path / "pred")
    edit(pred / "case_002.nii.gz", lambda a: np.roll(a, 2, axis=1))
    one = evaluate_folders(pred, dataset, out_dir=tmp_path / "w1", workers=1, progress=False)
    two = evaluate_folders(pred, dataset, out_dir=tmp_path / "w2", workers=2, progress=False)
    assert (tmp_path / "w1" / "metrics_per_case.csv").read_text(encoding="utf-8") == (tmp_path / "w2" / "metrics_per_case.csv").read_text(encoding="utf-8")
    assert one.per_structure == two.per_structure


def test_unpairable_inputs(tmp_path, dataset):
    (tmp_path / "empty").mkdir()
    with pytest.raises(LmisaError, match="no prediction files"):
        evaluate_folders(tmp_path / "empty", dataset, progress=False)
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(dataset / "labelsTr" / "case_000.nii.gz", other / "zzz.nii.gz")
    with pytest.raises(LmisaError, match="no prediction matches"):
        evaluate_folders(other, dataset, progress=False)
    with pytest.raises(LmisaError, match="not found"):
        evaluate_folders(other, tmp_path / "nope", progress=False)


def test_a_reference_holding_an_undeclared_value_is_refused_naming_the_file(dataset, tmp_path):
    pred = copy_predictions(dataset, tmp_path / "pred")
    edit(dataset / "labelsTr" / "case_001.nii.gz", lambda a: np.where(a == 2, 7, a).astype(a.dtype))
    with pytest.raises(LmisaError, match=r"labelsTr/case_001\.nii\.gz: label values \[7\] are not in its data set's labels"):
        evaluate_folders(pred, dataset, out_dir=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_predicted_values_the_reference_lacks_count_as_background_and_are_named(dataset, tmp_path):
    """A model trained on more structures than the reference declares (say 4 organs against liver only)."""
    pred = copy_predictions(dataset, tmp_path / "pred")
    edit(pred / "case_001.nii.gz", lambda a: np.where(a == 2, 7, a).astype(a.dtype))
    s = evaluate_folders(pred, dataset, out_dir=tmp_path / "out", progress=False)
    assert s.undeclared_predicted == [7] and s.undeclared_by_case == {"case_001": [7]}
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["undeclared_by_case"] == {"case_001": [7]}
    assert s.per_structure["b"]["dice"]["mean"] < 100
    perfect = evaluate_folders(copy_predictions(dataset, tmp_path / "p2"), dataset, out_dir=tmp_path / "o2", progress=False)
    assert perfect.undeclared_predicted == [] and perfect.undeclared_by_case == {}


def test_undeclared_values_are_listed_by_value() -> None:
    by_case = {f"case_{i:03d}": [7] for i in range(8)} | {"case_002": [7, 9]}
    assert undeclared_by_value(by_case) == (
        "7 in 8 case(s) (case_000, case_001, case_002, case_003, case_004, ... (8 in all)); 9 in 1 case(s) (case_002)"
    )


def test_an_output_path_that_is_a_file_is_refused_before_scoring(dataset, tmp_path):
    pred = copy_predictions(dataset, tmp_path / "pred")
    (tmp_path / "out.json").write_text("mine")
    with pytest.raises(LmisaError, match=r"out\.json: is a file"):
        evaluate_folders(pred, dataset, out_dir=tmp_path / "out.json", progress=False)
    assert (tmp_path / "out.json").read_text() == "mine"
