"""Shared fixtures: tiny synthetic NIfTI data sets written in a temp dir, and the real-data location."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable

import numpy as np
import pytest
import torch

import lmisa.io
from lmisa.cores import usable_cores
from lmisa.io import MedicalImage, write_image

torch.set_num_threads(min(2, usable_cores()))

REPO_ROOT = Path(__file__).resolve().parents[1]
ABDOMEN = Path(os.environ.get("LMISA_ABDOMEN", REPO_ROOT.parent / "shared" / "data" / "abdomen"))
LABELS = {"background": 0, "liver": 1, "right_kidney": 2, "left_kidney": 3, "spleen": 4}


@pytest.fixture
def one_torch_thread():
    """Tiny networks and tensors: one thread is as fast, and on a loaded 2-core machine two threads were
    5-10x slower (spin-waiting). Use it as ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a module: the scripts are not a package (registered in sys.modules,
    which their dataclasses need)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO_ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def abdomen_path() -> Path:
    """The shared abdominal data, or a pytest skip when it is absent."""
    if not (ABDOMEN / "CT_BTCV" / "dataset.json").exists():
        pytest.skip(f"real data not found at {ABDOMEN}")
    return ABDOMEN


@pytest.fixture
def abdomen() -> Path:
    return abdomen_path()


def train_tiny_run(tmp: Path, n_cases: int = 5) -> Path:
    """A real one-step ``source_only`` run on a tiny synthetic 4-organ data set (its own cache under ``tmp``),
    for the benchmark scripts that read finished runs."""
    import pytest

    from lmisa.training import train

    src = write_nnunet_dataset(tmp / "src", n_cases=n_cases, shape=(5, 24, 24), spacing=(3.0, 1.5, 1.5), labels=LABELS)
    overrides = {
        "data": {"size": [32, 32], "spacing": [1.5, 1.5]},
        "model": {"widths": [8, 16]},
        "train": {"batch_size": 2, "val_batches": 1, "epochs": 1, "steps_per_epoch": 1, "device": "cpu"},
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LMISA_CACHE", str(tmp / "cache"))
        return train(src, None, out=tmp / "run", variant="source_only", overrides=overrides, progress=False)


def write_nnunet_dataset(
    root: Path,
    n_cases: int = 3,
    shape: tuple[int, int, int] = (6, 32, 32),
    spacing: tuple[float, float, float] = (3.0, 1.5, 1.5),
    labels: dict[str, int] | None = None,
    seed: int = 0,
    prefix: str = "case",
) -> Path:
    """Write a small nnU-Net-v2 raw data set: a bright box with a labelled blob inside each case.

    ``shape`` and ``spacing`` are ``(Z, Y, X)``. Returns ``root``.
    """
    labels = labels or {"background": 0, "organ": 1}
    rng = np.random.default_rng(seed)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    affine = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    z, y, x = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    n_fg = max(labels.values())
    for i in range(n_cases):
        img = rng.normal(0, 0.05, shape).astype(np.float32)
        lab = np.zeros(shape, np.uint8)
        for c in range(1, n_fg + 1):
            cz, cy, cx = shape[0] / 2, rng.uniform(0.3, 0.7) * shape[1], (c / (n_fg + 1)) * shape[2]
            r = rng.uniform(0.12, 0.2) * min(shape[1:])
            blob = ((y - cy) ** 2 + (x - cx) ** 2) / r**2 + ((z - cz) / max(shape[0] / 2, 1)) ** 2 < 1
            lab[blob] = c
            img[blob] += 0.5 + 0.3 * c
        name = f"{prefix}_{i:03d}"
        write_image(root / "imagesTr" / f"{name}_0000.nii.gz", MedicalImage(img, affine))
        write_image(root / "labelsTr" / f"{name}.nii.gz", MedicalImage(lab, affine))
    meta = {
        "name": root.name,
        "channel_names": {"0": "CT"},
        "labels": labels,
        "numTraining": n_cases,
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(meta, indent=2))
    return root


@pytest.fixture
def nnunet_factory(tmp_path: Path) -> Callable[..., Path]:
    """Call with a folder name (and write_nnunet_dataset's options) to get a fresh tiny data set."""

    def make(name: str = "ds", **kwargs) -> Path:
        return write_nnunet_dataset(tmp_path / name, **kwargs)

    return make


@pytest.fixture(autouse=True)
def _restore_locale():
    """GDCM's DICOM writer (used by tests that build series) switches the process locale to "C",
    after which Python's default text encoding is ASCII; put it back after every test."""
    import locale

    saved = locale.setlocale(locale.LC_ALL)
    yield
    locale.setlocale(locale.LC_ALL, saved)


def set_cpu_bf16(monkeypatch, amx: bool, avx512_bf16: bool = False) -> None:
    """Make torch report this CPU's bf16 instructions (``lmisa.precision.cpu_bf16_instructions`` reads both probes), so
    that a test means the same on any machine."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)


def train_cut_after_first_epoch(monkeypatch, source: Path, target: Path, out: Path, **train_kwargs) -> dict:
    """Train into ``out`` but stop (KeyboardInterrupt) right after epoch 1 is saved, as Ctrl-C would.

    Returns the ``latest`` checkpoint it left, for a test to resume from and compare with a straight run.
    """
    from lmisa.training import train
    from lmisa.training.checkpoint import load_checkpoint
    from lmisa.training.trainer import Trainer

    original = Trainer.on_epoch_end

    def stop_after_first_epoch(self, val):
        original(self, val)
        if self.epoch == 0:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "on_epoch_end", stop_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(source, target, out=out, progress=False, **train_kwargs)
    monkeypatch.setattr(Trainer, "on_epoch_end", original)
    cut = load_checkpoint(out / "checkpoints" / "latest.pt")
    assert cut["epoch"] == 1
    return cut


def forbid_label_reads_under(folder: Path, monkeypatch) -> None:
    """Fail the test on any label map read from inside ``folder`` (the target data set)."""
    read_label = lmisa.io.read_label

    def guarded(path, *a, **k):
        assert Path(folder) not in Path(path).resolve().parents, f"target label read: {path}"
        return read_label(path, *a, **k)

    monkeypatch.setattr(lmisa.io, "read_label", guarded)
    monkeypatch.setattr("lmisa.preprocess.read_label", guarded)


TWO_ORGANS = {"background": 0, "liver": 1, "spleen": 2}
TINY_RUN = {
    "data": {"size": [16, 16], "spacing": [1.5, 1.5]},
    "train": {"batch_size": 2, "val_batches": 1, "epochs": 2, "steps_per_epoch": 2, "device": "cpu"},
}


@pytest.fixture
def finished_run(tmp_path: Path, nnunet_factory, monkeypatch) -> Path:
    """A finished tiny run with a target; the target's labels are never read from here on."""
    from lmisa.training import train

    monkeypatch.setenv("LMISA_CACHE", str(tmp_path / "cache"))
    src = nnunet_factory("src", n_cases=3, shape=(4, 20, 20), labels=TWO_ORGANS, seed=0)
    tgt = nnunet_factory("tgt", n_cases=2, shape=(4, 20, 20), labels=TWO_ORGANS, seed=1)
    run = train(src, tgt, out=tmp_path / "base", variant="no_recon", overrides=TINY_RUN, progress=False)
    forbid_label_reads_under(tgt, monkeypatch)
    return run
