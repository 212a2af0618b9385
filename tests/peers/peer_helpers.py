"""Shared by the peer tests (imported by name): tiny settings, fixtures, a fixed-batch recorder."""

from __future__ import annotations

from pathlib import Path

import pytest

LABELS = {"background": 0, "liver": 1, "right_kidney": 2, "left_kidney": 3, "spleen": 4}
STEPS = 5
TINY = {
    "data": {"size": [32, 32], "spacing": [1.5, 1.5]},
    "model": {"widths": [4, 8, 16, 32], "critic_widths": [4, 8, 16, 32]},
    "augment": {"enabled": False},
    "train": {"batch_size": 2, "val_batches": 1, "epochs": 2, "steps_per_epoch": STEPS, "device": "cpu"},
}


def fixed_batch_and_recorder(monkeypatch, cls) -> list[tuple[int, dict[str, float]]]:
    """Every step sees the same batch (drawn with a fixed seed, so a resumed run sees it too); record stats."""
    sample, step_end = cls.sample_batch, cls.on_step_end
    steps: list[tuple[int, dict[str, float]]] = []

    def fixed(self):
        if not hasattr(self, "_test_batch"):
            state = self.generator.get_state()
            self.generator.manual_seed(1234)
            self._test_batch = sample(self)
            self.generator.set_state(state)
        return self._test_batch

    def record(self, step, stats):
        steps.append((self.epoch, {k: float(v) for k, v in stats.items()}))
        step_end(self, step, stats)

    monkeypatch.setattr(cls, "sample_batch", fixed)
    monkeypatch.setattr(cls, "on_step_end", record)
    return steps


@pytest.fixture(autouse=True)
def one_thread(one_torch_thread):
    """conftest's one_torch_thread for every test of a module that imports this fixture."""
    yield


@pytest.fixture
def domains(tmp_path: Path, nnunet_factory, monkeypatch) -> tuple[Path, Path]:
    monkeypatch.setenv("LMISA_CACHE", str(tmp_path / "cache"))
    src = nnunet_factory("src", n_cases=3, shape=(4, 32, 32), labels=LABELS, seed=0)
    tgt = nnunet_factory("tgt", n_cases=2, shape=(4, 32, 32), spacing=(4.0, 1.6, 1.6), labels=LABELS, seed=1)
    return src, tgt
