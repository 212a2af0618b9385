"""Checkpoints written atomically and read back with ``weights_only=True`` (no pickled code)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lmisa.io import atomic_write


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to ``path`` through a temporary file and a rename: never a half-written file."""
    with atomic_write(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    return torch.load(path, map_location=map_location, weights_only=True)
