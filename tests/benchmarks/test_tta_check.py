"""benchmarks/tta_check.py on a tiny real run: the source validation set it builds and the rows it writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from conftest import LABELS, load_benchmark, train_tiny_run


@pytest.fixture(scope="module")
def tta_check() -> ModuleType:
    return load_benchmark("tta_check")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("tta"))


def test_source_mode_scores_the_source_validation_cases_with_and_without_tta(tta_check, run: Path, tmp_path: Path) -> None:
    val = json.loads((run / "split.json").read_text())["source_val"]
    tta_check.main(["source", str(run), "--out", str(tmp_path / "tta.json")])
    (row,) = json.loads((tmp_path / "tta.json").read_text())
    assert row["cases"] == len(val) >= 1
    for key in ("plain", "tta"):
        assert row[f"s_{key}"] > 0
        assert all(0 <= row[f"dice_{key}_{p}"] <= 100 for p in tta_check.PROTOCOLS)
        assert set(row[f"organs_{key}_organ_slices"]) <= set(LABELS) - {"background"}
    tta_check.main(["source", str(run), "--no-post", "--out", str(tmp_path / "raw.json")])
    assert json.loads((tmp_path / "raw.json").read_text())[0]["post"] is False


def test_plain_only_skips_tta_and_reads_the_named_source(tta_check, run: Path, tmp_path: Path) -> None:
    """What label_free.py reports as whole-case source val; ``--source`` serves a run whose recorded data set moved."""
    moved = tmp_path / "moved"
    shutil.copytree(json.loads((run / "split.json").read_text())["source"], moved)
    tta_check.main(["source", str(run), "--plain-only", "--source", str(moved), "--out", str(tmp_path / "p.json")])
    (row,) = json.loads((tmp_path / "p.json").read_text())
    assert 0 <= row["dice_plain_organ_slices"] <= 100 and "dice_tta_organ_slices" not in row
    cases = row["cases_plain_organ_slices"]
    assert len(cases) == row["cases"] and all(0 <= d <= 100 for d in cases.values())
    with pytest.raises(SystemExit, match="source validation case not found"):
        tta_check.main(["source", str(run), "--plain-only", "--source", str(tmp_path), "--out", str(tmp_path / "x.json")])


def test_an_unfinished_run_and_a_target_without_test_set_are_refused(tta_check, run: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="not a finished run"):
        tta_check.main(["source", str(tmp_path), "--out", str(tmp_path / "x.json")])
    with pytest.raises(SystemExit, match="needs --test"):
        tta_check.main(["target", str(run), "--out", str(tmp_path / "x.json")])
