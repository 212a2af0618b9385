"""benchmarks/ensemble_check.py on two tiny real runs: every member and the ensemble scored and timed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from conftest import load_benchmark, train_tiny_run


@pytest.fixture(scope="module")
def ensemble_check() -> ModuleType:
    return load_benchmark("ensemble_check")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    first = train_tiny_run(tmp_path_factory.mktemp("ens"))
    second = first.with_name("copy")
    shutil.copytree(first, second)  # a second run: the same weights in another folder
    return first, second


def test_members_and_ensemble_are_scored_side_by_side(ensemble_check, runs, tmp_path: Path, capsys) -> None:
    source = Path(json.loads((runs[0] / "split.json").read_text())["source"])
    ensemble_check.main([str(runs[0]), str(runs[1]), "--test", str(source), "--out", str(tmp_path / "e.json")])
    row = json.loads((tmp_path / "e.json").read_text())
    for protocol in ensemble_check.PROTOCOLS:  # copies of one run: the ensemble predicts what each does
        assert row[f"dice_member0_{protocol}"] == row[f"dice_member1_{protocol}"] == row[f"dice_ensemble_{protocol}"]
    assert row["s_ensemble"] > 0 and row["runs"] == [str(r) for r in runs]
    out = capsys.readouterr().out
    assert "ensemble" in out and "+0.00 on the mean" in out and "for the ensemble of 2" in out


def test_one_run_or_an_unfinished_run_is_refused(ensemble_check, runs, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="at least two runs"):
        ensemble_check.main([str(runs[0]), "--test", str(tmp_path), "--out", str(tmp_path / "x.json")])
    with pytest.raises(SystemExit, match="not a finished run"):
        ensemble_check.main([str(runs[0]), str(tmp_path), "--test", str(tmp_path), "--out", str(tmp_path / "x.json")])
