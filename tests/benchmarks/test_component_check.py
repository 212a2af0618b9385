"""benchmarks/component_check.py on a tiny real run: both choices scored on the source validation cases."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from conftest import load_benchmark, train_tiny_run


@pytest.fixture(scope="module")
def component_check() -> ModuleType:
    return load_benchmark("component_check")


def test_both_choices_are_scored_with_and_without_tta(component_check, tmp_path: Path) -> None:
    run = train_tiny_run(tmp_path)
    component_check.main([str(run), "--out", str(tmp_path / "c.json")])
    (row,) = json.loads((tmp_path / "c.json").read_text())
    assert set(row["offsets_mm"]) <= {"1", "2", "3", "4"} and row["offsets_mm"]
    for key in ("plain", "tta"):
        for choice in component_check.CHOICES:
            assert 0 <= row[f"dice_{key}_{choice}_organ_slices"] <= 100
    with pytest.raises(SystemExit, match="not a finished run"):
        component_check.main([str(tmp_path), "--out", str(tmp_path / "x.json")])
