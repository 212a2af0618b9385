"""Which connected component of each organ a prediction keeps: the one lying where the organ lies relative to
the others in the source labels (an alternative to :func:`lmisa.postprocess.keep_largest_component`).

"Largest component" trusts size alone. After test-time augmentation a CT spleen can split into the organ and a
spurious blob above it, and the blob is the larger (docs/RESULTS.md 2q: one case's spleen Dice 53 -> 0). Here,
among an organ's components of at least ``min_share`` of its largest, the one kept is the one whose centroid
(world mm) lies nearest the centroid of all predicted organs plus the organ's mean offset from the centroid of
all organs in the source training labels (:func:`organ_offsets_mm`). No target label is read. Not adopted: an
option measured in ``benchmarks/component_check.py``.

Example:
    >>> import numpy as np
    >>> lab = np.zeros((1, 1, 12), np.uint8); lab[0, 0, [0, 1, 2]] = 1; lab[0, 0, [5, 6]] = 1; lab[0, 0, 10] = 2
    >>> keep_component_nearest(lab, np.eye(4), {1: [2.0, 0.0, 0.0]})[0, 0].tolist()  # organ 1 expected 2 mm past the centroid
    [0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 2, 0]
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
from scipy import ndimage

__all__ = ["centroid_mm", "organ_offsets_mm", "keep_component_nearest"]


def centroid_mm(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """World position (mm, the affine's axes) of the centroid of ``mask`` ``(Z, Y, X)``; the affine maps voxel
    ``(x, y, z)`` as nibabel does (:mod:`lmisa.io`)."""
    zyx = np.asarray(ndimage.center_of_mass(mask), dtype=np.float64)
    return np.asarray(affine, dtype=np.float64)[:3, :3] @ zyx[::-1] + np.asarray(affine, dtype=np.float64)[:3, 3]


def organ_offsets_mm(label_maps: Iterable[tuple[np.ndarray, np.ndarray]], classes: Iterable[int]) -> dict[int, list[float]]:
    """Per class, the mean world offset (mm) of its centroid from the centroid of all organ voxels, over the
    ``(labels (Z, Y, X), affine)`` maps that hold it; a class in none of them gets none."""
    wanted = [int(c) for c in classes if int(c) != 0]
    found: dict[int, list[np.ndarray]] = {c: [] for c in wanted}
    for labels, affine in label_maps:
        labels = np.asarray(labels)
        if not (labels > 0).any():
            continue
        centre = centroid_mm(labels > 0, affine)
        for c in wanted:
            if (labels == c).any():
                found[c].append(centroid_mm(labels == c, affine) - centre)
    return {c: np.mean(v, axis=0).tolist() for c, v in found.items() if v}


def keep_component_nearest(
    labels: np.ndarray, affine: np.ndarray, offsets: Mapping[int, Sequence[float]], min_share: float = 0.1,
    connectivity: int | None = None,
) -> np.ndarray:
    """A copy of ``labels`` ``(Z, Y, X)`` where each class keeps one connected component: for a class in
    ``offsets``, of those at least ``min_share`` of its largest, the one nearest its expected place (module
    docstring); for any other class, the largest. Removed voxels become 0."""
    labels = np.asarray(labels)
    out = labels.copy()
    if labels.ndim != 3 or not (labels > 0).any():
        return out
    if not 0 < min_share <= 1:
        raise ValueError(f"min_share must be in (0, 1], got {min_share}")
    structure = ndimage.generate_binary_structure(3, connectivity or 3)
    centre = centroid_mm(labels > 0, affine)
    for c in (int(v) for v in np.unique(labels) if v != 0):
        comps, n = ndimage.label(labels == c, structure=structure)
        if n <= 1:
            continue
        sizes = np.bincount(comps.ravel())[1:]
        keep = int(np.argmax(sizes)) + 1
        if c in offsets:
            candidates = [k + 1 for k in np.flatnonzero(sizes >= min_share * sizes.max())]
            target = centre + np.asarray(offsets[c], dtype=np.float64)
            keep = min(candidates, key=lambda k: float(np.linalg.norm(centroid_mm(comps == k, affine) - target)))
        out[(comps > 0) & (comps != keep)] = 0
    return out
