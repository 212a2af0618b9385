"""Cranio-caudal organ extents: how far each organ reaches through the slices, and a cap on predictions.

An organ is about as long whatever the modality that images it, and the source's labels say how long
(in mm, through the slices). A model adapted from abdominal MR to chest-to-pelvis CT draws organs on
CT slices that no MR scan shows: the liver grows into the chest, the spleen below its pole
(docs/RESULTS.md 2m: on the CT training scans the predicted liver reached a median 292 mm, the MR
labels at most 216 mm). ``cap_extent`` keeps, for each organ reaching further than its cap, the run of
slices that cap allows holding the most of its predicted voxels, and sets the rest of the organ to
background.
The caps come from the run's training labels (the source's; the target's only for the ``supervised``
bound): ``post.extent_margin`` times each organ's longest extent there, stored in the run's plans.
No target label is read.

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

from lmisa.errors import LmisaError
from lmisa.preprocess import SliceSet

__all__ = ["cap_extent", "check_extent_margin", "heaviest_window", "longest_extents_mm", "presence_spans_mm", "window_width"]


def check_extent_margin(margin: float) -> None:
    """``post.extent_margin`` is a finite number >= 0 (0: no cap)."""
    if not (math.isfinite(margin) and margin >= 0):
        raise LmisaError(f"post.extent_margin must be a number >= 0 (0: no cap), got {margin}")


def presence_spans_mm(
    present: Sequence[bool] | np.ndarray, case_starts: Sequence[int], case_lengths: Sequence[int],
    slice_mm: Sequence[float],
) -> list[float]:
    """Per case of a slice stack: the length (mm) from its first to its last slice flagged in ``present``
    (``(N,)``), each case with its own slice spacing; 0 for a case with none flagged."""
    present = np.asarray(present, dtype=bool)
    spans = []
    for start, n, mm in zip(case_starts, case_lengths, slice_mm):
        z = np.flatnonzero(present[int(start) : int(start) + int(n)])
        spans.append(float(z[-1] - z[0] + 1) * float(mm) if z.size else 0.0)
    return spans


def longest_extents_mm(slices: SliceSet, slice_mm: Sequence[float], organs: Mapping[str, int]) -> dict[str, float]:
    """The longest extent (mm) of each organ (name -> label value; the background's 0 is skipped) over the
    labelled cases of ``slices``, each case with its own slice spacing ``slice_mm``."""
    if slices.labels is None:
        raise ValueError("longest_extents_mm needs labelled slices")
    starts, lengths = slices.case_starts.tolist(), slices.case_lengths.tolist()
    flat = slices.labels.flatten(1)
    return {
        name: max(presence_spans_mm((flat == value).any(1).cpu().numpy(), starts, lengths, slice_mm), default=0.0)
        for name, value in organs.items() if value > 0
    }


def window_width(span_mm: float, slice_mm: float) -> int:
    """How many slices ``slice_mm`` apart a run ``span_mm`` long holds (at least one)."""
    return max(1, int(span_mm / float(slice_mm) + 1e-6))


def heaviest_window(per_slice: np.ndarray, width: int) -> int:
    """First slice of the run of ``width`` consecutive slices whose ``per_slice`` amounts (``(Z,)``) sum
    highest (the first such run on ties; 0 when ``width`` covers them all)."""
    per_slice = np.asarray(per_slice)
    if width >= per_slice.shape[0]:
        return 0
    return int(np.argmax(np.convolve(per_slice, np.ones(width, dtype=per_slice.dtype), mode="valid")))


def cap_extent(labels: np.ndarray, slice_mm: float, caps: Mapping[int, float]) -> np.ndarray:
    """A copy of ``labels`` ``(Z, ...)`` where each label value in ``caps`` spans at most ``caps[value]``
    mm of slices (``slice_mm`` apart): the window of that many slices holding most of its voxels is kept
    (the first such window on ties), the value is set to 0 outside it. A cap of 0 or less is no cap."""
    labels = np.asarray(labels)
    out = labels.copy()
    if labels.ndim < 2 or labels.shape[0] <= 1 or not any(cap > 0 for cap in caps.values()):
        return out  # nothing that could be capped
    if not slice_mm > 0 or not math.isfinite(slice_mm):
        raise ValueError(f"cap_extent needs a positive slice spacing, got {slice_mm}")
    for value, cap in caps.items():
        if not cap > 0:
            continue
        width = window_width(cap, slice_mm)
        per_slice = (labels == value).reshape(labels.shape[0], -1).sum(1)
        held = np.flatnonzero(per_slice)
        if held.size == 0 or held[-1] - held[0] + 1 <= width:
            continue
        first = heaviest_window(per_slice, width)
        drop = np.ones(labels.shape[0], bool)
        drop[first : first + width] = False
        out[drop] = np.where(out[drop] == value, 0, out[drop])
    return out
