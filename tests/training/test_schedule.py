"""train.lr_schedule: the paper's step decay and nnU-Net's poly decay, logged per epoch and resumed."""

from __future__ import annotations

import csv
import doctest
from pathlib import Path

import pytest
import torch

import lmisa.training.schedule
from conftest import train_cut_after_first_epoch
from lmisa.config import Config, TrainConfig
from lmisa.training import train
from lmisa.training.checkpoint import load_checkpoint
from lmisa.training.schedule import lr_scheduler

LABELS = {"background": 0, "liver": 1, "right_kidney": 2, "left_kidney": 3, "spleen": 4}
POLY = {
    "data": {"size": [32, 32], "spacing": [1.5, 1.5]},
    "train": {"batch_size": 4, "val_batches": 1, "epochs": 3, "steps_per_epoch": 2, "lr_schedule": "poly"},
}


def test_docstring_example_runs() -> None:
    assert doctest.testmod(lmisa.training.schedule).failed == 0


def epoch_rates(train_cfg: TrainConfig) -> list[float]:
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=train_cfg.lr)
    sched = lr_scheduler(opt, train_cfg)
    rates = []
    for _ in range(train_cfg.epochs):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return rates


def test_step_is_the_paper_decay_and_stays_the_default() -> None:
    assert TrainConfig().lr_schedule == "step"
    rates = epoch_rates(TrainConfig(lr=1.0, epochs=24, lr_decay=0.8, lr_decay_every=10))
    assert rates[:10] == [1.0] * 10 and rates[10:20] == pytest.approx([0.8] * 10) and rates[-1] == pytest.approx(0.64)


def test_poly_falls_to_near_zero_by_the_last_epoch() -> None:
    rates = epoch_rates(TrainConfig(lr=2e-3, epochs=24, lr_schedule="poly"))
    assert rates[0] == 2e-3 and all(a > b for a, b in zip(rates, rates[1:]))
    assert rates[-1] == pytest.approx(2e-3 * (1 / 24) ** 0.9)


def test_unknown_schedule_is_one_clear_error() -> None:
    with pytest.raises(Exception, match="lr_schedule"):
        Config.from_dict({"train": {"lr_schedule": "cosine"}})


@pytest.fixture
def domains(tmp_path: Path, nnunet_factory, monkeypatch) -> tuple[Path, Path]:
    monkeypatch.setenv("LMISA_CACHE", str(tmp_path / "cache"))
    src = nnunet_factory("src", n_cases=3, shape=(5, 24, 24), labels=LABELS, seed=0)
    tgt = nnunet_factory("tgt", n_cases=2, shape=(4, 20, 20), spacing=(5.0, 1.8, 1.8), labels=LABELS, seed=1)
    return src, tgt


def test_poly_run_logs_its_rates_saves_its_schedule_and_resumes_on_it(domains, tmp_path: Path, monkeypatch) -> None:
    src, tgt = domains
    straight = train(src, tgt, out=tmp_path / "straight", overrides=POLY, progress=False)
    rows = list(csv.DictReader((straight / "log.csv").open()))
    assert [float(r["lr"]) for r in rows] == pytest.approx([2e-3 * (1 - e / 3) ** 0.9 for e in range(3)], rel=1e-5)  # log.csv rounds
    assert Config.load(straight / "config.yaml").train.lr_schedule == "poly"

    train_cut_after_first_epoch(monkeypatch, src, tgt, tmp_path / "cut", overrides=POLY)
    resumed = train(src, tgt, out=tmp_path / "cut", resume=True, progress=False)
    a = load_checkpoint(straight / "checkpoints" / "latest.pt")
    b = load_checkpoint(resumed / "checkpoints" / "latest.pt")
    for key in ("net", "critic"):
        for name, tensor in a[key].items():
            torch.testing.assert_close(tensor, b[key][name], rtol=0, atol=0, msg=f"{key}.{name}")
