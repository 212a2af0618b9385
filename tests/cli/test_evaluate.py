"""``lmisa evaluate`` through typer's CliRunner."""

from __future__ import annotations

import json
import shutil

import numpy as np
from typer.testing import CliRunner

from lmisa.cli import app
from lmisa.io import read_label, write_image

runner = CliRunner()


def make(nnunet_factory, tmp_path):
    ds = nnunet_factory("ds", n_cases=2, labels={"background": 0, "liver": 1, "spleen": 2})
    pred = tmp_path / "pred"
    pred.mkdir()
    for p in sorted((ds / "labelsTr").glob("*.nii.gz")):
        shutil.copy(p, pred / p.name)
    img = read_label(pred / "case_001.nii.gz")
    img.array = np.roll(img.array, 1, axis=2)
    write_image(pred / "case_001.nii.gz", img, overwrite=True)
    return ds, pred


def test_evaluate_prints_table_and_writes_outputs(nnunet_factory, tmp_path):
    ds, pred = make(nnunet_factory, tmp_path)
    out = tmp_path / "out"
    r = runner.invoke(app, ["evaluate", "--pred", str(pred), "--ref", str(ds), "--out", str(out)])
    assert r.exit_code == 0, r.output
    for word in ("Structure", "Dice (%)", "ASSD (vox)", "ASSD (mm)", "HD95 (mm)", "liver", "spleen", "Mean", "±"):
        assert word in r.output
    assert {p.name for p in out.iterdir()} == {"metrics_per_case.csv", "summary.json", "summary.md"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_cases"] == 2 and summary["protocol"] == "volume"
    assert 0 < summary["per_structure"]["liver"]["dice"]["mean"] < 100

    # refuses to overwrite: one red line, exit 1, no traceback
    r = runner.invoke(app, ["evaluate", "--pred", str(pred), "--ref", str(ds), "--out", str(out)])
    assert r.exit_code == 1 and "exists" in r.output and "Traceback" not in r.output
    r = runner.invoke(
        app,
        ["evaluate", "--pred", str(pred), "--ref", str(ds / "labelsTr"), "--out", str(out), "--overwrite",
         "--labels", str(ds / "dataset.json"), "--protocol", "organ_slices"],
    )
    assert r.exit_code == 0, r.output
    assert json.loads((out / "summary.json").read_text())["protocol"] == "organ_slices"


def test_evaluate_user_errors(nnunet_factory, tmp_path):
    ds, pred = make(nnunet_factory, tmp_path)
    r = runner.invoke(app, ["evaluate", "--pred", str(pred), "--ref", str(ds), "--protocol", "bogus"])
    assert r.exit_code == 1 and "protocol" in r.output
    (pred / "case_000.nii.gz").unlink()
    r = runner.invoke(app, ["evaluate", "--pred", str(pred), "--ref", str(ds), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "case_000" in r.output and "Traceback" not in r.output
    r = runner.invoke(
        app, ["evaluate", "--pred", str(pred), "--ref", str(ds), "--out", str(tmp_path / "o"), "--allow-missing"]
    )
    assert r.exit_code == 0, r.output
    assert "missing predictions" in r.output and "case_000" in r.output


def test_evaluate_names_predicted_values_the_reference_lacks(nnunet_factory, tmp_path):
    ds, pred = make(nnunet_factory, tmp_path)
    img = read_label(pred / "case_000.nii.gz")
    img.array = np.where(img.array == 2, 7, img.array).astype(img.array.dtype)
    write_image(pred / "case_000.nii.gz", img, overwrite=True)
    r = runner.invoke(app, ["evaluate", "--pred", str(pred), "--ref", str(ds), "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "predicted label values [7] are not among the reference's labels" in r.output
    assert "7 in 1 case(s) (case_000)" in r.output  # the case holding them
