"""Post-processing of predicted label maps: keep the largest connected component of every organ.

One abdominal organ is one connected object, so any other island of the same label is a false
positive (a typical cross-modality failure: a bright patch far from the organ). Keeping only the
largest 3D component per label removes them; removed voxels become background (0).

Implementation: ``scipy.ndimage.label`` on each label's bounding box only (all boxes come from one
``scipy.ndimage.find_objects`` pass), with full (26-) connectivity by default, as MONAI's
``KeepLargestConnectedComponent`` (``connectivity=None``) and ``skimage.measure.label`` use.
MONAI's ``KeepLargestConnectedComponent`` was considered and not used: on CPU it needs
scikit-image (not a dependency of lmisa; without it the transform raises "Skimage.measure
required"), and it labels the whole volume once per class. Labelling the whole volume per class with
scipy, as MONAI does, was measured 2.5x slower than labelling the boxes (``(120, 256, 256)`` uint8
map, 4 organs with 3 islands each, 1 thread, best of 3, loaded 2-core machine: 0.62 s vs 0.25 s;
identical output).

Example:
    >>> import numpy as np
    >>> lab = np.zeros((1, 1, 7), np.uint8); lab[0, 0, [0, 1, 2, 5]] = 1; lab[0, 0, 4] = 2
    >>> keep_largest_component(lab)[0, 0].tolist()
    [1, 1, 1, 0, 2, 0, 0]
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
from scipy import ndimage

__all__ = ["keep_largest_component"]


def keep_largest_component(
    labels: np.ndarray, classes: Iterable[int] | None = None, connectivity: int | None = None
) -> np.ndarray:
    """A copy of ``labels`` where every label in ``classes`` keeps only its largest connected component.

    Args:
        labels: an integer label map, usually ``(Z, Y, X)`` (any number of dimensions works).
        classes: the label values to clean (default: every non-zero value present). Other values,
            and the background, are left as they are.
        connectivity: as ``scipy.ndimage.generate_binary_structure``: 1 = faces only (6 neighbours
            in 3D) ... ``labels.ndim`` = full (26 in 3D, the default).

    Removed voxels are set to 0. Ties between equally large components keep the first one found
    (in C order). The input is not modified; the result has its dtype.
    """
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
        raise ValueError(f"keep_largest_component expects an integer label map, got dtype {labels.dtype}")
    out = labels.copy()
    if labels.size == 0 or labels.ndim == 0:
        return out
    structure = ndimage.generate_binary_structure(labels.ndim, connectivity or labels.ndim)
    values = labels.astype(np.int64, copy=False) if labels.dtype == bool or labels.min() < 0 else labels
    if classes is None:
        wanted = [int(v) for v in np.unique(labels) if v != 0]
    else:
        wanted = sorted({int(c) for c in classes if int(c) != 0})
    if not wanted:
        return out
    boxes = ndimage.find_objects(np.clip(values, 0, None)) if values.max() > 0 else []
    for c in wanted:
        if c < 1 or c > len(boxes) or boxes[c - 1] is None:
            continue  # absent
        box = boxes[c - 1]
        mask = labels[box] == c
        comp, n = ndimage.label(mask, structure=structure)
        if n <= 1:
            continue
        sizes = np.bincount(comp.ravel())
        sizes[0] = 0
        drop = mask & (comp != int(np.argmax(sizes)))
        out[box][drop] = 0
    return out
