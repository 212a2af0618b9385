"""Which target slices the shape critic judges: a window of each target scan around its organs
(``loss.critic_window``).

The critic's real maps are source label maps. Where the target scans reach beyond the source's (abdominal
MR as the source, CT from chest to pelvis as the target), many target slices show a part of the body no
source slice shows, and judging their predictions against organ-bearing source maps pushes the segmenter
to draw organs there (docs/RESULTS.md 2f, 2j). With a window, the critic judges only the target slices
within ``margin`` times the longest organ region of the source labels (first to last slice holding any
organ), placed in each scan where the segmenter's own prediction holds the most organ pixels: the judged
slices then cover the body as the source slices do. No target label is read.

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

__all__ = ["check_critic_window", "window_index"]


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
