"""benchmarks/self_training_phantoms.py: the decision rule, and one tiny pair end to end."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_benchmark("self_training_phantoms")


def _pairs(direction: str, gains: list[float]) -> list[dict]:
    return [{"direction": direction, "seed": i, "base": 70.0, "self_trained": 70.0 + g} for i, g in enumerate(gains)]


def test_the_rule_needs_four_wins_and_a_point_in_each_direction(bench) -> None:
    both = _pairs("CT->MR", [2, 2, 2, 2, -1]) + _pairs("MR->CT", [1.5, 1, 1, 1, 1])
    assert all(v["pass"] for v in bench.decide(both).values())
    three_wins = _pairs("CT->MR", [5, 5, 5, -1, -1])
    assert bench.decide(three_wins)["CT->MR"] == {"seeds": 5, "wins": 3, "mean_gain": 2.6, "pass": False}
    small = _pairs("MR->CT", [0.5, 0.5, 0.5, 0.5, 0.5])
    assert not bench.decide(small)["MR->CT"]["pass"]


def test_no_decision_before_five_seeds_in_each_direction(bench, capsys) -> None:
    four_each = _pairs("CT->MR", [-1, -1, -1, -1]) + _pairs("MR->CT", [-1, -1, -1, -1])
    bench.print_table(four_each, bench.decide(four_each))
    assert "rule: incomplete (each direction needs 5 seeds)" in capsys.readouterr().out
    five_each = _pairs("CT->MR", [-1] * 5) + _pairs("MR->CT", [-1] * 5)
    bench.print_table(five_each, bench.decide(five_each))
    assert "rule: NOT adopted" in capsys.readouterr().out and bench.outcome(bench.decide(five_each)) == "NOT adopted"


def test_one_tiny_pair_end_to_end(bench, tmp_path: Path, monkeypatch, capsys) -> None:
    import lmisa.demo

    tiny = {"data": {"spacing": [10.0, 10.0], "size": [16, 16]}, "model": {"widths": [8, 16]},
            "train": {"batch_size": 2, "epochs": 1, "steps_per_epoch": 2, "val_batches": 1}}
    monkeypatch.setattr(lmisa.demo, "DEMO_SETTINGS", tiny)
    monkeypatch.setenv("LMISA_CACHE", str(tmp_path / "cache"))
    bench.main(["--out", str(tmp_path / "st"), "--cases", "8", "--directions", "CT->MR", "--seeds", "0", "--threads", "1"])
    pair = json.loads((tmp_path / "st" / "pairs" / "CT2MR_seed0.json").read_text())
    assert 0 <= pair["base"] <= 100 and 0 <= pair["self_trained"] <= 100
    assert (tmp_path / "st" / "runs" / "CT2MR_seed0" / "self_train" / "run" / "DONE").is_file()
    assert not (tmp_path / "st" / "data" / "CT2MR" / "MR_target" / "labelsTr").exists()  # the target: no labels
    assert "rule: incomplete" in capsys.readouterr().out


def test_a_longer_schedule_stretches_the_demo_and_keeps_its_folder(bench, tmp_path: Path, monkeypatch) -> None:
    import lmisa.demo

    settings = bench.schedule_settings(6)
    demo = lmisa.demo.DEMO_SETTINGS["train"]
    assert settings["train"]["epochs"] == 6 * demo["epochs"] and settings["data"] == lmisa.demo.DEMO_SETTINGS["data"]
    assert settings["train"]["lr_decay_every"] == 6 * demo["lr_decay_every"]
    assert settings["train"]["steps_per_epoch"] == demo["steps_per_epoch"]
    assert bench.schedule_settings(1) == lmisa.demo.DEMO_SETTINGS
    bench.claim_schedule(tmp_path / "st", 6)
    bench.claim_schedule(tmp_path / "st", 6)
    with pytest.raises(SystemExit, match="trains at --schedule 6; choose another --out"):
        bench.claim_schedule(tmp_path / "st", 1)
    (tmp_path / "old" / "runs").mkdir(parents=True)  # made before the record: the demo's schedule
    with pytest.raises(SystemExit, match="trains at --schedule 1"):
        bench.claim_schedule(tmp_path / "old", 6)
