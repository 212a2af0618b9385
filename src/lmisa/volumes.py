"""Organ volumes of label maps, and a label-free check of an adapted model's predictions.

The anatomy is the same whatever the modality: an organ predicted on the target's images should be
about the size that the source's labels give it. A median predicted volume far below the median
reference volume means erased organs, far above it spilled ones, and no target label is needed to
see it (docs/RESULTS.md, section 2a: a shape critic that erased MR organs scored 1.09, the fix 0.19).

Example:
    >>> from lmisa.volumes import compare_volumes
    >>> check = compare_volumes("pred_target_train/", "source_dataset/")   # doctest: +SKIP
    >>> check.organs["spleen"]["ratio"], check.score                        # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from lmisa.evaluation import (
    EvaluationError,
    _normalise_labels,
    check_declared_values,
    find_predictions,
    find_references,
    load_labels,
    undeclared_values,
)
from lmisa.extent import heaviest_window, presence_spans_mm, window_width
from lmisa.io import read_label

# a ratio outside this range is flagged: half or double the reference size
PLAUSIBLE_RATIO = (0.5, 2.0)


def label_volumes_ml(
    path: str | os.PathLike, labels: Mapping[str, int], *, strict: bool = False
) -> dict[str, float]:
    """Volume (mL) of every foreground label of one label map, from its voxel size. The map is read as
    ``lmisa evaluate`` reads it (``read_label``: NaN or non-integer values are refused); ``strict`` (a
    reference): so is any value ``labels`` does not declare."""
    return _volumes_and_undeclared(path, labels, strict)[0]


def _volumes_and_undeclared(
    path: str | os.PathLike, labels: Mapping[str, int], strict: bool
) -> tuple[dict[str, float], list[int]]:
    """:func:`label_volumes_ml`, and the non-zero values the map holds that ``labels`` does not declare."""
    lab = read_label(path)
    counts = np.bincount(lab.array.ravel(), minlength=256)
    present = np.flatnonzero(counts)
    if strict:
        check_declared_values(path, present, labels)
    voxel_ml = float(np.prod(lab.spacing)) / 1000.0
    volumes = {name: float(counts[value]) * voxel_ml for name, value in labels.items() if value > 0}
    return volumes, undeclared_values(present, labels)


@dataclass
class VolumeCheck:
    """Median organ volumes (mL) of predictions and references, their ratio, and the score."""

    organs: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> pred_ml, ref_ml, ratio
    score: float = math.nan  # mean over organs of |log(ratio)|: 0 = the reference sizes
    n_predictions: int = 0
    n_references: int = 0
    undeclared_by_case: dict[str, list[int]] = field(default_factory=dict)  # prediction -> values no organ has

    @property
    def implausible(self) -> list[str]:
        """Organs whose ratio is outside ``PLAUSIBLE_RATIO``."""
        lo, hi = PLAUSIBLE_RATIO
        return [n for n, o in self.organs.items() if not lo <= o["ratio"] <= hi]

    def to_dict(self) -> dict[str, Any]:
        return {"organs": self.organs, "score": self.score, "n_predictions": self.n_predictions,
                "n_references": self.n_references, "implausible": self.implausible,
                "undeclared_by_case": self.undeclared_by_case}


def compare_volumes(
    pred_dir: str | os.PathLike,
    ref_dir: str | os.PathLike,
    labels: Mapping[str, int] | str | os.PathLike | None = None,
) -> VolumeCheck:
    """Organ sizes of the label maps in ``pred_dir`` against those of ``ref_dir`` (other cases, say the
    source's labels: nothing is paired by case). ``labels``: a mapping or a dataset.json (default: the
    reference data set's dataset.json)."""
    refs, dataset_json = find_references(ref_dir)
    preds = find_predictions(pred_dir)
    strict = labels is None  # the reference's own labels: nothing else may appear
    if labels is None:
        if dataset_json is None:
            raise EvaluationError(f"{ref_dir}: no dataset.json to name the labels; pass labels (--labels)")
        labels = load_labels(dataset_json)
    elif isinstance(labels, (str, os.PathLike)):
        labels = load_labels(labels)
    organs = _normalise_labels(labels)
    measured = {case: _volumes_and_undeclared(p, organs, strict=False) for case, p in preds.items()}
    pred = [volumes for volumes, _ in measured.values()]
    ref = [label_volumes_ml(p, organs, strict=strict) for p in refs.values()]
    check = VolumeCheck(n_predictions=len(pred), n_references=len(ref),
                        undeclared_by_case={case: values for case, (_, values) in measured.items() if values})
    logs = []
    for name in organs:
        p, r = statistics.median(v[name] for v in pred), statistics.median(v[name] for v in ref)
        ratio = p / r if r > 0 else math.nan
        check.organs[name] = {"pred_ml": p, "ref_ml": r, "ratio": ratio}
        logs.append(abs(math.log(ratio)) if ratio > 0 else math.inf)
    check.score = sum(logs) / len(logs)
    return check


def _organ_voxels_per_slice(path: Path) -> tuple[np.ndarray, float]:
    """Foreground voxels on each slice of a label map ``(Z,)``, and its slice spacing (mm)."""
    lab = read_label(path)
    return (lab.array > 0).reshape(lab.array.shape[0], -1).sum(1), float(lab.spacing[0])


def outside_region_share(pred_dir: str | os.PathLike, ref_dir: str | os.PathLike, margin: float) -> dict[str, Any]:
    """The share of all organ voxels predicted in ``pred_dir`` that lie outside each scan's run of slices
    ``margin`` times the longest organ region of the labels in ``ref_dir`` (first to last slice holding any
    organ), placed where the scan's prediction holds the most organ voxels (as ``loss.critic_window`` places
    its window). It counts the organs drawn on body parts the reference scans never show, which is what a
    model adapted from abdominal MR to chest-to-pelvis CT gets wrong (docs/RESULTS.md 2n); no target label
    is read. The region counts every label map in ``ref_dir`` and any organ voxel; the trainer's window
    counts the training cases' slices holding an organ of some size, which can be shorter (here 239 mm for
    both in the MR labels, 267 against 235 mm in the CT labels)."""
    if not (math.isfinite(margin) and margin >= 1):
        raise ValueError(f"outside_region_share needs a margin >= 1, got {margin}")
    refs, _ = find_references(ref_dir)
    region_mm = 0.0
    for path in refs.values():
        per_slice, mm = _organ_voxels_per_slice(path)
        region_mm = max(region_mm, presence_spans_mm(per_slice > 0, [0], [len(per_slice)], [mm])[0])
    if region_mm == 0:
        raise EvaluationError(f"{ref_dir}: no label map holds an organ to measure the region from")
    outside = total = 0
    per_case = {}
    for case, path in find_predictions(pred_dir).items():
        per_slice, mm = _organ_voxels_per_slice(path)
        width = window_width(margin * region_mm, mm)
        first = heaviest_window(per_slice, width)
        held = int(per_slice.sum())
        out = held - int(per_slice[first : first + width].sum())
        outside, total = outside + out, total + held
        per_case[case] = out / held if held else 0.0
    return {"margin": margin, "region_mm": region_mm, "share": outside / total if total else 0.0, "per_case": per_case}


__all__ = ["PLAUSIBLE_RATIO", "VolumeCheck", "compare_volumes", "label_volumes_ml", "outside_region_share"]
