"""How often the critic's real label maps should hold an organ: as often as the target's slices do,
estimated from anatomy (``loss.real_prior: target``).

The critic learns the shape of organ maps, but with real maps drawn uniformly over source slices it
also learns how often organs appear, and that share depends on how far the scans reach, not on the
organs: abdominal CT that runs from chest to pelvis has an organ on fewer slices than MR of the
abdomen alone. The generator then meets it by erasing target organs, or by inventing them.

The share is estimated without any target label and without the segmenter: the organs span about
the same length along the body in both modalities, so their span in the source labels (median over
cases, mm) divided by each target scan's length (slices x slice spacing) says how many of its slices
hold an organ, assuming the target scans cover the organs whole (a shorter scan: all its slices).

Example:
    >>> expected_organ_fraction(200.0, lengths=[100, 60], slice_mm=[5.0, 5.0])  # 500 mm and 300 mm scans
    0.5
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from lmisa.extent import presence_spans_mm
from lmisa.preprocess import SliceSet
from lmisa.sampling import organ_slices

__all__ = ["OrganShare", "organ_spans_mm", "expected_organ_fraction", "estimate_organ_share"]


def organ_spans_mm(labels: SliceSet, slice_mm: Sequence[float], min_pixels: int = 1) -> list[float]:
    """Per case with an organ: the length (mm) from its first to its last slice holding one."""
    if labels.labels is None:
        raise ValueError("organ_spans_mm needs labelled slices")
    has = organ_slices(labels.labels, min_pixels).cpu().numpy()
    spans = presence_spans_mm(has, labels.case_starts.tolist(), labels.case_lengths.tolist(), slice_mm)
    return [s for s in spans if s > 0]


def expected_organ_fraction(span_mm: float, lengths: Sequence[int], slice_mm: Sequence[float]) -> float:
    """Share of all slices of scans (``lengths`` slices of ``slice_mm`` each) that an organ region
    ``span_mm`` long covers, each scan holding it whole or being covered by it."""
    total = sum(lengths)
    if total == 0:
        raise ValueError("expected_organ_fraction needs at least one slice")
    covered = sum(min(float(n), span_mm / float(mm)) for n, mm in zip(lengths, slice_mm))
    return covered / total


@dataclass(frozen=True)
class OrganShare:
    """Expected share of slices holding an organ, by the same estimate on both sides."""

    target: float  # over the target scans: what the critic's real maps are drawn with
    source: float  # over the source scans: what "auto" compares it with
    span_mm: float  # the organs' median span in the source labels


def estimate_organ_share(
    source: SliceSet, source_slice_mm: Sequence[float], target_lengths: Sequence[int],
    target_slice_mm: Sequence[float], min_pixels: int = 1,
) -> OrganShare:
    """The organs' median span in the source labels, and the share of slices it covers in the target
    scans and in the source scans."""
    spans = organ_spans_mm(source, source_slice_mm, min_pixels)
    if not spans:
        raise ValueError(f"no source case has a slice with {min_pixels} or more organ pixels: no organ span to estimate from")
    span = float(np.median(spans))
    source_lengths = [int(n) for n in source.case_lengths.tolist()]
    return OrganShare(
        target=expected_organ_fraction(span, target_lengths, target_slice_mm),
        source=expected_organ_fraction(span, source_lengths, source_slice_mm),
        span_mm=span,
    )
