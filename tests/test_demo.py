"""``lmisa demo`` end to end on tiny settings: phantoms written, both variants trained, three rows scored, the
report written, and a second call reusing what the first made."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmisa.demo import run_demo

TINY = {"data": {"spacing": [3.5, 3.5], "size": [32, 32]}, "model": {"widths": [8, 16]},
        "train": {"batch_size": 2, "epochs": 1, "steps_per_epoch": 2, "val_batches": 1, "device": "cpu"}}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_demo_runs_end_to_end_and_a_second_call_reuses_its_runs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LMISA_CACHE", str(tmp_path / "cache"))
    result = run_demo(tmp_path / "demo", cases=8, settings=TINY, progress=False)
    rows = [(r["variant"], r["test"]) for r in result.rows]
    assert rows == [("source_only", "MR"), ("lmisa", "MR"), ("lmisa", "T1 (unseen)")]
    assert all(0.0 <= r["dice_mean"] <= 100.0 for r in result.rows)
    assert result.report is not None and result.report.exists()
    assert json.loads((tmp_path / "demo" / "results.json").read_text()) == result.rows
    checkpoint = tmp_path / "demo" / "runs" / "lmisa" / "checkpoints" / "best.pt"
    before = checkpoint.stat().st_mtime_ns
    again = run_demo(tmp_path / "demo", cases=8, settings=TINY, progress=False)
    assert again.rows == result.rows and checkpoint.stat().st_mtime_ns == before


@pytest.mark.parametrize("content, message", [
    ("{", r"split\.json: invalid JSON"),
    ('{"source": ["a"], "target": "b", "test": []}', r'split\.json: not the split of an lmisa demo \("target"'),
])
def test_a_damaged_demo_split_is_named_before_any_work(tmp_path: Path, content: str, message: str) -> None:
    from lmisa.errors import LmisaError

    out = tmp_path / "demo"
    out.mkdir()
    (out / "split.json").write_text(content)
    with pytest.raises(LmisaError, match=message):
        run_demo(out, cases=8, settings=TINY, progress=False)
    assert (out / "split.json").read_text() == content
    assert sorted(p.name for p in out.iterdir()) == ["split.json"]  # no phantoms written first
