"""benchmarks/component_check.py on a tiny real run: both choices scored on the source validation cases."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from conftest import LABELS, load_benchmark, write_nnunet_dataset

TINY = {
    "data": {"size": [32, 32], "spacing": [1.5, 1.5]},
    "model": {"widths": [8, 16]},
    "train": {"batch_size": 2, "val_batches": 1, "epochs": 1, "steps_per_epoch": 1, "device": "cpu"},
}


@pytest.fixture(scope="module")
def component_check() -> ModuleType:
    return load_benchmark("component_check")


def test_both_choices_are_scored_with_and_without_tta(component_check, tmp_path: Path, monkeypatch) -> None:
    from lmisa.training import train

    src = write_nnunet_dataset(tmp_path / "src", n_cases=5, shape=(5, 24, 24), spacing=(3.0, 1.5, 1.5), labels=LABELS)
    monkeypatch.setenv("LMISA_CACHE", str(tmp_path / "cache"))
    run = train(src, None, out=tmp_path / "run", variant="source_only", overrides=TINY, progress=False)
    component_check.main([str(run), "--out", str(tmp_path / "c.json")])
    (row,) = json.loads((tmp_path / "c.json").read_text())
    assert set(row["offsets_mm"]) <= {"1", "2", "3", "4"} and row["offsets_mm"]
    for key in ("plain", "tta"):
        for choice in component_check.CHOICES:
            assert 0 <= row[f"dice_{key}_{choice}_organ_slices"] <= 100
    with pytest.raises(SystemExit, match="not a finished run"):
        component_check.main([str(tmp_path), "--out", str(tmp_path / "x.json")])
