"""benchmarks/label_free.py: which runs it measures, the best epoch it reads, and the rows it writes (the
predictions themselves are organ_volumes.py's, replaced here by canned results)."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def label_free() -> ModuleType:
    return load_benchmark("label_free")


DATA = {"MR2CT": ("MR_CHAOS_T2_train", "CT_BTCV_train"), "CT2MR": ("CT_BTCV_train", "MR_CHAOS_T2_train")}


def _run(bench: Path, direction: str, seed: int, losses: list[float], done: bool = True, data: Path | None = None) -> Path:
    run = bench / "runs" / direction / "lmisa" / f"seed{seed}"
    run.mkdir(parents=True)
    data = data or bench / "data"
    source, target = (data / name for name in DATA[direction])
    (run / "split.json").write_text(json.dumps({"source_train": [], "source": str(source), "target": str(target)}))
    rows = ["epoch,val_loss,val_dice"] + [f"{e + 1},{loss},{70 + e}" for e, loss in enumerate(losses)]
    (run / "log.csv").write_text("\n".join(rows) + "\n")
    if done:
        (run / "DONE").write_text("")
    return run


def test_finished_runs_are_measured_at_their_best_epoch(label_free, monkeypatch, tmp_path: Path) -> None:
    bench = tmp_path / "bench"
    for name in ("MR_CHAOS_T2_train", "CT_BTCV_train"):
        (bench / "data" / name / "imagesTr").mkdir(parents=True)
    _run(bench, "MR2CT", 0, [3.0, 1.0, 2.0], data=tmp_path / "elsewhere")  # trained on another machine's copy
    _run(bench, "CT2MR", 1, [2.0, 1.5])
    _run(bench, "MR2CT", 2, [1.0], done=False)  # still training: left out
    calls = []

    def canned(run, source, target, keep, device, extra):
        assert source.parent == target.parent == bench / "data"  # the recorded folders, or the bench's copies
        calls.append((run.parts[-3], source.name, target.name, extra))
        return {"organs": {"liver": {"ratio": 1.5}}, "score": 0.4,
                "outside_region": {"share": 0.05, "region_mm": 239.0}}

    monkeypatch.setattr(label_free, "organ_volumes", canned)
    monkeypatch.setattr(label_free, "source_val_cases", lambda run, source, keep, device: 80.0 + int(run.name[-1]))
    label_free.main([str(bench), "--out", str(tmp_path / "lf.json")])
    rows = json.loads((tmp_path / "lf.json").read_text())
    assert [(r["direction"], r["seed"], r["best_epoch"], r["val_dice"], r["val_dice_cases"]) for r in rows] == [
        ("CT2MR", 1, 2, 71.0, 81.0), ("MR2CT", 0, 2, 71.0, 80.0)]
    assert rows[1]["outside_share"] == 0.05 and rows[1]["ratios"] == {"liver": 1.5}
    # each run: once with its own post-processing, once without the cap and with the region's margin
    assert ("MR2CT", "MR_CHAOS_T2_train", "CT_BTCV_train", []) in calls
    assert ("CT2MR", "CT_BTCV_train", "MR_CHAOS_T2_train", ["--extent-margin", "0", "--region-margin", "1.1"]) in calls


def test_a_split_without_its_data_sets_is_a_one_line_error(label_free, tmp_path: Path) -> None:
    run = _run(tmp_path, "MR2CT", 0, [1.0])
    (run / "split.json").write_text(json.dumps({"source_train": []}))
    with pytest.raises(SystemExit, match="split.json: names no source and target"):
        label_free.main([str(tmp_path), "--out", str(tmp_path / "lf.json")])


def test_no_finished_run_is_a_one_line_error(label_free, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no finished run of lmisa"):
        label_free.main([str(tmp_path), "--out", str(tmp_path / "lf.json")])


def test_held_out_measures_the_target_cases_no_run_trained_on(label_free, monkeypatch, tmp_path: Path) -> None:
    bench = tmp_path / "bench"
    run = _run(bench, "MR2CT", 0, [1.0])
    data = bench / "data"
    (data / "CT_BTCV_train_held" / "imagesTr").mkdir(parents=True)
    (data / "CT_BTCV_train_held" / "imagesTr" / "case_7_0000.nii.gz").write_bytes(b"")
    split = json.loads((run / "split.json").read_text())
    (run / "split.json").write_text(json.dumps({**split, "target": str(data / "CT_BTCV_train_fit")}))
    seen = []
    monkeypatch.setattr(label_free, "organ_volumes", lambda run, source, target, keep, device, extra: seen.append(
        target.name) or {"organs": {}, "score": 0.1, "outside_region": {"share": 0.0, "region_mm": 1.0}})
    monkeypatch.setattr(label_free, "source_val_cases", lambda run, source, keep, device: 80.0)
    label_free.main([str(bench), "--out", str(tmp_path / "lf.json"), "--held-out"])
    assert seen == ["CT_BTCV_train_held"] * 2
    row = json.loads((tmp_path / "lf.json").read_text())[0]
    assert row["measured_on"] == "CT_BTCV_train_held" and row["measured_cases"] == ["case_7_0000.nii.gz"]
    (run / "split.json").write_text(json.dumps(split))  # a run on the whole target set has no held-out cases
    with pytest.raises(SystemExit, match="not on a <target>_fit set"):
        label_free.main([str(bench), "--out", str(tmp_path / "lf.json"), "--held-out"])
