"""lmisa.metrics against values worked out by hand, a brute-force implementation, and MONAI."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import ndimage

from lmisa.metrics import (
    dice_score,
    directed_surface_distances,
    evaluate_case,
    restrict_to_label_slices,
    structure_metrics,
    surface,
)

ISO = (1.0, 1.0, 1.0)


def cube(shape, lo, hi) -> np.ndarray:
    """Boolean box ``lo <= index < hi`` per axis (z, y, x)."""
    m = np.zeros(shape, bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return m


# ----------------------------------------------------------------------------------------- identical


def test_identical_cubes_are_perfect():
    a = cube((12, 12, 12), (2, 3, 4), (9, 10, 11))
    m = structure_metrics(a, a.copy(), spacing=(2.0, 0.7, 0.7))
    assert m == {"pred_empty": False, "ref_empty": False, "dice": 100.0, "assd_vox": 0.0, "assd_mm": 0.0, "hd95_mm": 0.0}


# ----------------------------------------------------------------------------------------- nested cubes
# Outer cube: indices 2..9 on every axis (8^3 = 512 voxels); its surface (face-connected erosion leaves
# 3..8) has 512 - 216 = 296 voxels: those with a coordinate in {2, 9}.
# Inner cube: indices 4..7 (4^3 = 64 voxels); surface 64 - 8 = 56 voxels: a coordinate in {4, 7}.
#
# inner -> outer: the nearest outer-surface voxel of p is its projection on the nearest face, at
#   min_i min(p_i - 2, 9 - p_i) voxels; per coordinate 4 -> 2, 5 -> 3, 6 -> 3, 7 -> 2, and every inner
#   surface voxel has a coordinate in {4, 7}: all 56 distances are exactly 2.
# outer -> inner: every outer-surface voxel q lies outside the inner box; the nearest inner voxel is q
#   clamped to 4..7 per axis, which lies on the inner surface. Per axis the offset a(c) is 2 for
#   c in {2, 9}, 1 for c in {3, 8}, 0 for c in 4..7. Counting by the number k of coordinates in {2, 9}:
#     k=1, others (0,0): d=2,   3*2*4*4 = 96     k=2, other 0: d=sqrt(8), 3*4*4 = 48
#     k=1, others (1,0): d=√5,  3*2*2*2*4 = 96   k=2, other 1: d=3,       3*4*2 = 24
#     k=1, others (1,1): d=√6,  3*2*2*2 = 24     k=3:          d=sqrt(12), 8
#   (96+96+24+48+24+8 = 296), sum = 264 + 96√5 + 24√6 + 96√2 + 16√3.
OUT_TO_IN_SUM = 264 + 96 * math.sqrt(5) + 24 * math.sqrt(6) + 96 * math.sqrt(2) + 16 * math.sqrt(3)


def nested():
    shape = (12, 12, 12)
    return cube(shape, (4, 4, 4), (8, 8, 8)), cube(shape, (2, 2, 2), (10, 10, 10))


def test_nested_cubes_voxel_units_by_hand():
    inner, outer = nested()
    assert surface(inner).sum() == 56 and surface(outer).sum() == 296
    d_in, d_out = directed_surface_distances(inner, outer)
    np.testing.assert_allclose(d_in, 2.0)
    assert d_out.sum() == pytest.approx(OUT_TO_IN_SUM)
    m = structure_metrics(inner, outer, ISO)
    assert m["dice"] == pytest.approx(100 * 2 * 64 / (64 + 512))  # 22.22 %
    assert m["assd_vox"] == pytest.approx((2.0 + OUT_TO_IN_SUM / 296) / 2)  # 2.18400
    assert m["assd_vox"] == pytest.approx(2.1839993151616475)
    assert m["assd_mm"] == pytest.approx(m["assd_vox"])  # unit spacing
    # union of 352 distances sorted: 2 (x152), √5 (x96), √6 (x24), √8 (x48), 3 (x24), √12 (x8);
    # the 95th percentile sits at index 0.95 * 351 = 333.45, between two 3s.
    assert m["hd95_mm"] == pytest.approx(3.0)
    # symmetric in its arguments (pred and ref swapped)
    m2 = structure_metrics(outer, inner, ISO)
    assert m2["assd_vox"] == pytest.approx(m["assd_vox"]) and m2["hd95_mm"] == pytest.approx(m["hd95_mm"])


def test_nested_cubes_anisotropic_mm():
    inner, outer = nested()
    sz, sy, sx = 2.0, 1.0, 0.5
    m = structure_metrics(inner, outer, (sz, sy, sx))
    # inner -> outer: the nearest face is always along x (0.5 mm voxels): 2 * 0.5 = 1.0 mm for the 32
    # inner-surface voxels with x in {4, 7}, 3 * 0.5 = 1.5 mm for the 24 others: mean 68/56 = 17/14.
    d_in = 17 / 14
    # outer -> inner: the same clamp argument holds for a weighted Euclidean norm; enumerate the
    # per-axis offsets of the 8 positions 2..9 of each axis, keeping the surface (a coordinate in {2, 9}).
    off = {2: 2, 3: 1, 4: 0, 5: 0, 6: 0, 7: 0, 8: 1, 9: 2}
    d_out = [
        math.sqrt((sz * off[z]) ** 2 + (sy * off[y]) ** 2 + (sx * off[x]) ** 2)
        for z, y, x in itertools.product(range(2, 10), repeat=3)
        if {z, y, x} & {2, 9}
    ]
    assert len(d_out) == 296
    assert m["assd_mm"] == pytest.approx((d_in + np.mean(d_out)) / 2)
    d_in_all = [1.0] * 32 + [1.5] * 24
    assert m["hd95_mm"] == pytest.approx(np.percentile(d_in_all + d_out, 95))
    assert m["assd_vox"] == pytest.approx(2.1839993151616475)  # spacing-free variant unchanged


# ----------------------------------------------------------------------------------------- shifted cube
# A: indices 0..9 on each axis (placed at offset 2), B: A shifted by 2 along x (axis 2).
# Dice = 2 * (10*10*8) / 2000 = 80 %. Reflecting x -> 11 - x swaps A and B, so both directed means are
# equal. S_A has 1000 - 512 = 488 voxels; per x-slice the side ring (y or z in {0, 9}) has 36 voxels:
#   x=0 face (100): 2 voxels to B's x=2 face          x=1 ring (36): 1
#   x=2..8 rings (7*36 = 252): on S_B, 0              x=9 ring (36): on S_B, 0
#   x=9 inside (64): min(2 to B's x=11 face, y, 9-y, z, 9-z): 1 for the 28 with y or z in {1, 8}, else 2
# Sum = 200 + 36 + 28 + 72 = 336 -> ASSD = 336 / 488 = 42/61 voxels.
# HD95: union = 2 x {0: 288, 1: 64, 2: 136}; index 0.95*975 = 926.25 lies among the 2s -> 2 voxels.
# With spacing (sz, sy, sx) = (3, 2, 0.5): x=0 face 1.0 mm, x=1 ring 0.5, x=9 inside min(1.0, >= 2) = 1.0,
# sum = 100 + 18 + 64 = 182 -> 182/488 = 91/244 mm; HD95: {0: 576, 0.5: 72, 1.0: 328} -> 1.0 mm.


def test_shifted_cube_by_hand():
    shape = (14, 14, 16)
    a = cube(shape, (2, 2, 2), (12, 12, 12))
    b = cube(shape, (2, 2, 4), (12, 12, 14))
    m = structure_metrics(a, b, (3.0, 2.0, 0.5))
    assert m["dice"] == pytest.approx(80.0)
    assert m["assd_vox"] == pytest.approx(42 / 61)
    assert m["assd_mm"] == pytest.approx(91 / 244)
    assert m["hd95_mm"] == pytest.approx(1.0)
    m_iso = structure_metrics(a, b, ISO)
    assert m_iso["assd_mm"] == pytest.approx(42 / 61) and m_iso["hd95_mm"] == pytest.approx(2.0)


def test_axis_order_of_spacing():
    """Spacing is (sz, sy, sx): a shift along z is scaled by sz only."""
    a = cube((16, 8, 8), (2, 2, 2), (6, 6, 6))
    b = cube((16, 8, 8), (8, 2, 2), (12, 6, 6))  # same cube 6 slices further along z
    d_ab, d_ba = directed_surface_distances(a, b, spacing=(4.0, 1.0, 1.0))
    # A's far face (z=5) is the closest to B's near face (z=8): 3 slices of 4 mm
    assert d_ab.min() == pytest.approx(12.0) and d_ba.min() == pytest.approx(12.0)
    assert structure_metrics(a, b, (4.0, 1.0, 1.0))["dice"] == 0.0


def test_mask_touching_the_image_border_has_a_surface_there():
    a = np.ones((5, 5, 5), bool)  # the whole image: medpy treats outside as background
    assert surface(a).sum() == 125 - 27
    b = cube((5, 5, 5), (1, 1, 1), (4, 4, 4))
    m = structure_metrics(a, b, ISO)
    assert np.isfinite(m["assd_vox"]) and m["dice"] == pytest.approx(100 * 2 * 27 / (125 + 27))


# ----------------------------------------------------------------------------------------- empty cases


def test_both_empty_is_perfect_and_flagged():
    z = np.zeros((6, 6, 6), bool)
    assert structure_metrics(z, z, ISO) == {
        "pred_empty": True, "ref_empty": True, "dice": 100.0, "assd_vox": 0.0, "assd_mm": 0.0, "hd95_mm": 0.0,
    }


@pytest.mark.parametrize("which", ["pred", "ref"])
def test_one_empty_gives_zero_dice_and_nan_distances(which):
    full = cube((6, 6, 6), (1, 1, 1), (4, 4, 4))
    empty = np.zeros_like(full)
    pred, ref = (empty, full) if which == "pred" else (full, empty)
    m = structure_metrics(pred, ref, ISO)
    assert m["dice"] == 0.0
    assert all(math.isnan(m[k]) for k in ("assd_vox", "assd_mm", "hd95_mm"))
    assert m["pred_empty"] is (which == "pred") and m["ref_empty"] is (which == "ref")
    with pytest.raises(ValueError, match="empty"):
        directed_surface_distances(pred, ref)


def test_evaluate_case_labels_and_empties():
    ref = np.zeros((8, 10, 10), np.uint8)
    ref[1:5, 1:5, 1:5] = 1
    ref[5:7, 6:9, 6:9] = 2
    pred = ref.copy()
    pred[pred == 2] = 0  # structure 2 missed
    pred[0, 0, 0] = 3  # a value that is not a structure of interest: ignored
    labels = {"background": 0, "a": 1, "b": 2, "c": 4}
    res = evaluate_case(pred, ref, labels, (2.0, 1.0, 1.0))
    assert list(res) == ["a", "b", "c"]  # background skipped
    assert res["a"]["dice"] == 100.0 and res["a"]["assd_mm"] == 0.0
    assert res["b"]["dice"] == 0.0 and math.isnan(res["b"]["assd_vox"]) and res["b"]["pred_empty"] and not res["b"]["ref_empty"]
    assert res["c"] == {"pred_empty": True, "ref_empty": True, "dice": 100.0, "assd_vox": 0.0, "assd_mm": 0.0, "hd95_mm": 0.0}


def test_input_checks():
    a = np.zeros((4, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="shape"):
        evaluate_case(a, np.zeros((4, 4, 5), np.uint8), {"x": 1}, ISO)
    with pytest.raises(ValueError, match="spacing"):
        evaluate_case(a, a, {"x": 1}, (1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        evaluate_case(a, a, {"x": 1}, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="integer"):
        evaluate_case(a, a, {"x": 1.5}, ISO)


# ----------------------------------------------------------------------------------------- organ_slices


def test_restrict_to_label_slices():
    ref = np.zeros((10, 6, 6), np.uint8)
    ref[3, 1:4, 1:4] = 1
    ref[6, 2:5, 2:5] = 2  # slices 4 and 5 hold no label but lie inside the range
    pred = ref.copy()
    pred[0, 0:2, 0:2] = 1  # false positives outside the organ slices
    pred[9, 0:2, 0:2] = 2
    p, r = restrict_to_label_slices(pred, ref)
    assert p.shape == r.shape == (4, 6, 6)
    np.testing.assert_array_equal(r, ref[3:7])
    np.testing.assert_array_equal(p, pred[3:7])
    labels = {"a": 1, "b": 2}
    assert evaluate_case(pred, ref, labels, ISO)["a"]["dice"] < 100
    assert all(v["dice"] == 100.0 for v in evaluate_case(p, r, labels, ISO).values())
    # only the labels asked for anchor the range
    p2, r2 = restrict_to_label_slices(pred, ref, {"b": 2})
    assert r2.shape[0] == 1 and (r2 == ref[6:7]).all()
    # no reference label at all: nothing to anchor to, volumes returned whole
    empty = np.zeros_like(ref)
    p3, r3 = restrict_to_label_slices(pred, empty)
    assert p3.shape == pred.shape and r3.shape == empty.shape


# ----------------------------------------------------------------------------------------- independent checks


def random_blob(rng, shape, threshold):
    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma=1.5)
    return field > threshold * field.std()


def brute_surface(mask):
    """A voxel is on the surface if any of its 6 face neighbours is outside the mask (or the image)."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = padded[1:-1, 1:-1, 1:-1].copy()
    for axis in range(3):
        for step in (-1, 1):
            inner &= np.roll(padded, step, axis=axis)[1:-1, 1:-1, 1:-1]
    return mask & ~inner


def brute_directed(src, dst, spacing):
    a = np.argwhere(src) * np.asarray(spacing)
    b = np.argwhere(dst) * np.asarray(spacing)
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)).min(axis=1)


@pytest.mark.parametrize("seed", range(4))
def test_against_brute_force_all_pairs(seed):
    rng = np.random.default_rng(seed)
    shape = (10, 13, 11)
    pred, ref = random_blob(rng, shape, 0.3), random_blob(rng, shape, 0.5)
    assert pred.any() and ref.any()
    spacing = (2.5, 0.9, 0.6)
    sp, sr = brute_surface(pred), brute_surface(ref)
    np.testing.assert_array_equal(surface(pred), sp)
    vox = [brute_directed(sp, sr, ISO), brute_directed(sr, sp, ISO)]
    mm = [brute_directed(sp, sr, spacing), brute_directed(sr, sp, spacing)]
    m = structure_metrics(pred, ref, spacing)
    assert m["assd_vox"] == pytest.approx((vox[0].mean() + vox[1].mean()) / 2, rel=1e-12)
    assert m["assd_mm"] == pytest.approx((mm[0].mean() + mm[1].mean()) / 2, rel=1e-12)
    assert m["hd95_mm"] == pytest.approx(np.percentile(np.concatenate(mm), 95), rel=1e-12)
    n_and = (pred & ref).sum()
    assert m["dice"] == pytest.approx(200.0 * n_and / (pred.sum() + ref.sum()))


@pytest.mark.parametrize("seed", range(3))
def test_same_as_medpy_distance_transform(seed):
    """medpy's own recipe: distance_transform_edt(~S_ref, sampling)[S_pred] on the full image."""
    rng = np.random.default_rng(100 + seed)
    pred, ref = random_blob(rng, (14, 16, 12), 0.4), random_blob(rng, (14, 16, 12), 0.4)
    spacing = (3.0, 0.8, 1.1)
    fp = ndimage.generate_binary_structure(3, 1)
    sp = pred ^ ndimage.binary_erosion(pred, structure=fp, iterations=1)
    sr = ref ^ ndimage.binary_erosion(ref, structure=fp, iterations=1)
    for sampling in (None, spacing):
        d1 = ndimage.distance_transform_edt(~sr, sampling=sampling)[sp]
        d2 = ndimage.distance_transform_edt(~sp, sampling=sampling)[sr]
        ours = directed_surface_distances(pred, ref, spacing=sampling)
        np.testing.assert_allclose(ours[0], d1, rtol=1e-12)
        np.testing.assert_allclose(ours[1], d2, rtol=1e-12)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI 1.6 deprecation inside get_edge_surface_distance
def test_monai_agreement_and_differences():
    """Dice and the directed distance sets equal MONAI's; MONAI's symmetric ASD and HD95 are different
    statistics (mean of the concatenation; max of the directed percentiles) on unequal surfaces."""
    torch = pytest.importorskip("torch")
    from monai.metrics import compute_average_surface_distance, compute_dice, compute_hausdorff_distance
    from monai.metrics.utils import get_edge_surface_distance

    rng = np.random.default_rng(7)
    pred, ref = random_blob(rng, (12, 14, 13), 0.3), random_blob(rng, (12, 14, 13), 0.6)
    t = lambda m: torch.from_numpy(m.astype(np.float32))[None, None]  # noqa: E731
    assert dice_score(pred, ref) == pytest.approx(100 * float(compute_dice(t(pred), t(ref), include_background=True)[0, 0]), rel=1e-6)

    spacing = (2.0, 0.7, 1.3)
    _, (d_pr, d_rp), _ = get_edge_surface_distance(
        torch.from_numpy(pred), torch.from_numpy(ref), spacing=spacing, symmetric=True, warn_empty=False
    )
    ours = directed_surface_distances(pred, ref, spacing=spacing)
    np.testing.assert_allclose(np.sort(ours[0]), np.sort(d_pr.numpy()), rtol=1e-5)
    np.testing.assert_allclose(np.sort(ours[1]), np.sort(d_rp.numpy()), rtol=1e-5)

    inner, outer = nested()
    ours = structure_metrics(inner, outer, ISO)
    monai_asd = float(compute_average_surface_distance(t(inner), t(outer), include_background=True, symmetric=True)[0, 0])
    assert monai_asd == pytest.approx((56 * 2.0 + OUT_TO_IN_SUM) / (56 + 296), rel=1e-5)  # mean of the concatenation
    assert abs(monai_asd - ours["assd_vox"]) > 0.1
    # HD95: medpy takes the 95th percentile of the union, MONAI the max of the directed percentiles.
    # ref = cube 2..9; pred = the same cube plus a 3x3x3 block at x = 20..22 (26 surface voxels at
    # 11, 12 (x8, the centre is interior) and 13 voxels from the cube's x = 9 face).
    ref = cube((12, 12, 26), (2, 2, 2), (10, 10, 10))
    pred = ref | cube((12, 12, 26), (2, 2, 20), (5, 5, 23))
    # directed pred -> ref: 296 zeros, 9 x 11, 8 x 12, 9 x 13; index 0.95 * 321 = 304.95 -> 11.95.
    # union (ref -> pred adds 296 zeros): index 0.95 * 617 = 586.15 lies among the 592 zeros -> 0.
    assert structure_metrics(pred, ref, ISO)["hd95_mm"] == 0.0
    monai_hd95 = float(compute_hausdorff_distance(t(pred), t(ref), include_background=True, percentile=95)[0, 0])
    assert monai_hd95 == pytest.approx(11.95, rel=1e-5)
