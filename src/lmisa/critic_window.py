"""Which target slices the shape critic judges: a window of each target scan around its organs
(``loss.critic_window``).

The critic's real maps are source label maps. Where the target scans reach beyond the source's (abdominal
MR as the source, CT from chest to pelvis as the target), many target slices show a part of the body no
source slice shows, and judging their predictions against organ-bearing source maps pushes the segmenter
to draw organs there (docs/RESULTS.md 2f, 2j). With a window, the critic judges only the target slices
within ``margin`` times the longest organ region of the source labels (first to last slice holding any
organ), placed in each scan where the segmenter's own prediction holds the most organ pixels: the judged
slices then cover the body as the source slices do. No target label is read.

A placement predicts every ``stride``-th slice of each scan (:func:`placement_slices`) and gives each
slice between them the count of the one before (:func:`hold_counts`): the window's ends move by less than
``stride`` slices, for a ``stride``-th of the cost (docs/RESULTS.md 2p).

Example:
    >>> window_index([0, 5, 9, 9, 1, 0], case_starts=[0], case_lengths=[6], slice_mm=[10.0], span_mm=30.0).tolist()
    [1, 2, 3]
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from lmisa.errors import LmisaError
from lmisa.extent import heaviest_window, window_width

__all__ = ["check_critic_window", "hold_counts", "placement_slices", "window_index"]


def check_critic_window(margin: float, dims: int) -> None:
    """``loss.critic_window`` is 0 (off) or a finite number >= 1, and 2D only."""
    if not (math.isfinite(margin) and (margin == 0 or margin >= 1)):
        raise LmisaError(f"loss.critic_window must be 0 (off) or a number >= 1, got {margin}")
    if margin > 0 and dims == 3:
        raise LmisaError("loss.critic_window is 2D only (set it to 0 with train.dims: 3)")


def window_index(
    organ_pixels: Sequence[float] | np.ndarray, case_starts: Sequence[int], case_lengths: Sequence[int],
    slice_mm: Sequence[float], span_mm: float,
) -> np.ndarray:
    """Indices into a slice stack of each case's run of slices ``span_mm`` long (its own slice spacing) that
    holds the most ``organ_pixels`` (``(N,)``, per slice); a case shorter than that: all its slices."""
    if not span_mm > 0:
        raise ValueError(f"window_index needs a positive span, got {span_mm}")
    organ_pixels = np.asarray(organ_pixels)
    keep = []
    for start, n, mm in zip(case_starts, case_lengths, slice_mm):
        start, n = int(start), int(n)
        width = window_width(span_mm, mm)
        first = heaviest_window(organ_pixels[start : start + n], width)
        keep.append(np.arange(start + first, start + min(n, first + width)))
    return np.concatenate(keep) if keep else np.zeros(0, dtype=np.int64)


def placement_slices(case_starts: Sequence[int], case_lengths: Sequence[int], stride: int) -> np.ndarray:
    """Indices into a slice stack of every ``stride``-th slice of each case, from its first.

    >>> placement_slices([0, 5], [5, 3], 2).tolist()
    [0, 2, 4, 5, 7]
    """
    if stride < 1:
        raise ValueError(f"placement_slices needs a stride of at least 1, got {stride}")
    parts = [np.arange(int(start), int(start) + int(n), stride) for start, n in zip(case_starts, case_lengths)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def hold_counts(
    sampled: Sequence[float] | np.ndarray, case_lengths: Sequence[int], stride: int
) -> np.ndarray:
    """Per-slice amounts of the whole stack from those of :func:`placement_slices` (in its order): each
    slice takes the amount of the last predicted slice of its case at or before it.

    >>> hold_counts([1, 3, 5, 7, 9], [5, 3], 2).tolist()
    [1, 1, 3, 3, 5, 7, 7, 9]
    """
    sampled = np.asarray(sampled)
    out, at = [], 0
    for n in case_lengths:
        m = -(-int(n) // stride)  # slices predicted in this case
        out.append(np.repeat(sampled[at : at + m], stride)[: int(n)])
        at += m
    if at != sampled.shape[0]:
        raise ValueError(f"hold_counts: {sampled.shape[0]} amounts for {at} predicted slices")
    return np.concatenate(out) if out else np.zeros(0, dtype=sampled.dtype)
