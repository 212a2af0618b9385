"""Per-structure segmentation metrics as the cross-modality literature reports them.

For one structure (one label value) of a predicted label map ``pred`` and a reference ``ref``
(``(Z, Y, X)`` arrays, voxel spacing ``(sz, sy, sx)`` in mm):

``dice``
    ``100 * 2|P & R| / (|P| + |R|)``, in percent, from exact integer voxel counts. This is exactly
    ``monai.metrics.compute_dice`` (the tests check it), counted with numpy because MONAI's float
    tensor path was half of the whole metric time per case (see ``dice_score``).
``assd_vox``
    Average symmetric surface distance in voxel units, as medpy's ``medpy.metric.binary.assd``
    with no ``voxelspacing`` (what SIFA and the papers that copy its evaluation report):
    ``(mean(d(S_P -> S_R)) + mean(d(S_R -> S_P))) / 2``, the mean of the two *directed* average
    surface distances.
``assd_mm``
    The same with the voxel spacing (millimetres).
``hd95_mm``
    95th percentile Hausdorff distance in mm as medpy's ``hd95``: ``np.percentile`` (linear
    interpolation) of the *union* of both directed distance sets.

Surfaces and distances follow medpy exactly: the surface of a mask ``M`` is
``M ^ binary_erosion(M, generate_binary_structure(ndim, 1))`` (face connectivity, voxels outside
the image count as background, so a mask touching the image border has a surface there), and
``d(S_A -> S_B)`` is, for every voxel of ``S_A``, the Euclidean distance (scaled by the spacing
for the mm variants) to the nearest voxel of ``S_B``. medpy reads it from
``scipy.ndimage.distance_transform_edt(~S_B, sampling=...)[S_A]``; here an exact nearest-neighbour
query on a k-d tree of the surface voxel centres (``scipy.spatial.cKDTree``) gives the same numbers
(the tests compare both) in a fraction of the time, since the work scales with the number of
surface voxels rather than with the volume. Both masks are first cropped to the bounding box of
``P | R`` plus a one-voxel margin (clipped at the image border), which changes neither the surfaces
nor any distance but makes the erosions cheap.

Why not MONAI for the distances: MONAI 1.6 finds the same surfaces and the same directed distance
sets, but ``compute_average_surface_distance(symmetric=True)`` returns the mean of the
*concatenation* of both sets, ``(sum d(S_P->S_R) + sum d(S_R->S_P)) / (|S_P| + |S_R|)``, which differs
from medpy's mean of the two directed means whenever ``|S_P| != |S_R|``; and
``compute_hausdorff_distance(percentile=95)`` returns the *maximum of the two directed* 95th
percentiles, not the 95th percentile of their union. Both therefore disagree with the numbers in
the literature, so the distances are computed here with scipy (medpy is not a dependency). The
tests check the directed distance sets against MONAI's ``get_edge_surface_distance`` and show the
two ASSD definitions apart on a case where the surfaces differ in size.

Empty structures (no crash, no silent NaN):

* both ``P`` and ``R`` empty (structure absent and correctly not predicted): ``dice = 100``,
  ``assd_vox = assd_mm = hd95_mm = 0``;
* exactly one of them empty (a missed structure: ``pred_empty`` and not ``ref_empty``; or a
  false positive: ``ref_empty`` and not ``pred_empty``): ``dice = 0`` and the three distances are
  ``NaN`` (undefined: there is no surface to measure to). The row carries the flags
  ``pred_empty`` / ``ref_empty`` so these cases are visible; summaries (``lmisa.evaluation``)
  average each distance only over the cases where it is defined and report that count next to
  the mean, together with the numbers of missed and false-positive cases. We do *not* substitute
  a fixed penalty such as the image diagonal: such a number depends on the field of view and would
  dominate the mean without saying why.

Example:
    >>> import numpy as np
    >>> ref = np.zeros((12, 12, 12), np.uint8); ref[2:10, 2:10, 2:10] = 1
    >>> pred = np.zeros_like(ref); pred[4:8, 4:8, 4:8] = 1
    >>> m = structure_metrics(pred == 1, ref == 1, spacing=(1.0, 1.0, 1.0))
    >>> round(m["dice"], 4), m["pred_empty"], m["ref_empty"]
    (22.2222, False, False)
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

METRIC_NAMES = ("dice", "assd_vox", "assd_mm", "hd95_mm")
FLAG_NAMES = ("pred_empty", "ref_empty")

__all__ = [
    "METRIC_NAMES",
    "FLAG_NAMES",
    "surface",
    "bounding_box",
    "directed_surface_distances",
    "dice_score",
    "structure_metrics",
    "evaluate_case",
    "restrict_to_label_slices",
]


def _check_pair(pred: np.ndarray, ref: np.ndarray) -> None:
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")


def _check_spacing(spacing: Sequence[float] | None, ndim: int) -> tuple[float, ...] | None:
    if spacing is None:
        return None
    sp = tuple(float(s) for s in spacing)
    if len(sp) != ndim:
        raise ValueError(f"spacing {sp} has {len(sp)} values for a {ndim}D array")
    if not all(math.isfinite(s) and s > 0 for s in sp):
        raise ValueError(f"spacing must be positive and finite, got {sp}")
    return sp


def surface(mask: np.ndarray) -> np.ndarray:
    """Border voxels of a boolean mask as medpy defines them: ``mask ^ erosion(mask)``, face connectivity."""
    mask = np.asarray(mask, dtype=bool)
    footprint = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask ^ ndimage.binary_erosion(mask, structure=footprint, iterations=1)


def bounding_box(mask: np.ndarray, margin: int = 1) -> tuple[slice, ...] | None:
    """Slices of the bounding box of ``mask`` grown by ``margin`` (clipped to the array); None if empty."""
    if not mask.any():
        return None
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        box.append(slice(max(int(hits[0]) - margin, 0), min(int(hits[-1]) + 1 + margin, mask.shape[axis])))
    return tuple(box)


def directed_surface_distances(
    pred_mask: np.ndarray, ref_mask: np.ndarray, spacing: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Distances from each surface voxel of ``pred_mask`` to the nearest of ``ref_mask``'s surface, and back.

    Returns ``(d_pred_to_ref, d_ref_to_pred)`` (float64, in voxel units when ``spacing`` is None,
    else in the units of ``spacing``). Both masks must be non-empty.
    """
    pred_mask = np.asarray(pred_mask, dtype=bool)
    ref_mask = np.asarray(ref_mask, dtype=bool)
    _check_pair(pred_mask, ref_mask)
    sp = _check_spacing(spacing, pred_mask.ndim)
    if not pred_mask.any() or not ref_mask.any():
        raise ValueError("surface distances are undefined when a mask is empty")
    box = bounding_box(pred_mask | ref_mask, margin=1)
    return _directed(surface(pred_mask[box]), surface(ref_mask[box]), sp)


def _directed(s_pred: np.ndarray, s_ref: np.ndarray, sampling: tuple[float, ...] | None) -> tuple[np.ndarray, np.ndarray]:
    """Exact Euclidean nearest-surface-voxel distances both ways (k-d tree over surface voxel centres).

    Gives the same numbers as medpy's ``distance_transform_edt(~S_B, sampling)[S_A]`` (the tests
    check this) at a fraction of the cost: the work scales with the number of surface voxels, not
    with the volume of the bounding box.
    """
    scale = np.ones(s_pred.ndim) if sampling is None else np.asarray(sampling, np.float64)
    a = np.argwhere(s_pred).astype(np.float64) * scale
    b = np.argwhere(s_ref).astype(np.float64) * scale
    d_to_ref = cKDTree(b, leafsize=32).query(a, k=1)[0]
    d_to_pred = cKDTree(a, leafsize=32).query(b, k=1)[0]
    return np.asarray(d_to_ref, np.float64), np.asarray(d_to_pred, np.float64)


def dice_score(pred_mask: np.ndarray, ref_mask: np.ndarray) -> float:
    """Dice in percent, ``100 * 2|P & R| / (|P| + |R|)`` from exact integer counts; 100 when both are empty.

    Same definition as ``monai.metrics.compute_dice`` (the tests check equality); counted with numpy
    because MONAI's version, through float tensor conversion, took about half of all metric time per
    case (0.9 s of 1.7 s for four abdominal-size structures) and costs a ~3 s import per worker.
    """
    pred_mask = np.asarray(pred_mask, dtype=bool)
    ref_mask = np.asarray(ref_mask, dtype=bool)
    _check_pair(pred_mask, ref_mask)
    n_pred, n_ref = int(np.count_nonzero(pred_mask)), int(np.count_nonzero(ref_mask))
    if n_pred + n_ref == 0:
        return 100.0
    inter = int(np.count_nonzero(pred_mask & ref_mask))
    return 100.0 * 2.0 * inter / (n_pred + n_ref)


def structure_metrics(
    pred_mask: np.ndarray, ref_mask: np.ndarray, spacing: Sequence[float]
) -> dict[str, float | bool]:
    """All metrics of one structure given as two boolean masks; see the module docstring for empty masks.

    Returns ``{"dice", "assd_vox", "assd_mm", "hd95_mm", "pred_empty", "ref_empty"}``.
    """
    pred_mask = np.asarray(pred_mask, dtype=bool)
    ref_mask = np.asarray(ref_mask, dtype=bool)
    _check_pair(pred_mask, ref_mask)
    sp = _check_spacing(spacing, pred_mask.ndim)
    pred_empty, ref_empty = not pred_mask.any(), not ref_mask.any()
    out: dict[str, float | bool] = {"pred_empty": pred_empty, "ref_empty": ref_empty}
    if pred_empty and ref_empty:
        out.update(dice=100.0, assd_vox=0.0, assd_mm=0.0, hd95_mm=0.0)
        return out
    if pred_empty or ref_empty:
        out.update(dice=0.0, assd_vox=math.nan, assd_mm=math.nan, hd95_mm=math.nan)
        return out
    box = bounding_box(pred_mask | ref_mask, margin=1)
    p, r = pred_mask[box], ref_mask[box]
    s_pred, s_ref = surface(p), surface(r)
    dv_pr, dv_rp = _directed(s_pred, s_ref, None)
    dm_pr, dm_rp = _directed(s_pred, s_ref, sp)
    out.update(
        dice=dice_score(p, r),
        assd_vox=float((dv_pr.mean() + dv_rp.mean()) / 2.0),
        assd_mm=float((dm_pr.mean() + dm_rp.mean()) / 2.0),
        hd95_mm=float(np.percentile(np.concatenate([dm_pr, dm_rp]), 95)),
    )
    return out


def evaluate_case(
    pred: np.ndarray, ref: np.ndarray, labels: Mapping[str, int], spacing: Sequence[float]
) -> dict[str, dict[str, float]]:
    """Metrics of every structure of ``labels`` (name -> label value; value 0, background, is skipped).

    ``pred`` and ``ref`` are integer label maps of the same shape, ``spacing`` is ``(sz, sy, sx)``.
    Returns ``{structure: {"dice", "assd_vox", "assd_mm", "hd95_mm", "pred_empty", "ref_empty"}}``
    (the flags are bools). Values of the maps that are not in ``labels`` are ignored.
    """
    pred = np.asarray(pred)
    ref = np.asarray(ref)
    _check_pair(pred, ref)
    _check_spacing(spacing, pred.ndim)
    results: dict[str, dict[str, float]] = {}
    for name, value in labels.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"label {name!r}: value must be an integer, got {value!r}")
        if int(value) == 0:
            continue
        results[name] = structure_metrics(pred == value, ref == value, spacing)  # type: ignore[assignment]
    return results


def restrict_to_label_slices(
    pred: np.ndarray, ref: np.ndarray, labels: Mapping[str, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ``organ_slices`` protocol: keep the axial slices (axis 0) from the first to the last one
    that holds any reference label (any non-zero value, or any value of ``labels`` when given).

    Slices in between that hold no label are kept (the range is contiguous). When the reference
    holds no label at all there is no range to anchor to and both volumes are returned unchanged,
    so false positives still count. Returns views of the inputs.
    """
    pred = np.asarray(pred)
    ref = np.asarray(ref)
    _check_pair(pred, ref)
    if labels is None:
        fg = ref != 0
    else:
        values = [int(v) for v in labels.values() if int(v) != 0]
        fg = np.isin(ref, values)
    per_slice = fg.reshape(fg.shape[0], -1).any(axis=1)
    hits = np.flatnonzero(per_slice)
    if hits.size == 0:
        return pred, ref
    keep = slice(int(hits[0]), int(hits[-1]) + 1)
    return pred[keep], ref[keep]
