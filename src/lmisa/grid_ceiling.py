"""The Dice a perfect network could reach on a training grid: reference labels taken to the grid and back.

A 2D run trains and predicts on slices resampled to ``data.spacing`` and cropped or padded to ``data.size``;
its predictions are mapped back to each scan's own grid. Whatever the network learns, boundary detail finer
than the grid and organ outside the frame are lost on the way. This measures that loss with no training: each
reference label goes through the prediction path as class probabilities and is scored against itself. It needs
only labels a user already has (the SOURCE's), so a resolution can be chosen on it without a target label
(docs/prereg/2026-12-05-grid-ceiling.md).

Three kinds of probabilities:
- ``hard``: the one-hot of the nearest-neighbour training label (``prepare_label``), what the network is
  trained to reproduce;
- ``argmax``: the one-hot of the class with the largest area fraction in each grid pixel, the training label
  nnU-Net makes (each class interpolated linearly, then the largest kept) instead of nearest neighbour;
- ``soft``: each class's antialiased area fraction on the grid, what a calibrated network could at best output.

Example:
    >>> from lmisa.grid_ceiling import Grid, grid_ceiling
    >>> table = grid_ceiling("Dataset001_CT/", [Grid(4.0, 96), Grid(2.5, 160)])   # doctest: +SKIP
    >>> table.mean(Grid(4.0, 96), "hard", "organ_slices")                        # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from lmisa.datasets import Domain, label_values
from lmisa.errors import LmisaError
from lmisa.evaluation import PROTOCOLS, check_declared_values
from lmisa.io import MedicalImage, read_label
from lmisa.metrics import dice_score, restrict_to_label_slices
from lmisa.predict import class_argmax
from lmisa.preprocess import Plans, PreparedVolume, crop_or_pad, resample_inplane, restore_probabilities

KINDS = ("hard", "argmax", "soft")


@dataclass(frozen=True)
class Grid:
    """An in-plane training grid: square pixels of ``spacing`` mm in a ``size`` x ``size`` frame."""

    spacing: float
    size: int

    @classmethod
    def parse(cls, text: str) -> "Grid":
        """``"SPACING:SIZE"``, e.g. ``"2.5:160"``."""
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*:\s*([0-9]+)\s*", text)
        if not m or float(m.group(1)) <= 0 or int(m.group(2)) <= 0:
            raise LmisaError(f"grid {text!r}: expected SPACING:SIZE with both positive, e.g. 2.5:160")
        return cls(float(m.group(1)), int(m.group(2)))

    def __str__(self) -> str:
        return f"{self.spacing:g} mm / {self.size}"

    def plans(self) -> Plans:
        """The preprocessing plans of a 2D run on this grid (each scan keeps its own slices)."""
        return Plans(spacing=(self.spacing, self.spacing), size=(self.size, self.size))


def round_trip(label: MedicalImage, grid: Grid, num_classes: int, kind: str = "hard") -> np.ndarray:
    """``label`` taken to ``grid`` as class probabilities and back to its own grid as ``predict`` maps a
    network's output: the best label map any network trained on that grid could give back."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    array = label.array if label.array.ndim == 3 else label.array[None]
    spacing = label.spacing if label.array.ndim == 3 else (1.0, *label.spacing)
    shape = grid.plans().target_shape(array.shape, spacing)
    size = tuple(shape[-2:])
    if kind == "hard":
        nearest = resample_inplane(torch.from_numpy(np.ascontiguousarray(array)), size, "nearest").long()
        probs = F.one_hot(nearest, num_classes).permute(3, 0, 1, 2).float()
    else:
        probs = torch.stack([resample_inplane((array == c).astype(np.float32), size, "linear") for c in range(num_classes)])
        if kind == "argmax":
            probs = F.one_hot(class_argmax(probs).long(), num_classes).permute(3, 0, 1, 2).float()
    framed, box = crop_or_pad(probs, (grid.size, grid.size), 0.0)
    restored = restore_probabilities(framed, PreparedVolume(np.empty(0, np.float32), box, tuple(array.shape), int(shape[0])))
    return class_argmax(restored).numpy().reshape(label.array.shape)


def organ_dice(pred: np.ndarray, ref: np.ndarray, labels: dict[str, int]) -> dict[str, dict[str, float]]:
    """Dice (%) per organ under both protocols; NaN for an organ the reference lacks (left out of means)."""
    sliced = restrict_to_label_slices(pred, ref, labels)
    out: dict[str, dict[str, float]] = {p: {} for p in PROTOCOLS}
    for name, value in labels.items():
        if value == 0:
            continue
        present = bool((ref == value).any())
        for protocol, (p, r) in (("volume", (pred, ref)), ("organ_slices", sliced)):
            out[protocol][name] = dice_score(p == value, r == value) if present else math.nan
    return out


@dataclass
class CeilingTable:
    """Per-case Dice: ``rows[grid][kind][protocol][case][organ]``, with ``organs`` in label order."""

    organs: list[str]
    rows: dict[Grid, dict[str, dict[str, dict[str, dict[str, float]]]]] = field(default_factory=dict)

    def organ_means(self, grid: Grid, kind: str, protocol: str) -> dict[str, float]:
        """Mean over cases per organ (cases without that organ left out)."""
        cases = self.rows[grid][kind][protocol].values()
        return {o: _nanmean(c[o] for c in cases) for o in self.organs}

    def mean(self, grid: Grid, kind: str, protocol: str) -> float:
        """Mean over organs of the per-organ means (the benchmark's mean Dice)."""
        return _nanmean(self.organ_means(grid, kind, protocol).values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "organs": self.organs,
            "grids": [
                {"spacing_mm": g.spacing, "size": g.size,
                 **{kind: {protocol: {"mean": self.mean(g, kind, protocol), "organs": self.organ_means(g, kind, protocol),
                                      "cases": self.rows[g][kind][protocol]}
                           for protocol in PROTOCOLS} for kind in self.rows[g]}}
                for g in self.rows
            ],
        }


def _nanmean(values: Iterable[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan


def grid_ceiling(
    dataset: str | os.PathLike,
    grids: Iterable[Grid],
    kinds: Iterable[str] = KINDS,
    progress: Callable[[int, int], None] | None = None,
) -> CeilingTable:
    """The ceiling of every grid on every labelled training case of an nnU-Net-v2 raw data set."""
    domain = Domain.open(dataset)
    cases = [c for c in domain.cases("train") if c.label is not None]
    if not cases:
        raise LmisaError(f"{domain.root}: no labelled training cases (labelsTr/) to measure a ceiling on")
    grids, kinds = list(dict.fromkeys(grids)), list(kinds)
    if not grids:
        raise LmisaError("no grid to measure: give at least one SPACING:SIZE")
    organs = {k: v for k, v in sorted(domain.labels.items(), key=lambda kv: kv[1]) if v != 0}
    num_classes = max(domain.labels.values()) + 1
    table = CeilingTable(list(organs))
    for g in grids:
        table.rows[g] = {k: {p: {} for p in PROTOCOLS} for k in kinds}
    for i, case in enumerate(cases):
        label = read_label(case.label)
        check_declared_values(case.label, label_values(label.array), domain.labels)
        for g in grids:
            for k in kinds:
                scores = organ_dice(round_trip(label, g, num_classes, k), label.array, organs)
                for protocol in PROTOCOLS:
                    table.rows[g][k][protocol][case.name] = scores[protocol]
        if progress is not None:
            progress(i + 1, len(cases))
    return table
