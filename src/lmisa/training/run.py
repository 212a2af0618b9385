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
    RUN/run.lock        held while a process trains here (run_lock)
"""

from __future__ import annotations

import csv
import io
import logging
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Sequence

try:
    import fcntl
except ImportError:  # not POSIX: runs are not locked
    fcntl = None  # type: ignore[assignment]

from lmisa.datasets import is_case_list
from lmisa.errors import LmisaError
from lmisa.io import read_json_object, write_text_atomic

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


def read_run_split(run_dir: Path) -> dict[str, Any]:
    """A run's ``split.json``: its case lists (and the data sets it trained on). LmisaError naming the file when it
    is missing, damaged or lacks a case list, rather than a KeyError deep in training."""
    path = run_dir / SPLIT
    if not path.is_file():
        raise LmisaError(f"{path}: not found (every run folder has one; was it moved or deleted?)")
    split = read_json_object(path)
    for key in ("source_train", "source_val", "target_train"):
        names = split.get(key, [] if key == "target_train" else None)
        if not is_case_list(names):
            raise LmisaError(f'{path}: "{key}" must be a list of case names')
    return split


def default_run_dir(source: Path, target: Path | None, variant: str, root: Path = Path("runs")) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    tgt = f"-to-{Path(target).name}" if target else ""
    return root / f"{Path(source).name}{tgt}-{variant}-{stamp}"


LOCK = "run.lock"
# what a run writes before its first epoch ends (log.csv and progress.png come with the first checkpoint)
EARLY_RUN_FILES = frozenset({CONFIG, PLANS, SPLIT, LOG_TEXT, CKPT_DIR, HARDWARE, PARAMS, LOCK})


def _try_lock(fh) -> bool | None:
    """Take the lock on the open file ``fh``: True taken, False held by another process, None where the file
    system has no locks (some network mounts)."""
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return None
    return True


def _in_use(run_dir: Path) -> bool:
    """True while a training process holds ``run_dir``'s lock (``run_lock``)."""
    if fcntl is None or not (run_dir / LOCK).exists():
        return False
    with open(run_dir / LOCK, "a") as fh:
        taken = _try_lock(fh)
        if taken:
            fcntl.flock(fh, fcntl.LOCK_UN)
    return taken is False


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock while a training process works there, so that no second command starts or
    resumes a run in the same folder meanwhile. The OS releases it when the process ends, even if killed.
    (Advisory; POSIX file systems with locks only: elsewhere nothing is locked.)"""
    if fcntl is None:
        yield
        return
    with open(run_dir / LOCK, "a") as fh:
        taken = _try_lock(fh)
        if taken is False:
            raise LmisaError(f"{run_dir}: another training run is working in this folder; choose another --out")
        try:
            yield
        finally:
            if taken:
                fcntl.flock(fh, fcntl.LOCK_UN)


def never_trained(run_dir: Path) -> bool:
    """True if a run started in ``run_dir`` (its lock file is there) and stopped before its first epoch ended:
    no checkpoint, only the files a run writes that early, and no process working there now. Nothing in it
    is worth keeping, so a new run may start there."""
    if not (run_dir / LOCK).exists() or _in_use(run_dir):
        return False
    ckpt = run_dir / CKPT_DIR
    if ckpt.exists() and (not ckpt.is_dir() or any(ckpt.iterdir())):
        return False
    return all(p.name in EARLY_RUN_FILES for p in run_dir.iterdir())


def prepare_run_dir(run_dir: Path, resume: bool) -> Path:
    """Create ``run_dir`` for a new run, or check it holds a run to resume. Never reuses another run; a
    folder a run left before its first epoch ended (``never_trained``) is started again. The caller then
    holds ``run_lock`` while it trains."""
    run_dir = Path(run_dir)
    if not resume:
        check_new_run_dir(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir
    _check_free_folder(run_dir)
    if not (run_dir / CKPT_DIR / LATEST).exists():
        hint = ""
        if run_dir.is_dir() and never_trained(run_dir):
            hint = "; no epoch finished there: run the same command without --resume to start it again"
        raise LmisaError(f"{run_dir}: nothing to resume (no {CKPT_DIR}/{LATEST}){hint}")
    return run_dir


def check_new_run_dir(run_dir: Path) -> None:
    """A new run may start in ``run_dir``: absent, empty, or left by a run before its first epoch ended, and no
    other run working there; LmisaError naming it otherwise. Nothing is made (``lmisa train --dry-run``)."""
    run_dir = Path(run_dir)
    _check_free_folder(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()) and not never_trained(run_dir):
        raise LmisaError(f"{run_dir}: folder exists and is not empty; pass --resume to continue it or choose another --out")


def _check_free_folder(run_dir: Path) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise LmisaError(f"{run_dir}: exists and is not a folder; choose another --out")
    if _in_use(run_dir):
        raise LmisaError(f"{run_dir}: another training run is working in this folder; choose another --out")


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
