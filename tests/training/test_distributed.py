"""Two CPU processes (gloo) under torchrun train a few steps and end with identical weights."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

LABELS = {"background": 0, "liver": 1, "right_kidney": 2, "left_kidney": 3, "spleen": 4}

SCRIPT = textwrap.dedent(
    """
    import os, sys, torch
    from lmisa.training import train
    from lmisa.training.trainer import Trainer

    out = sys.argv[3]
    original = Trainer.on_train_end

    def dump(self):
        torch.save(self._bare(self.net).state_dict(), os.path.join(out, f"rank{self.dist.rank}-net.pt"))
        torch.save(self._bare(self.critic).state_dict(), os.path.join(out, f"rank{self.dist.rank}-critic.pt"))
        return original(self)

    Trainer.on_train_end = dump
    overrides = {
        "data": {"size": [32, 32], "spacing": [1.5, 1.5]},
        "train": {"batch_size": 2, "val_batches": 1, "epochs": 2, "steps_per_epoch": 3, "device": "cpu"},
    }
    train(sys.argv[1], sys.argv[2], out=out, overrides=overrides, progress=False)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_rank_ddp_ends_with_identical_weights(tmp_path: Path, nnunet_factory) -> None:
    src = nnunet_factory("src", n_cases=3, shape=(4, 24, 24), labels=LABELS, seed=0)
    tgt = nnunet_factory("tgt", n_cases=2, shape=(4, 20, 20), labels=LABELS, seed=1)
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    env = {"LMISA_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}", str(script), str(src), str(tgt), str(out),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for part in ("net", "critic"):
        a = torch.load(out / f"rank0-{part}.pt", weights_only=True)
        b = torch.load(out / f"rank1-{part}.pt", weights_only=True)
        for name in a:
            torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=f"{part}.{name}")
    assert (out / "checkpoints" / "latest.pt").exists() and (out / "log.csv").exists()
