"""Checkpoints written atomically and read back with ``weights_only=True`` (no pickled code)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from lmisa.errors import LmisaError
from lmisa.io import atomic_write


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to ``path`` through a temporary file and a rename: never a half-written file."""
    with atomic_write(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True``; a file it cannot read raises LmisaError naming it, in one line."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as exc:
        # torch's text advises weights_only=False, wrong for a damaged file; keep only a type it would not load
        why = next((line.strip() for line in str(exc).splitlines() if "Unsupported global" in line), None)
        raise LmisaError(f"{path}: unreadable checkpoint ({why or 'damaged, or not a file lmisa saved'})") from None
    except Exception as exc:  # zip/torch errors of many kinds
        raise LmisaError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})".splitlines()[0]) from None
