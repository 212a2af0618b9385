"""train.lr_schedule: the paper's step decay and nnU-Net's poly decay (a poly run end to end: test_trainer.py)."""

from __future__ import annotations

import doctest

import pytest
import torch

import lmisa.training.schedule
from lmisa.config import Config, TrainConfig
from lmisa.training.schedule import lr_scheduler


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
