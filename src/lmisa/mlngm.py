"""MLNGM: multi-resolution locally normalised gradient magnitude (LMISA, METHOD.md section 1).

Why: CT and MR intensities have nothing in common, but the *edges* of organs do. MLNGM maps an image
of either modality to an appearance-free edge map in [0, 1], so that one network can see both
domains through the same representation.

What, for an image ``I`` and levels ``l = 0 .. L-1``:

1. resize ``I`` to ``max(1, round(n * 2**-l))`` per axis by area averaging (level 0 is ``I``);
2. Sobel gradient magnitude ``G_l`` (standard 3x3 ``[1,2,1] x [-1,0,1]`` kernels, or the separable
   3x3x3 Sobel in 3D), with replicate padding;
3. local normalisation in a 3x3 window (1x3x3 in-plane in 3D, or 3x3x3 with ``window3d=True``)
   clipped to the image (windows at the border contain only in-image pixels):
   ``N_l = (G_l - min_W) / (max_W - min_W)``, set to 0 where the window's sample standard deviation
   (ddof=1) is below ``std(G_l, ddof=1) / 1000`` and where ``max_W == min_W`` (never 0/0);
4. resize every ``N_l`` back to full size (bilinear / trilinear, ``align_corners=False``) and sum;
5. min-max normalise the sum to [0, 1] per image (per volume in 3D); a constant image gives zeros.

The authors' MATLAB script loops over every voxel. Here everything is vectorised torch on whole
tensors (CPU or CUDA, float32, or float64 when given float64): the window min/max are max-poolings
over the clipped window, the window mean and mean of squares are average poolings with the
per-pixel in-image count (``count_include_pad=False``) and an ``N/(N-1)`` correction. The poolings
are written as separable shifted-view maxima/sums rather than ``F.max_pool2d``/``F.avg_pool2d``:
the results are the same (bit-identical for min/max; the tests check it), but on CPU
``F.max_pool2d`` with stride 1 is about 30x slower than two shifted ``torch.maximum`` passes, and
``torch.where``/``masked_fill`` on large tensors about 50x slower than a multiply, so masks are
applied arithmetically. Work is done in chunks of slices (2D) or z-slabs (3D) of about 1 M voxels
on CPU, which keeps the temporaries in cache (about 10x faster per pass than on a whole volume),
and the chunks are shared among ``torch.get_num_threads()`` worker threads that each run their
ops single-threaded (OpenMP barriers on hundreds of small ops per chunk cost 5-10x on a busy
machine; see :func:`_cpu_threads`). On CUDA the chunks are large and nothing waits for the GPU
except one NaN/Inf check at the end of the call.
Level ``l`` is pooled from level ``l-1`` when both are equal-block means of the input (sizes that
divide evenly, e.g. 512 -> 256 -> 128 -> 64): the same numbers as an area resize of the input.

Numerics: every step is invariant to a per-image shift and scale of the input, so each image is
centred and scaled to [-1, 1] first (float32 stays accurate for 1e6 + noise; squares never
overflow). The window variance from pooled moments, ``(S2 - S1^2/N) / (N-1)``, loses precision when
the window mean is large compared with its spread; the gradient is centred on its per-image mean
(shift invariant again), and the pooled variance is clamped to the interval that the window's
range ``R`` allows, ``[R^2 / (2(N-1)), N R^2 / (4(N-1))]`` (true for any N numbers with range R),
so it is never negative and never contradicts the exact min/max. The flatness rule itself is a
hard threshold: windows whose std is within float rounding of ``std / 1000`` may fall either way.

Example:
    >>> import numpy as np, torch
    >>> from lmisa.mlngm import mlngm, mlngm_volume
    >>> img = np.zeros((32, 40), np.float32); img[8:24, 10:30] = 100.0   # a bright box
    >>> out = mlngm(img)
    >>> out.shape, out.dtype, float(out.min()), float(out.max())
    ((32, 40), dtype('float32'), 0.0, 1.0)
    >>> bool(out[16, 10] > 0.5), float(out[0, 0])   # high on the edge, zero in the flat corner
    (True, 0.0)
    >>> vol = np.random.default_rng(0).normal(size=(5, 24, 24))      # (Z, Y, X), float64
    >>> mlngm(vol, dims=2).shape, mlngm(vol, dims=3, window3d=True).dtype
    ((5, 24, 24), dtype('float64'))
    >>> mlngm_volume(vol.astype(np.float32), chunk=2).shape
    (5, 24, 24)
    >>> t = mlngm(torch.rand(2, 1, 16, 16))                         # batched (N, 1, H, W) tensor
    >>> type(t).__name__, tuple(t.shape)
    ('Tensor', (2, 1, 16, 16))
"""

from __future__ import annotations

import math
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["mlngm", "mlngm_channels", "mlngm_volume"]

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

# Below this fraction of the level's global std, a window counts as flat (the authors' 1/1000).
FLAT_STD_FRACTION = 1e-3
# Voxels per chunk of slices in 2D mode. On CPU small chunks stay in cache (elementwise passes are
# ~10x faster on 1 M voxels than on 16 M); on CUDA large chunks amortise kernel launches.
_CPU_CHUNK_VOXELS = 1 << 20
_CUDA_CHUNK_VOXELS = 1 << 26


# --------------------------------------------------------------------------------------------------
# building blocks on (B, 1, *spatial) tensors
# --------------------------------------------------------------------------------------------------
def level_size(shape: Sequence[int], level: int) -> tuple[int, ...]:
    """Spatial size of resolution level ``level``: ``max(1, round(n * 2**-level))`` per axis.

    ``round`` is Python's (halves to even: 2.5 -> 2, 1.5 -> 2), as pinned by the specification.
    """
    return tuple(max(1, round(n * 2.0**-level)) for n in shape)


def _narrow3(p: torch.Tensor, axis: int, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The three shifted views ``p[i-1], p[i], p[i+1]`` of a tensor padded by one along ``axis``."""
    return p.narrow(axis, 0, n), p.narrow(axis, 1, n), p.narrow(axis, 2, n)


def _smooth(p: torch.Tensor, axis: int) -> torch.Tensor:
    """Sobel smoothing ``[1, 2, 1]`` along ``axis`` of a tensor padded there by one (shrinks it)."""
    a, b, c = _narrow3(p, axis, p.shape[axis] - 2)
    return torch.add(a, c).add_(b, alpha=2.0)


def _deriv(p: torch.Tensor, axis: int) -> torch.Tensor:
    """Sobel derivative ``[-1, 0, 1]`` along ``axis`` of a tensor padded there by one (shrinks it)."""
    a, _, c = _narrow3(p, axis, p.shape[axis] - 2)
    return torch.sub(c, a)


def _sobel_padded(p: torch.Tensor, dims: int) -> torch.Tensor:
    """Sobel gradient magnitude of a tensor already padded by one on every spatial axis."""
    # derivative first, then smoothing: differences of neighbouring values are (nearly) exact in
    # floating point, sums of large values are not (matters for images with a large offset)
    if dims == 2:  # axes: 2 = y, 3 = x
        gx = _smooth(_deriv(p, 3), 2)
        gy = _smooth(_deriv(p, 2), 3)
        return torch.hypot(gx, gy)
    # axes: 2 = z, 3 = y, 4 = x
    g = _smooth(_smooth(_deriv(p, 2), 3), 4).square_()  # d/dz
    g.add_(_smooth(_smooth(_deriv(p, 3), 2), 4).square_())  # d/dy
    g.add_(_smooth(_smooth(_deriv(p, 4), 2), 3).square_())  # d/dx
    return g.sqrt_()


def sobel_magnitude(x: torch.Tensor, dims: int) -> torch.Tensor:
    """Sobel gradient magnitude of ``(B, 1, H, W)`` (dims=2) or ``(B, 1, D, H, W)`` (dims=3).

    Standard unnormalised Sobel kernels (``[1,2,1]`` smoothing across, ``[-1,0,1]`` along each axis),
    replicate padding, computed separably on shifted views of the padded tensor. In 3D the volume
    is processed in z-slabs (each slab reads a one-slice halo of the padded volume), so that the
    temporaries stay small and in cache; the result is the same as in one piece.
    """
    p = F.pad(x, (1, 1) * dims, mode="replicate")
    if dims == 2:
        return _sobel_padded(p, 2)
    d = x.shape[2]
    step = _slab(x)
    if step >= d:
        return _sobel_padded(p, 3)
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)

    def slab(z0: int, z1: int) -> None:
        out[:, :, z0:z1] = _sobel_padded(p[:, :, z0 : z1 + 2], 3)

    _for_chunks(slab, d, step, x.device)
    return out


def _slab(x: torch.Tensor) -> int:
    """Slices per z-slab when working through a 3D volume ``(B, 1, D, H, W)`` in pieces."""
    budget = _CUDA_CHUNK_VOXELS if x.is_cuda else _CPU_CHUNK_VOXELS
    return max(4, budget // max(1, x.shape[0] * x.shape[3] * x.shape[4]))


_CPU_WORKERS = threading.local()  # .n: chunk workers of the mlngm call running in this thread


@contextmanager
def _cpu_threads(device: torch.device) -> Iterator[None]:
    """For one CPU call: run torch ops single-threaded, and chunks on parallel worker threads.

    Why: a chunk is ~200 ops of ~0.1 ms each, every OpenMP region waits for all its threads, and
    idle OpenMP threads spin between regions. On a machine whose cores are busy with other
    processes that made a 512x512x200 volume take 15-40 s instead of ~1.5 s. Instead, the caller
    and ``torch.get_num_threads()`` chunk workers (:func:`_for_chunks`) each run ops serially:
    no barriers, no spinning. The thread count is set back on exit. Side effect, for the duration
    of the call only: torch threads started elsewhere in the process meanwhile begin with one
    intra-op thread.
    """
    if device.type != "cpu" or getattr(_CPU_WORKERS, "n", None) is not None:
        yield
        return
    threads = torch.get_num_threads()
    _CPU_WORKERS.n = threads
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        _CPU_WORKERS.n = None


def _for_chunks(fn: Callable[[int, int], None], n: int, step: int, device: torch.device) -> None:
    """Call ``fn(start, stop)`` for the consecutive ranges of ``range(n)`` of length ``step``.

    ``fn`` must write disjoint outputs. Inside :func:`_cpu_threads` on CPU, the ranges are shared
    among its worker threads, which run their torch ops single-threaded; elsewhere (CUDA, or
    nested inside a worker) they run one after the other.
    """
    ranges = [(i, min(n, i + step)) for i in range(0, n, step)]
    workers = (getattr(_CPU_WORKERS, "n", None) or 1) if device.type == "cpu" else 1
    workers = min(workers, len(ranges))
    if workers <= 1:
        for a, b in ranges:
            fn(a, b)
        return

    def run(ab: tuple[int, int]) -> None:
        with torch.no_grad():  # grad mode is per thread
            fn(*ab)

    with ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        list(pool.map(run, ranges))


def _window_reduce(
    x: torch.Tensor, axes: Sequence[int], op: Callable[..., torch.Tensor]
) -> torch.Tensor:
    """Reduce with ``op`` (torch.maximum / minimum / add) over a width-3 window along each axis.

    The window is clipped to the tensor: at a border only in-range neighbours take part. This is a
    stride-1 pooling with -inf (max), +inf (min) or excluded (sum) padding, done separably.
    """
    for axis in axes:
        n = x.shape[axis]
        if n == 1:
            continue
        y = torch.empty_like(x)
        # y[0] = x[0]; y[i] = op(x[i], x[i-1]) for i >= 1; then y[i] = op(y[i], x[i+1]) for i <= n-2
        y.narrow(axis, 0, 1).copy_(x.narrow(axis, 0, 1))
        op(x.narrow(axis, 1, n - 1), x.narrow(axis, 0, n - 1), out=y.narrow(axis, 1, n - 1))
        hi = y.narrow(axis, 0, n - 1)
        op(hi, x.narrow(axis, 1, n - 1), out=hi)
        x = y
    return x


def _window_count(shape: Sequence[int], axes: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    """Number of in-image pixels of the clipped width-3 window at every position (broadcastable)."""
    count = torch.ones([1] * len(shape), dtype=like.dtype, device=like.device)
    for axis in axes:
        n = shape[axis]
        c = torch.full((n,), 3.0, dtype=like.dtype, device=like.device)
        c[0] -= 1
        c[-1] -= 1  # n == 1: 3 - 2 = 1
        view = [1] * len(shape)
        view[axis] = n
        count = count * c.view(view)
    return count


def local_normalise(
    g: torch.Tensor, thr2: torch.Tensor, window_axes: Sequence[int]
) -> torch.Tensor:
    """Local min-max normalisation of ``g`` in the clipped width-3 window over ``window_axes``.

    ``thr2`` (broadcastable, per item) is the squared flatness threshold: positions whose window
    sample variance (ddof=1) is below it, or whose window min equals max, are set to 0.
    ``g`` may be shifted by any per-item constant (all quantities are shift invariant); centring it
    on its mean keeps the pooled-moment variance accurate.
    """
    mx = _window_reduce(g, window_axes, torch.maximum)
    mn = _window_reduce(g, window_axes, torch.minimum)
    s1 = _window_reduce(g, window_axes, torch.add)
    s2 = _window_reduce(g * g, window_axes, torch.add)
    n = _window_count(g.shape, window_axes, g)  # small: (1, 1, *spatial)
    inv_nm1 = (n > 1).to(g.dtype) / (n - 1).clamp_min(1)  # 1/(N-1), 0 for a 1-pixel window
    # sample variance from the pooled moments: (S2 - S1^2 / N) / (N - 1)
    var = s2.sub_(s1.square_().div_(n)).mul_(inv_nm1)
    rng = mx.sub_(mn)  # mx is not used again
    r2 = rng.square()
    # any N numbers with range R have R^2/(2(N-1)) <= sample variance <= N R^2 / (4(N-1))
    var = torch.maximum(var, r2 * (0.5 * inv_nm1), out=var)
    var = torch.minimum(var, r2.mul_(0.25 * n * inv_nm1), out=var)
    # keep = 1 where var >= thr2 else 0, and scale = keep / range. Written with arithmetic only:
    # torch.where / masked_fill on large CPU tensors are ~50x slower than add or mul. Where the
    # range is 0 the window is constant, so g - min is exactly 0 and the (huge, finite) scale
    # 1/tiny does no harm.
    keep = var.sub_(thr2).sign_().add_(1.0).clamp_max_(1.0)
    scale = keep.div_(rng.clamp_min_(torch.finfo(g.dtype).tiny))
    return scale.mul_(g - mn)


def _centre_and_threshold(g: torch.Tensor, dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre every item of ``g`` on its mean (in place) and return the squared flatness threshold.

    The threshold is ``(std(g, ddof=1) * FLAT_STD_FRACTION)**2`` per item (0 for a 1-pixel item).
    """
    spatial = tuple(range(2, 2 + dims))
    count = math.prod(g.shape[2:])
    g = g.sub_(g.mean(dim=spatial, keepdim=True))  # centred: see local_normalise
    gvar = torch.linalg.vector_norm(g, dim=spatial, keepdim=True).square_() / max(count - 1, 1)
    return g, gvar.mul_(FLAT_STD_FRACTION**2)


def _lngm_level(y: torch.Tensor, dims: int, window_axes: Sequence[int]) -> torch.Tensor:
    """Locally normalised gradient magnitude of one resolution level ``y`` (B, 1, *spatial)."""
    g, thr2 = _centre_and_threshold(sobel_magnitude(y, dims), dims)
    d = g.shape[2]
    step = _slab(g) if dims == 3 else d
    if step >= d:
        return local_normalise(g, thr2, window_axes)
    # 3D: z-slabs with a one-slice halo when the window spans z (the halo is cropped again)
    halo = 1 if 2 in window_axes else 0
    out = torch.empty_like(g)

    def slab(z0: int, z1: int) -> None:
        a, b = max(0, z0 - halo), min(d, z1 + halo)
        out[:, :, z0:z1] = local_normalise(g[:, :, a:b], thr2, window_axes)[:, :, z0 - a : z1 - a]

    _for_chunks(slab, d, step, g.device)
    return out


def _minmax_(s: torch.Tensor, dims: int) -> torch.Tensor:
    """In-place min-max of every item of ``s`` (B, 1, *spatial) to [0, 1]; constant items give 0."""
    spatial = tuple(range(2, 2 + dims))
    lo = s.amin(dim=spatial, keepdim=True)
    rng = s.amax(dim=spatial, keepdim=True).sub_(lo)
    # a division (not a multiply by 1/range): exactly 1 at the maximum, never above; a constant
    # item has s - lo == 0 everywhere and gets 0 / 1
    return s.sub_(lo).div_(torch.where(rng > 0, rng, torch.ones_like(rng)))  # small where: per item


def _mlngm_batch(x: torch.Tensor, levels: int, dims: int, window3d: bool) -> torch.Tensor:
    """MLNGM of a float batch ``(B, 1, *spatial)``: the whole pipeline, per item."""
    full = tuple(x.shape[2:])
    spatial = tuple(range(2, 2 + dims))
    # Every step is invariant to adding a constant to an item and to scaling it. Centring keeps
    # float32 accurate for images with a large offset (1e6 + noise: in the area means and the
    # Sobel sums), scaling to [-1, 1] keeps the squares in the variances from over/underflowing.
    x = x - x.mean(dim=spatial, keepdim=True)
    peak = torch.linalg.vector_norm(x, ord=math.inf, dim=spatial, keepdim=True)
    x.mul_(torch.where(peak > 0, 1.0 / peak, torch.ones_like(peak)))
    window_axes = (2, 3) if dims == 2 else ((2, 3, 4) if window3d else (3, 4))
    acc = _lngm_level(x, dims, window_axes)
    prev, prev_size = x, full
    for level in range(1, levels):
        size = level_size(full, level)
        y = _area_resize(x, prev, prev_size, size)
        if all(n % m == 0 for n, m in zip(full, size)):
            prev, prev_size = y, size  # a block mean of x: the next level can start from it
        _upsample_add_(acc, _lngm_level(y, dims, window_axes), dims)
    return _minmax_(acc, dims)


def _area_resize(
    x: torch.Tensor, prev: torch.Tensor, prev_size: tuple[int, ...], size: tuple[int, ...]
) -> torch.Tensor:
    """Area resize of ``x`` to ``size`` (``F.interpolate(mode="area")``, exactly).

    ``prev`` is an earlier level that is a mean over equal blocks of ``x``. When the new size
    divides it evenly, the new level is the mean of equal blocks of ``prev`` (a mean of equal-size
    means is the overall mean): a cheap ``avg_pool`` from the previous level instead of a pass
    over the full-resolution input. Otherwise it is computed from ``x``.
    """
    full = tuple(x.shape[2:])
    if size == full:
        return x
    if all(n % m == 0 for n, m in zip(full, size)) and all(p % m == 0 for p, m in zip(prev_size, size)):
        kernel = tuple(p // m for p, m in zip(prev_size, size))
        pool = F.avg_pool2d if len(size) == 2 else F.avg_pool3d
        return pool(prev, kernel, kernel)
    return F.interpolate(x, size=size, mode="area")


def _linear_weights(n_in: int, n_out: int, device: torch.device, dtype: torch.dtype):
    """Indices and weights of 1D linear resizing, ``align_corners=False``, as torch computes them."""
    dst = torch.arange(n_out, device=device, dtype=torch.float64)
    src = ((dst + 0.5) * (n_in / n_out) - 0.5).clamp_min_(0.0)
    i0 = src.floor().clamp_max_(n_in - 1)
    l1 = (src - i0).clamp_(0.0, 1.0)
    i0 = i0.long()
    i1 = torch.where(i0 < n_in - 1, i0 + 1, i0)
    return i0, i1, (1.0 - l1).to(dtype), l1.to(dtype)


def _upsample_add_(acc: torch.Tensor, n: torch.Tensor, dims: int) -> torch.Tensor:
    """``acc += resize(n, acc's size)``: bilinear (2D) / trilinear (3D), ``align_corners=False``.

    In 3D the trilinear resize is done separably (it is a tensor product of 1D linear resizes): the
    small level is first resized along z, then every z-slab of the output gets its in-plane bilinear
    resize and is added at once, so that no full-size temporary is made (about 4x faster on CPU).
    """
    full = tuple(acc.shape[2:])
    if tuple(n.shape[2:]) == full:
        return acc.add_(n)
    if dims == 2:
        return acc.add_(F.interpolate(n, size=full, mode="bilinear", align_corners=False))
    d_in, d_out = n.shape[2], full[0]
    if d_in != d_out:
        i0, i1, w0, w1 = _linear_weights(d_in, d_out, n.device, n.dtype)
        shape = (1, 1, d_out, 1, 1)
        n = n.index_select(2, i0).mul_(w0.view(shape)).add_(n.index_select(2, i1).mul_(w1.view(shape)))

    def slab(z0: int, z1: int) -> None:
        plane = F.interpolate(n[:, 0, z0:z1], size=full[1:], mode="bilinear", align_corners=False)
        acc[:, :, z0:z1].add_(plane.unsqueeze(1))

    _for_chunks(slab, d_out, _slab(acc), acc.device)
    return acc


# --------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------
def _as_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A torch view of ``x`` (numpy arrays are shared, not copied, when their layout allows)."""
    if isinstance(x, torch.Tensor):
        return x
    if not isinstance(x, np.ndarray):
        raise TypeError(f"mlngm expects a numpy array or a torch tensor, got {type(x).__name__}")
    if x.dtype.kind not in "biuf":
        raise ValueError(f"mlngm expects a real-valued image, got dtype {x.dtype}")
    if not x.dtype.isnative:  # e.g. big-endian data straight from a file
        x = x.astype(x.dtype.newbyteorder("="))
    if any(s < 0 for s in x.strides):
        x = np.ascontiguousarray(x)
    with warnings.catch_warnings():  # read-only arrays: we never write into the input
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(x)


def _batch_view(t: torch.Tensor, dims: int, window3d: bool) -> torch.Tensor:
    """View ``t`` as ``(B, 1, *spatial)``: 2D slices of a volume, or batch items, become B."""
    if dims not in (2, 3):
        raise ValueError(f"mlngm: dims must be 2 or 3, got {dims!r}")
    if window3d and dims != 3:
        raise ValueError("mlngm: window3d=True needs dims=3 (a 3D window over a 3D gradient)")
    shape = tuple(t.shape)
    if dims == 2 and t.ndim == 2:
        return t.reshape(1, 1, *shape)
    if dims == 2 and t.ndim == 3:
        return t.unsqueeze(1)
    if dims == 2 and t.ndim == 4 and shape[1] == 1:
        return t
    if dims == 3 and t.ndim == 3:
        return t.reshape(1, 1, *shape)
    if dims == 3 and t.ndim == 5 and shape[1] == 1:
        return t
    allowed = "(H, W), (D, H, W) or (N, 1, H, W)" if dims == 2 else "(D, H, W) or (N, 1, D, H, W)"
    raise ValueError(f"mlngm: with dims={dims} the input must be {allowed}, got shape {shape}")


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    if t.is_complex():
        raise ValueError(f"mlngm expects a real-valued image, got dtype {t.dtype}")
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def mlngm(x: ArrayT, levels: int = 4, dims: int = 2, window3d: bool = False, check_finite: bool = True) -> ArrayT:
    """Multi-resolution locally normalised gradient magnitude of an image, volume or batch.

    Args:
        x: a numpy array or torch tensor (any real dtype), one of
            ``(H, W)``; ``(D, H, W)`` with ``dims=2`` (every slice on its own, as in a 2D network)
            or ``dims=3`` (one volume: 3D Sobel, 3D resizing); ``(N, 1, H, W)`` with ``dims=2``;
            ``(N, 1, D, H, W)`` with ``dims=3``.
        levels: number of resolution levels L (level l is the image resized by 2**-l).
        dims: 2 for the 2D definition, 3 for the 3D one.
        window3d: 3D only: local normalisation in a full 3x3x3 window instead of the in-plane
            1x3x3 window of the authors' code.
        check_finite: raise on NaN/Inf input. Off, nothing waits for the GPU (for inputs that are
            finite by construction, inside a training step).

    Returns:
        The map in [0, 1] with the shape of ``x`` and its container type: numpy in, numpy out;
        tensor in, tensor out on the same device. float64 in gives float64, anything else float32.
        Each image (2D) or volume (3D) is min-max normalised on its own; a constant one gives zeros.

    Raises:
        ValueError: NaN or Inf in ``x``, an empty or complex input, ``levels < 1``, or a shape that
            does not fit ``dims`` (or ``window3d`` without ``dims=3``).

    On CUDA the work is queued without host synchronisation except one at the very end, for the
    NaN/Inf check. On CPU the call uses ``torch.get_num_threads()`` worker threads (each running
    ops single-threaded) and sets the torch thread count back when it returns. Runs under ``torch.no_grad`` (not ``inference_mode``, so that the result can
    feed a network that is being trained).
    """
    if int(levels) != levels or levels < 1:
        raise ValueError(f"mlngm: levels must be a positive integer, got {levels!r}")
    levels = int(levels)
    t = _as_tensor(x)
    xb = _batch_view(t, dims, window3d)
    if xb.numel() == 0:
        raise ValueError(f"mlngm: empty input of shape {tuple(t.shape)}")
    dtype = _compute_dtype(xb)
    check_late = xb.is_cuda  # keep the queue going on CUDA: one sync at the end
    with torch.no_grad(), _cpu_threads(xb.device):
        if check_finite and xb.is_floating_point():
            finite = torch.isfinite(xb).all()
            if not check_late and not bool(finite):
                raise ValueError("mlngm: the input contains NaN or Inf values")
        else:
            finite = None
        b = xb.shape[0]
        vox = math.prod(xb.shape[2:])
        budget = _CUDA_CHUNK_VOXELS if xb.is_cuda else _CPU_CHUNK_VOXELS
        chunk = max(1, budget // vox)  # items are independent: chunking does not change results
        if chunk >= b:
            out = _mlngm_batch(xb.to(dtype), levels, dims, window3d)
        else:
            out = torch.empty(xb.shape, dtype=dtype, device=xb.device)

            def part(i: int, j: int) -> None:
                out[i:j] = _mlngm_batch(xb[i:j].to(dtype), levels, dims, window3d)

            _for_chunks(part, b, chunk, xb.device)
        if check_late and finite is not None and not bool(finite):
            raise ValueError("mlngm: the input contains NaN or Inf values")
    out = out.reshape(t.shape)
    return out.numpy() if isinstance(x, np.ndarray) else out


def mlngm_volume(
    volume: np.ndarray,
    levels: int = 4,
    dims: int = 2,
    device: str | torch.device = "cpu",
    chunk: int = 64,
) -> np.ndarray:
    """MLNGM of a ``(Z, Y, X)`` numpy volume, computed on ``device``, returned as numpy.

    With ``dims=2`` every axial slice is processed on its own (its own min-max), ``chunk`` slices
    at a time, so that only a chunk lives on the device (e.g. a GPU) at once. With ``dims=3`` the
    whole volume is one 3D MLNGM (in-plane window; ``chunk`` is not used). The result is float32,
    or float64 for a float64 volume (same rule as :func:`mlngm`). Used by the preprocessing cache.
    """
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"mlngm_volume expects a (Z, Y, X) volume, got shape {volume.shape}")
    if chunk < 1:
        raise ValueError(f"mlngm_volume: chunk must be >= 1, got {chunk!r}")
    device = torch.device(device)
    if dims == 3:
        return mlngm(_as_tensor(volume).to(device), levels=levels, dims=3).cpu().numpy()
    if dims != 2:
        raise ValueError(f"mlngm_volume: dims must be 2 or 3, got {dims!r}")
    src = _as_tensor(volume)
    out = np.empty(volume.shape, dtype=np.float64 if volume.dtype == np.float64 else np.float32)
    for i in range(0, volume.shape[0], chunk):
        part = mlngm(src[i : i + chunk].to(device, non_blocking=True), levels=levels, dims=2)
        out[i : i + chunk] = part.cpu().numpy()
    return out


def mlngm_channels(x: torch.Tensor, levels: int = 4, dims: int = 2) -> torch.Tensor:
    """MLNGM of every channel of a float batch, each on its own: ``(B, C, H, W)`` with ``dims=2``,
    ``(B, C, D, H, W)`` with ``dims=3`` (3D Sobel, in-plane window, as the 3D cache).

    For computing the representation inside a training step (after augmenting intensities):
    :func:`mlngm` without its NaN/Inf check, so no host synchronisation on CUDA; the caller feeds
    finite augmented images.
    """
    if dims not in (2, 3) or x.ndim != dims + 2:
        raise ValueError(f"mlngm_channels expects (B, C, *{dims} spatial axes), got shape {tuple(x.shape)}")
    flat = x.reshape(-1, 1, *x.shape[2:])
    return mlngm(flat, levels=levels, dims=dims, check_finite=False).reshape(x.shape)
