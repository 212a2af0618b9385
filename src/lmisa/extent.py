"""Cranio-caudal organ extents: how far each organ reaches through the slices, and a cap on predictions.

An organ is about as long whatever the modality that images it, and the source's labels say how long
(in mm, through the slices). A model adapted from abdominal MR to chest-to-pelvis CT draws organs on
CT slices that no MR scan shows: the liver grows into the chest, the spleen below its pole (docs/RESULTS.md
2m: on the CT training scans the predicted liver reached a median 292 mm, the MR labels at most 216 mm). ``cap_extent`` keeps, for each organ reaching further than its cap, the run of slices
that cap allows holding the most of its predicted voxels, and sets the rest of the organ to background.
The caps come from the source's training labels (``post.extent_margin`` times the longest one), stored
in the run's plans: no target label is read.

Example:
    >>> import numpy as np
    >>> lab = np.zeros((8, 2, 2), np.uint8); lab[:, 0, 0] = 1; lab[2:5, 1, 1] = 1   # liver on all 8 slices
    >>> cap_extent(lab, slice_mm=10.0, caps={1: 30.0})[:, 0, 0].tolist()             # at most 3 slices
    [0, 0, 1, 1, 1, 0, 0, 0]
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch

from lmisa.errors import LmisaError

__all__ = ["cap_extent", "check_extent_margin", "longest_extents_mm", "slice_extents"]


def check_extent_margin(margin: float) -> None:
    """``post.extent_margin`` is a finite number >= 0 (0: no cap)."""
    if not (math.isfinite(margin) and margin >= 0):
        raise LmisaError(f"post.extent_margin must be a number >= 0 (0: no cap), got {margin}")


def slice_extents(labels: torch.Tensor, values: Sequence[int]) -> torch.Tensor:
    """Slices from the first to the last holding each label value, in one ``(Z, ...)`` label map
    (``(len(values),)`` int64; 0 where a value is absent)."""
    z = torch.arange(labels.shape[0], device=labels.device)
    out = []
    for v in values:
        held = z[(labels == v).flatten(1).any(1)]
        out.append(held[-1] - held[0] + 1 if held.numel() else torch.zeros((), dtype=torch.int64, device=labels.device))
    return torch.stack(out) if out else torch.zeros(0, dtype=torch.int64)


def longest_extents_mm(
    labels: torch.Tensor, case_starts: Sequence[int], case_lengths: Sequence[int], slice_mm: Sequence[float],
    organs: Mapping[str, int],
) -> dict[str, float]:
    """The longest extent (mm) of each organ over the cases stacked in ``labels`` ``(N, H, W)`` (a
    SliceSet's labels, its cases' first slices and lengths), each case with its own slice spacing."""
    names = [n for n, v in organs.items() if v > 0]
    longest = dict.fromkeys(names, 0.0)
    for start, length, mm in zip(case_starts, case_lengths, slice_mm):
        counts = slice_extents(labels[int(start) : int(start) + int(length)], [organs[n] for n in names]).tolist()
        for name, n in zip(names, counts):
            longest[name] = max(longest[name], n * float(mm))
    return longest


def cap_extent(labels: np.ndarray, slice_mm: float, caps: Mapping[int, float]) -> np.ndarray:
    """A copy of ``labels`` ``(Z, ...)`` where each label value in ``caps`` spans at most ``caps[value]``
    mm of slices (``slice_mm`` apart): the window of that many slices holding most of its voxels is kept
    (the first such window on ties), the value is set to 0 outside it. A cap of 0 or less is no cap."""
    labels = np.asarray(labels)
    if not slice_mm > 0 or not math.isfinite(slice_mm):
        raise ValueError(f"cap_extent needs a positive slice spacing, got {slice_mm}")
    out = labels.copy()
    if labels.ndim < 2 or labels.shape[0] == 0:
        return out
    for value, cap in caps.items():
        if not cap > 0:
            continue
        width = max(1, int(cap / slice_mm + 1e-6))
        per_slice = (labels == value).reshape(labels.shape[0], -1).sum(1)
        held = np.flatnonzero(per_slice)
        if held.size == 0 or held[-1] - held[0] + 1 <= width:
            continue
        window = np.convolve(per_slice, np.ones(width, dtype=per_slice.dtype), mode="valid")  # window sums
        first = int(np.argmax(window))
        drop = np.ones(labels.shape[0], bool)
        drop[first : first + width] = False
        out[drop] = np.where(out[drop] == value, 0, out[drop])
    return out
