"""The run folder: what a training run leaves behind, and the rule that it never overwrites another run.

Layout::

    RUN/config.yaml     the resolved configuration (every default written out)
    RUN/plans.json      how volumes become network input (spacing, size, input, labels)
    RUN/split.json      source train/val cases, target train cases
    RUN/log.csv         one row per epoch;   RUN/train.log  the text log
    RUN/progress.png    losses and source validation per epoch
    RUN/checkpoints/latest.pt, best.pt
    RUN/hardware.txt    the device the run trained on
    RUN/params.json     parameter counts of every trained module, and their total
"""

from __future__ import annotations

import csv
import io
import logging
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from lmisa.errors import LmisaError
from lmisa.io import write_text_atomic

CONFIG = "config.yaml"
PLANS = "plans.json"
SPLIT = "split.json"
LOG_CSV = "log.csv"
LOG_TEXT = "train.log"
PROGRESS = "progress.png"
CKPT_DIR = "checkpoints"
LATEST = "latest.pt"
BEST = "best.pt"
DONE = "DONE"
HARDWARE = "hardware.txt"
PARAMS = "params.json"


def default_run_dir(source: Path, target: Path | None, variant: str, root: Path = Path("runs")) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    tgt = f"-to-{Path(target).name}" if target else ""
    return root / f"{Path(source).name}{tgt}-{variant}-{stamp}"


RUN_FILES = frozenset({CONFIG, PLANS, SPLIT, LOG_CSV, LOG_TEXT, PROGRESS, CKPT_DIR, HARDWARE, PARAMS})


def never_trained(run_dir: Path) -> bool:
    """True if ``run_dir`` holds only a run's own files and no checkpoint: a start that failed or was stopped
    before its first epoch ended. Nothing in it is worth keeping, so a new run may start there."""
    ckpt = run_dir / CKPT_DIR
    if ckpt.exists() and (not ckpt.is_dir() or any(ckpt.iterdir())):
        return False
    return all(p.name in RUN_FILES for p in run_dir.iterdir())


def prepare_run_dir(run_dir: Path, resume: bool) -> Path:
    """Create ``run_dir`` for a new run, or check it holds a run to resume. Never reuses another run; a
    folder a run left before its first epoch ended (``never_trained``) is started again."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise LmisaError(f"{run_dir}: exists and is not a folder; choose another --out")
    latest = run_dir / CKPT_DIR / LATEST
    if resume:
        if not latest.exists():
            hint = ""
            if run_dir.is_dir() and never_trained(run_dir):
                hint = "; no epoch finished there: run the same command without --resume to start it again"
            raise LmisaError(f"{run_dir}: nothing to resume (no {CKPT_DIR}/{LATEST}){hint}")
        return run_dir
    if run_dir.exists() and not never_trained(run_dir):
        raise LmisaError(f"{run_dir}: folder exists and is not empty; pass --resume to continue it or choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def write_history_csv(path: Path, history: Sequence[dict[str, Any]]) -> None:
    """Rewrite the whole CSV from the history (kept in the checkpoint, so a resume never duplicates rows)."""
    if not history:
        return
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_text_atomic(path, buf.getvalue())


def file_logger(run_dir: Path, name: str = "lmisa.train") -> logging.Logger:
    logger = logging.getLogger(f"{name}.{run_dir.resolve()}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not logger.handlers:
        handler = logging.FileHandler(run_dir / LOG_TEXT)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    return logger


def null_logger() -> logging.Logger:
    """A logger that drops everything (ranks other than 0)."""
    logger = logging.getLogger("lmisa.train.null")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger
