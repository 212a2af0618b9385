"""Tests of lmisa.mlngm against a naive per-pixel loop reference (the authors' MATLAB way).

The reference below loops over pixels in Python, as the authors' script does: explicit Sobel sums
with replicate padding, then for every pixel the clipped 3x3 (or 1x3x3 / 3x3x3) window, its
min/max/sample std. Only the resizes use torch ``F.interpolate`` (area down, bilinear/trilinear up,
``align_corners=False``), which the specification pins. ``benchmarks/bench_mlngm.py`` imports
``naive_mlngm`` from here to time it against the vectorised version.
"""

from __future__ import annotations

import doctest
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lmisa.mlngm as mlngm_module
from lmisa.mlngm import local_normalise, mlngm, mlngm_volume, sobel_magnitude

SMOOTH = (1.0, 2.0, 1.0)
DERIV = (-1.0, 0.0, 1.0)


# --------------------------------------------------------------------------------------------------
# naive reference: explicit loops over pixels
# --------------------------------------------------------------------------------------------------
def _sobel_kernels(dims: int) -> list[np.ndarray]:
    """One 3^dims kernel per axis: derivative along that axis, smoothing along the others."""
    kernels = []
    for axis in range(dims):
        k = np.ones([3] * dims)
        for a in range(dims):
            shape = [1] * dims
            shape[a] = 3
            k = k * np.reshape(DERIV if a == axis else SMOOTH, shape)
        kernels.append(k)
    return kernels


def naive_sobel(img: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude, per pixel, replicate padding (index clipping)."""
    kernels = _sobel_kernels(img.ndim)
    out = np.zeros(img.shape)
    offsets = list(itertools.product((-1, 0, 1), repeat=img.ndim))
    for idx in np.ndindex(*img.shape):
        grads = [0.0] * img.ndim
        for off in offsets:
            src = tuple(min(max(i + o, 0), n - 1) for i, o, n in zip(idx, off, img.shape))
            v = img[src]
            for a, k in enumerate(kernels):
                grads[a] += k[tuple(o + 1 for o in off)] * v
        out[idx] = math.sqrt(sum(g * g for g in grads))
    return out


def naive_local_normalise(g: np.ndarray, window: tuple[int, ...]) -> np.ndarray:
    """Per pixel: clipped window, (g - min) / (max - min), 0 where std(window) < std(g) / 1000."""
    thr = g.std(ddof=1) / 1000 if g.size > 1 else 0.0
    half = [w // 2 for w in window]
    out = np.zeros(g.shape)
    for idx in np.ndindex(*g.shape):
        sl = tuple(slice(max(0, i - h), i + h + 1) for i, h in zip(idx, half))
        w = g[sl]
        lo, hi = w.min(), w.max()
        sd = w.std(ddof=1) if w.size > 1 else 0.0
        if sd < thr or hi == lo:
            out[idx] = 0.0
        else:
            out[idx] = (g[idx] - lo) / (hi - lo)
    return out


def naive_mlngm(img: np.ndarray, levels: int = 4, window3d: bool = False) -> np.ndarray:
    """MLNGM of one 2D image or 3D volume, float64, with per-pixel loops (slow: small inputs only)."""
    img = np.asarray(img, dtype=np.float64)
    dims = img.ndim
    window = (3, 3) if dims == 2 else ((3, 3, 3) if window3d else (1, 3, 3))
    up = "bilinear" if dims == 2 else "trilinear"
    t = torch.from_numpy(img)[None, None]
    total = np.zeros(img.shape)
    for level in range(levels):
        size = tuple(max(1, round(n * 2.0**-level)) for n in img.shape)
        small = img if level == 0 else F.interpolate(t, size=size, mode="area")[0, 0].numpy()
        n_l = naive_local_normalise(naive_sobel(small), window)
        if level > 0:
            n_l = F.interpolate(torch.from_numpy(n_l)[None, None], size=img.shape, mode=up,
                                align_corners=False)[0, 0].numpy()
        total += n_l
    lo, hi = total.min(), total.max()
    return (total - lo) / (hi - lo) if hi > lo else np.zeros(img.shape)


# --------------------------------------------------------------------------------------------------
# agreement with the reference
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(17, 23), (32, 32), (9, 5)])
def test_matches_naive_reference_2d(shape):
    rng = np.random.default_rng(sum(shape))
    img = rng.normal(size=shape)
    img[: shape[0] // 3, : shape[1] // 3] = 2.0  # a flat patch: zeros, window-threshold cases
    out = mlngm(img, levels=4)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, naive_mlngm(img, levels=4), atol=1e-5, rtol=0)


def test_matches_naive_reference_2d_structured():
    y, x = np.mgrid[:20, :26].astype(np.float64)
    img = ((x - 12) ** 2 + (y - 9) ** 2 < 40) * 5.0 + 0.1 * x  # a disc on a ramp
    np.testing.assert_allclose(mlngm(img, levels=3), naive_mlngm(img, levels=3), atol=1e-5, rtol=0)


@pytest.mark.parametrize("window3d", [False, True])
def test_matches_naive_reference_3d(window3d):
    rng = np.random.default_rng(3)
    vol = rng.normal(size=(6, 10, 12))
    out = mlngm(vol, levels=4, dims=3, window3d=window3d)
    ref = naive_mlngm(vol, levels=4, window3d=window3d)
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=0)


def test_3d_window_modes_differ():
    vol = np.random.default_rng(4).normal(size=(6, 10, 12))
    assert not np.allclose(mlngm(vol, dims=3), mlngm(vol, dims=3, window3d=True))


def test_building_blocks_match_torch_pooling_and_conv():
    """The separable shifted-view code equals conv / max_pool / avg_pool(count_include_pad=False)."""
    torch.manual_seed(0)
    x = torch.randn(3, 1, 13, 17, dtype=torch.float64)
    k = torch.tensor(SMOOTH, dtype=torch.float64)[:, None] * torch.tensor(DERIV, dtype=torch.float64)
    w = torch.stack([k, k.T])[:, None]  # d/dx, d/dy
    ref = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), w).square().sum(1, keepdim=True).sqrt()
    torch.testing.assert_close(sobel_magnitude(x, 2), ref)

    v = torch.randn(2, 1, 5, 7, 6, dtype=torch.float64)
    ws = [torch.from_numpy(k) for k in _sobel_kernels(3)]
    ref3 = F.conv3d(F.pad(v, (1,) * 6, mode="replicate"), torch.stack(ws)[:, None])
    torch.testing.assert_close(sobel_magnitude(v, 3), ref3.square().sum(1, keepdim=True).sqrt())

    reduce = mlngm_module._window_reduce
    torch.testing.assert_close(reduce(x, (2, 3), torch.maximum), F.max_pool2d(x, 3, 1, 1))
    torch.testing.assert_close(reduce(x, (2, 3), torch.minimum), -F.max_pool2d(-x, 3, 1, 1))
    count = mlngm_module._window_count(x.shape, (2, 3), x)
    torch.testing.assert_close(reduce(x, (2, 3), torch.add) / count,
                               F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
    for kernel, axes in (((3, 3, 3), (2, 3, 4)), ((1, 3, 3), (3, 4))):
        pad = tuple(k // 2 for k in kernel)
        torch.testing.assert_close(reduce(v, axes, torch.maximum), F.max_pool3d(v, kernel, 1, pad))
        count = mlngm_module._window_count(v.shape, axes, v)
        torch.testing.assert_close(reduce(v, axes, torch.add) / count,
                                   F.avg_pool3d(v, kernel, 1, pad, count_include_pad=False))


def test_flatness_threshold_uses_sample_std():
    """The window test compares the ddof=1 variance with the threshold (>= keeps, < zeroes)."""
    g = torch.tensor([[1.0, 2.0, 4.0], [0.5, 3.0, 2.5], [1.5, 0.0, 2.0]], dtype=torch.float64)[None, None]
    v = g.flatten()
    var1, var0 = v.var(correction=1).item(), v.var(correction=0).item()  # centre window = all 9
    expected = (3.0 - 0.0) / (4.0 - 0.0)
    for thr2, centre in ((0.5 * (var0 + var1), expected), (var1 * (1 - 1e-9), expected),
                         (var1 * (1 + 1e-9), 0.0)):
        out = local_normalise(g, torch.tensor(thr2, dtype=torch.float64), (2, 3))
        assert out[0, 0, 1, 1].item() == pytest.approx(centre)


def test_global_threshold_is_sample_std_over_1000():
    g = torch.rand(2, 1, 5, 7, dtype=torch.float64) * 10
    ref = [(item.numpy().std(ddof=1) / 1000) ** 2 for item in g]
    centred, thr2 = mlngm_module._centre_and_threshold(g.clone(), 2)
    np.testing.assert_allclose(thr2.flatten().numpy(), ref, rtol=1e-12)
    torch.testing.assert_close(centred, g - g.mean(dim=(2, 3), keepdim=True))
    _, thr2 = mlngm_module._centre_and_threshold(torch.ones(1, 1, 1, 1, dtype=torch.float64), 2)
    assert thr2.item() == 0.0


def test_local_normalise_flat_window_and_tiny_images():
    g = torch.zeros(1, 1, 4, 5, dtype=torch.float64)
    g[0, 0, 0, 0] = 1.0
    out = local_normalise(g, torch.tensor(0.0, dtype=torch.float64), (2, 3))
    ref = naive_local_normalise(g[0, 0].numpy(), (3, 3))
    np.testing.assert_allclose(out[0, 0].numpy(), ref)
    for shape in [(1, 1), (1, 5), (2, 2), (3, 3), (4, 4)]:
        img = np.random.default_rng(0).normal(size=shape)
        out = mlngm(img, levels=4)
        assert np.isfinite(out).all()
        np.testing.assert_allclose(out, naive_mlngm(img, levels=4), atol=1e-5, rtol=0)


# --------------------------------------------------------------------------------------------------
# contract: range, degenerate input, errors, types and shapes
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,dims", [((40, 30), 2), ((4, 24, 20), 2), ((8, 24, 20), 3)])
def test_output_range(shape, dims):
    x = np.random.default_rng(1).gamma(2.0, 50.0, size=shape).astype(np.float32)
    out = mlngm(x, dims=dims)
    assert out.dtype == np.float32 and out.shape == shape
    assert out.min() >= 0.0 and out.max() <= 1.0
    if dims == 2 and len(shape) == 3:  # every slice is min-max normalised on its own
        assert np.allclose(out.reshape(shape[0], -1).max(1), 1.0)
        assert np.allclose(out.reshape(shape[0], -1).min(1), 0.0)
    else:
        assert out.max() == pytest.approx(1.0) and out.min() == pytest.approx(0.0)


@pytest.mark.parametrize("shape,dims,window3d", [((16, 16), 2, False), ((3, 16, 16), 2, False),
                                                 ((5, 16, 16), 3, False), ((5, 16, 16), 3, True)])
def test_constant_image_gives_zeros(shape, dims, window3d):
    for value in (0.0, 7.5, -3e6):
        out = mlngm(np.full(shape, value, np.float32), dims=dims, window3d=window3d)
        assert not np.isnan(out).any() and (out == 0).all()


def test_constant_slice_in_a_volume_gives_zeros_only_there():
    vol = np.random.default_rng(2).normal(size=(3, 16, 16)).astype(np.float32)
    vol[1] = 4.0
    out = mlngm(vol, dims=2)
    assert (out[1] == 0).all() and out[0].max() == 1.0 and out[2].max() == 1.0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_raises(bad):
    img = np.ones((8, 8), np.float32)
    img[3, 4] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        mlngm(img)
    with pytest.raises(ValueError, match="NaN or Inf"):
        mlngm(torch.from_numpy(img[None]), dims=3)
    with pytest.raises(ValueError, match="NaN or Inf"):
        mlngm_volume(img[None])


@pytest.mark.parametrize("shape,kwargs", [
    ((8,), {}), ((8, 8), {"dims": 3}), ((2, 2, 8, 8), {}), ((2, 1, 4, 8, 8), {}), ((1, 8, 8), {"dims": 4}),
    ((2, 8, 8, 8), {"dims": 3}), ((2, 2, 4, 8, 8), {"dims": 3}), ((8, 8), {"window3d": True}),
    ((8, 8), {"levels": 0}), ((0, 8), {}), ((8, 8), {"levels": 1.5}),
])
def test_bad_shapes_and_options_raise(shape, kwargs):
    with pytest.raises(ValueError):
        mlngm(np.zeros(shape, np.float32), **kwargs)


def test_complex_and_non_array_inputs_raise():
    with pytest.raises(ValueError):
        mlngm(np.zeros((4, 4), np.complex64))
    with pytest.raises(TypeError):
        mlngm([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(ValueError):
        mlngm_volume(np.zeros((4, 4), np.float32))


def test_types_and_dtypes():
    img = np.random.default_rng(5).uniform(0, 255, size=(20, 24))
    ref64 = mlngm(img)
    assert isinstance(ref64, np.ndarray) and ref64.dtype == np.float64
    for src, dtype in ((img.astype(np.float32), np.float32), (img.astype(np.uint8), np.float32),
                       (img.astype(np.int16), np.float32), (img.astype(np.float16), np.float32)):
        out = mlngm(src)
        assert isinstance(out, np.ndarray) and out.dtype == dtype and out.shape == img.shape
    t = torch.from_numpy(img.astype(np.float32))
    out_t = mlngm(t)
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
    assert out_t.device == t.device and out_t.shape == t.shape
    np.testing.assert_allclose(out_t.numpy(), ref64, atol=1e-4)
    assert mlngm(torch.from_numpy(img)).dtype == torch.float64
    # views with negative strides and read-only arrays are fine, and the input is never modified
    flipped = img[::-1, ::-1]
    np.testing.assert_allclose(mlngm(flipped), mlngm(flipped.copy()))
    big_endian = img.astype(">f4")
    np.testing.assert_array_equal(mlngm(big_endian), mlngm(img.astype(np.float32)))
    ro = img.copy()
    ro.setflags(write=False)
    np.testing.assert_array_equal(mlngm(ro), ref64)
    np.testing.assert_array_equal(ro, img)


def test_float32_is_accurate_with_large_offsets():
    """Centring the input keeps float32 close to float64 for images far from zero."""
    rng = np.random.default_rng(6)
    y, x = np.mgrid[:48, :48].astype(np.float64)
    for img in (1e6 + rng.normal(0, 1, (48, 48)), 1e3 * x + rng.normal(0, 0.1, (48, 48))):
        img32 = img.astype(np.float32)
        np.testing.assert_allclose(mlngm(img32), mlngm(img32.astype(np.float64)), atol=1e-3)


def test_volume_dims2_equals_stacked_slices_and_batches():
    vol = np.random.default_rng(7).normal(size=(5, 18, 22)).astype(np.float32)
    stacked = np.stack([mlngm(s) for s in vol])
    np.testing.assert_allclose(mlngm(vol, dims=2), stacked, atol=1e-6)
    batch = mlngm(torch.from_numpy(vol)[:, None])
    assert batch.shape == (5, 1, 18, 22)
    np.testing.assert_allclose(batch[:, 0].numpy(), stacked, atol=1e-6)
    np.testing.assert_allclose(mlngm_volume(vol, chunk=2), stacked, atol=1e-6)
    np.testing.assert_allclose(mlngm_volume(vol, dims=3), mlngm(vol, dims=3), atol=1e-6)


def test_batched_3d_equals_single_volumes():
    vols = torch.from_numpy(np.random.default_rng(8).normal(size=(2, 1, 6, 12, 10)).astype(np.float32))
    out = mlngm(vols, dims=3, window3d=True)
    assert out.shape == vols.shape
    for i in range(2):
        torch.testing.assert_close(out[i, 0], mlngm(vols[i, 0], dims=3, window3d=True))


@pytest.mark.parametrize("dims,window3d", [(2, False), (3, False), (3, True)])
def test_chunking_does_not_change_results(monkeypatch, dims, window3d):
    """Chunks of slices (2D) and z-slabs (3D) give the result of one piece."""
    vol = np.random.default_rng(9).normal(size=(11, 16, 20)).astype(np.float32)
    whole = mlngm(vol, dims=dims, window3d=window3d)
    monkeypatch.setattr(mlngm_module, "_CPU_CHUNK_VOXELS", 3 * 16 * 20)  # 3 slices, then slabs of 4
    np.testing.assert_allclose(mlngm(vol, dims=dims, window3d=window3d), whole, atol=1e-6)


def test_thread_setting_is_restored_and_workers_need_no_grad(monkeypatch):
    monkeypatch.setattr(mlngm_module, "_CPU_CHUNK_VOXELS", 2 * 16 * 16)  # several chunks: workers
    threads = torch.get_num_threads()
    vol = torch.rand(7, 16, 16, requires_grad=True)
    for dims in (2, 3):
        out = mlngm(vol, dims=dims)
        assert not out.requires_grad and out.grad_fn is None
        assert torch.get_num_threads() == threads
    with pytest.raises(ValueError):
        mlngm(torch.full((7, 16, 16), float("nan")))
    assert torch.get_num_threads() == threads


def test_result_can_enter_autograd():
    """Computed under no_grad, not inference_mode: the output can feed a trained network."""
    x = torch.rand(1, 1, 16, 16, requires_grad=True)
    out = mlngm(x)
    assert not out.requires_grad
    w = torch.ones(1, 1, 3, 3, requires_grad=True)
    F.conv2d(out, w).sum().backward()
    assert w.grad is not None


def test_module_docstring_example_runs():
    result = doctest.testmod(mlngm_module, verbose=False)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    vol = torch.from_numpy(np.random.default_rng(10).normal(size=(6, 40, 36)).astype(np.float32))
    for dims, w3 in ((2, False), (3, False), (3, True)):
        gpu = mlngm(vol.cuda(), dims=dims, window3d=w3)
        assert gpu.is_cuda
        torch.testing.assert_close(gpu.cpu(), mlngm(vol, dims=dims, window3d=w3), atol=1e-5, rtol=0)
    np.testing.assert_allclose(mlngm_volume(vol.numpy(), device="cuda", chunk=4), mlngm(vol.numpy()),
                               atol=1e-5)
    bad = vol.cuda()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        mlngm(bad)


# --------------------------------------------------------------------------------------------------
# real data
# --------------------------------------------------------------------------------------------------
@pytest.mark.real_data
def test_real_ct_and_mr_slices(abdomen):
    from scipy import ndimage

    from lmisa.io import read_image

    ct = abdomen / "CT_BTCV" / "imagesTr" / "sabs_01_0000.nii.gz"
    mr = sorted((abdomen / "MR_CHAOS_T2" / "imagesTr").glob("*.nii.gz"))[0]
    for path in (ct, mr):
        vol = read_image(path).array
        mid = vol.shape[0] // 2
        slices = vol[mid - 1 : mid + 2]
        out = mlngm(slices, dims=2)
        assert out.shape == slices.shape and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
        for raw, m in zip(slices.astype(np.float64), out):
            grad = np.hypot(ndimage.sobel(raw, 0, mode="nearest"), ndimage.sobel(raw, 1, mode="nearest"))
            edges = grad > np.percentile(grad, 90)
            quiet = grad <= np.percentile(grad, 50)
            # high along organ and body borders, low where the raw image hardly changes
            assert m[edges].mean() > 1.4 * m.mean(), path.name
            assert m[edges].mean() > 1.8 * m[quiet].mean(), path.name
            if path == ct:
                # air outside the body is clipped to one value: where the raw slice is constant over
                # a 65x65 neighbourhood (the support of all 4 levels), MLNGM is exactly zero
                flat = ndimage.maximum_filter(raw, 65, mode="nearest") == ndimage.minimum_filter(
                    raw, 65, mode="nearest")
                assert flat.sum() > 1000
                assert (m[flat] == 0).all()


def test_mlngm_channels_is_mlngm_of_every_channel_on_its_own() -> None:
    from lmisa.mlngm import mlngm_channels

    x = torch.rand(3, 2, 20, 24)
    expected = mlngm(x.reshape(6, 1, 20, 24), levels=3).reshape(x.shape)
    torch.testing.assert_close(mlngm_channels(x, levels=3), expected, rtol=0, atol=0)
    v = torch.rand(2, 1, 6, 16, 16)
    torch.testing.assert_close(mlngm_channels(v, levels=2, dims=3), mlngm(v, levels=2, dims=3), rtol=0, atol=0)
    with pytest.raises(ValueError, match="B, C"):
        mlngm_channels(x[0])
