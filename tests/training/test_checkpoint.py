"""Checkpoints: written whole, read back weights-only, and a file that cannot be read is named in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lmisa.errors import LmisaError
from lmisa.training.checkpoint import load_checkpoint, save_checkpoint


def test_a_checkpoint_reads_back(tmp_path: Path) -> None:
    save_checkpoint({"net": {"w": torch.ones(2)}, "epoch": 3}, tmp_path / "a.pt")
    state = load_checkpoint(tmp_path / "a.pt")
    assert state["epoch"] == 3 and torch.equal(state["net"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]  # no temporary file left


def test_unreadable_files_are_named_without_torchs_advice(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(b"not a checkpoint")
    with pytest.raises(LmisaError, match=r"damaged\.pt: unreadable checkpoint \(damaged") as caught:
        load_checkpoint(damaged)
    assert "weights_only" not in str(caught.value) and "\n" not in str(caught.value)

    foreign = tmp_path / "foreign.pt"  # readable, but holds a type weights-only loading refuses: that type is named
    torch.save({"where": Path("/data")}, foreign)
    with pytest.raises(LmisaError, match=r"foreign\.pt: unreadable checkpoint \(.*Unsupported global.*Path"):
        load_checkpoint(foreign)

    truncated = tmp_path / "truncated.pt"
    save_checkpoint({"w": torch.zeros(1000)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:500])
    with pytest.raises(LmisaError, match=r"truncated\.pt: unreadable checkpoint") as caught:
        load_checkpoint(truncated)
    assert "\n" not in str(caught.value)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
