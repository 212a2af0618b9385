"""Every peer method runs its mixed-precision path (bf16 autocast, as on a GPU), here on the CPU."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from lmisa.training import train
from lmisa.training.trainer import Trainer
from peer_helpers import TINY, domains, one_thread  # noqa: F401, F811


@pytest.mark.parametrize("variant, epochs", [("adaoutput", 1), ("cyclegan_seg", 2), ("sifa", 1)])
def test_runs_under_bf16_autocast(domains, tmp_path: Path, monkeypatch, variant: str, epochs: int) -> None:  # noqa: F811
    """Finite losses and a usable run (cyclegan_seg needs 2 epochs: one per stage)."""
    src, tgt = domains
    monkeypatch.setattr(Trainer, "autocast", lambda self: torch.autocast("cpu", dtype=torch.bfloat16))
    cfg = {**TINY, "train": dict(TINY["train"], epochs=epochs, steps_per_epoch=1)}
    run = train(src, tgt, out=tmp_path / "bf16", variant=variant, overrides=cfg, progress=False)
    row = list(csv.DictReader((run / "log.csv").open()))[-1]
    assert all(np.isfinite(float(v)) for k, v in row.items() if k.startswith("loss_") and v != "nan"), row
    assert np.isfinite(float(row["val_loss"]))
