"""From a volume on disk to network input and back: in-plane resampling, crop/pad, MLNGM, cache.

Both domains are resampled in-plane to one spacing and cropped/padded to one size, so organs have
the same physical size in both. Through-plane spacing is kept in 2D unless ``spacing_z`` is set (then 2.5D
neighbours lie one distance apart in every scan); 3D resamples it always.
The same functions serve training (through the cache) and prediction (on the user's files), so a
model always sees inputs prepared exactly as in training.

Example:
    >>> import numpy as np
    >>> from lmisa.preprocess import Plans, prepare_image
    >>> from lmisa.io import MedicalImage
    >>> img = MedicalImage(np.random.rand(3, 40, 50).astype(np.float32), np.diag([2.0, 2.0, 5.0, 1.0]))
    >>> prepared = prepare_image(img, Plans(spacing=(1.0, 1.0), size=(64, 64)))
    >>> prepared.input.shape
    (3, 64, 64)
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from lmisa.config import dataclass_from_dict
from lmisa.cores import usable_cores
from lmisa.errors import LmisaError
from lmisa.io import (
    MedicalImage, atomic_write, float32_range_problem, load_nifti_header, read_image, read_json_object, read_label,
    write_text_atomic,
)

CACHE_VERSION = 1


@dataclass
class Plans:
    """Everything needed to turn any volume into network input the way training did."""

    spacing: tuple[float, float]  # in-plane (sy, sx) mm
    size: tuple[int, int]  # (H, W)
    input: str = "mlngm"  # "mlngm" | "raw"
    dims: int = 2  # 2: slices; 3: volumes (resampled to spacing_z too)
    spacing_z: float | None = None  # through-plane mm; None (2D only): each scan keeps its own slices
    mlngm_levels: int = 4
    context_slices: int = 0
    clip_percentiles: tuple[float, float] = (0.5, 99.5)
    labels: dict[str, int] = field(default_factory=lambda: {"background": 0})
    # the longest cranio-caudal extent (mm) of each organ in the run's training labels (lmisa.extent): the
    # source's (the target's for the supervised bound); empty in runs from before it was recorded
    organ_extent_mm: dict[str, float] = field(default_factory=dict)
    # the voxel axes (lmisa.orientation, e.g. "LAS") every image is turned into before caching and prediction:
    # the run's first labelled training image's; None (runs from before it was recorded, lmisa preprocess): as
    # stored. Not part of the cache key: a data set with an image to turn caches into a folder of its own.
    axis_codes: str | None = None

    @property
    def num_classes(self) -> int:
        return max(self.labels.values()) + 1

    def cache_key(self) -> str:
        """Short hash of the settings that change cached arrays (labels do not)."""
        keyed = {
            "v": CACHE_VERSION,
            "spacing": [round(float(s), 4) for s in self.spacing],
            "size": list(self.size),
            "input": self.input,
            "levels": self.mlngm_levels,
            "clip": list(self.clip_percentiles),
        }
        if self.dims == 3:  # 2D keys unchanged, so existing 2D caches stay valid
            keyed.update(dims=3, spacing_z=round(float(self.spacing_z or 0), 4))
        elif self.spacing_z:
            keyed.update(spacing_z=round(float(self.spacing_z), 4))
        return hashlib.sha1(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:10]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "Plans":
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, data: dict) -> "Plans":
        """Plans from their JSON form; plans written before a field existed take its default; a field of the
        wrong type or value is an error naming it (a hand-edited plans.json fails here, not mid-run)."""
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(f"keys this lmisa does not know: {', '.join(unknown)} (written by a newer lmisa?)")
        plans = dataclass_from_dict(cls, data, "plans")
        if plans.input not in ("mlngm", "raw"):
            raise ValueError(f'"input" must be "mlngm" or "raw", not {plans.input!r}')
        if plans.dims not in (2, 3):
            raise ValueError(f'"dims" must be 2 or 3, not {plans.dims!r}')
        for key in ("mlngm_levels", "context_slices"):
            if getattr(plans, key) < 0:
                raise ValueError(f'"{key}" must be a whole number >= 0, not {getattr(plans, key)!r}')
        return plans

    def target_shape(self, shape: Sequence[int], spacing: Sequence[float]) -> tuple[int, ...]:
        """Grid size after resampling a ``(Z, Y, X)`` volume of ``spacing`` (z kept without ``spacing_z``)."""
        inplane = resampled_size(shape[-2:], spacing[-2:], self.spacing)
        if self.spacing_z:
            return (resampled_size(shape[:1], spacing[:1], (self.spacing_z,))[0], *inplane)
        return (int(shape[0]), *inplane)


@dataclass
class CropBox:
    """Where the resampled slice sits in the fixed-size frame, per in-plane axis (src start, dst start, length)."""

    resampled_shape: tuple[int, int]
    y: tuple[int, int, int]
    x: tuple[int, int, int]


@dataclass
class PreparedVolume:
    """Network input of one volume, ``(Z, H, W)`` float32 in [0, 1], and how to map back."""

    input: np.ndarray
    box: CropBox
    original_shape: tuple[int, int, int]
    resampled_depth: int | None = None  # slices after through-plane resampling (as original without spacing_z)


def load_plans(path: Path) -> Plans:
    """The plans saved in ``path`` (a run's or a cache's ``plans.json``); LmisaError naming the file when it is
    missing, damaged, lacks a field without a default, or holds keys this lmisa does not know."""
    data = read_json_object(path)
    try:
        return Plans.from_dict(data)
    except (LmisaError, ValueError, TypeError, KeyError) as exc:
        raise LmisaError(f"{path}: not the plans.json of an lmisa run or cache ({type(exc).__name__}: {exc})") from None


def median_inplane_spacing(image_paths: Iterable[Path]) -> tuple[float, float]:
    """Median in-plane spacing (sy, sx) over images, from their headers only."""
    spacings = []
    for p in image_paths:
        zooms = load_nifti_header(p).header.get_zooms()[:3]  # (sx, sy, sz)
        spacings.append((float(zooms[1]), float(zooms[0])))
    if not spacings:
        raise ValueError("no images to take a median spacing from")
    med = np.median(np.asarray(spacings), axis=0)
    return (round(float(med[0]), 4), round(float(med[1]), 4))


def median_slice_spacing(image_paths: Iterable[Path]) -> float:
    """Median through-plane spacing over images, from their headers only."""
    values = [float(load_nifti_header(p).header.get_zooms()[2]) for p in image_paths]
    if not values:
        raise ValueError("no images to take a median spacing from")
    return round(float(np.median(values)), 4)


def resampled_size(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float]) -> tuple[int, int]:
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target))  # type: ignore[return-value]


def resample_inplane(volume: np.ndarray | torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize every slice of ``(Z, Y, X)`` (or ``(C, Z, Y, X)``) to ``size``; mode "linear" or "nearest"."""
    t = torch.as_tensor(volume)
    lead = t.shape[:-2]
    flat = t.reshape(-1, 1, *t.shape[-2:])
    if tuple(flat.shape[-2:]) == tuple(size):
        return t
    if mode == "nearest":
        out = F.interpolate(flat.float(), size=size, mode="nearest-exact").to(t.dtype)
    else:
        antialias = size[0] < flat.shape[-2] or size[1] < flat.shape[-1]
        out = F.interpolate(flat.float(), size=size, mode="bilinear", align_corners=False, antialias=antialias)
    return out.reshape(*lead, *size)


def resample_volume(volume: np.ndarray | torch.Tensor, shape: Sequence[int], mode: str) -> torch.Tensor:
    """Resize the last three axes of ``(Z, Y, X)`` (or ``(C, Z, Y, X)``) to ``shape`` (trilinear or nearest)."""
    t = torch.as_tensor(volume)
    if tuple(t.shape[-3:]) == tuple(shape):
        return t
    lead = t.shape[:-3]
    flat = t.reshape(-1, 1, *t.shape[-3:]).float()
    if mode == "nearest":
        out = F.interpolate(flat, size=tuple(shape), mode="nearest-exact").to(t.dtype)
    else:
        out = F.interpolate(flat, size=tuple(shape), mode="trilinear", align_corners=False)
    return out.reshape(*lead, *shape)


def _resample(volume: np.ndarray | torch.Tensor, shape: Sequence[int], mode: str) -> torch.Tensor:
    """In-plane first (antialiased when shrinking, as in 2D), then through-plane if the depth changes."""
    t = resample_inplane(torch.as_tensor(volume), tuple(shape[-2:]), mode)
    if int(shape[0]) == t.shape[-3]:
        return t
    return resample_volume(t, shape, mode)


def _axis_box(n: int, target: int) -> tuple[int, int, int]:
    """(src start, dst start, length) of a centred crop (n > target) or pad (n < target)."""
    if n >= target:
        return ((n - target) // 2, 0, target)
    return (0, (target - n) // 2, n)


def crop_or_pad(volume: torch.Tensor, size: tuple[int, int], fill: float = 0.0) -> tuple[torch.Tensor, CropBox]:
    """Centre-crop or pad the last two axes to ``size``."""
    h, w = volume.shape[-2:]
    box = CropBox((int(h), int(w)), _axis_box(h, size[0]), _axis_box(w, size[1]))
    out = torch.full((*volume.shape[:-2], *size), fill, dtype=volume.dtype, device=volume.device)
    (ys, yd, yn), (xs, xd, xn) = box.y, box.x
    out[..., yd : yd + yn, xd : xd + xn] = volume[..., ys : ys + yn, xs : xs + xn]
    return out, box


def uncrop(frame: torch.Tensor, box: CropBox, fill: float = 0.0) -> torch.Tensor:
    """Inverse of crop_or_pad: put the frame's content back on the resampled grid."""
    out = torch.full((*frame.shape[:-2], *box.resampled_shape), fill, dtype=frame.dtype, device=frame.device)
    (ys, yd, yn), (xs, xd, xn) = box.y, box.x
    out[..., ys : ys + yn, xs : xs + xn] = frame[..., yd : yd + yn, xd : xd + xn]
    return out


def normalise_intensity(volume: np.ndarray, clip_percentiles: tuple[float, float]) -> np.ndarray:
    """Clip to percentiles and scale to [0, 1] (the same for every modality)."""
    lo, hi = np.percentile(volume, clip_percentiles)
    if hi <= lo:
        return np.zeros_like(volume, dtype=np.float32)
    return ((np.clip(volume, lo, hi) - lo) / (hi - lo)).astype(np.float32)


def prepare_image(image: MedicalImage, plans: Plans, device: str | torch.device = "cpu") -> PreparedVolume:
    """Resample, represent (MLNGM or normalised intensities), crop/pad one volume."""
    from lmisa.mlngm import mlngm_volume

    array = np.asarray(image.array, dtype=np.float32)
    if array.ndim == 2:
        array = array[None]
    if not np.all(np.isfinite(array)):
        raise ValueError("image contains NaN or Inf")
    if (too_large := float32_range_problem(array)) is not None:
        raise ValueError(too_large)
    shape = plans.target_shape(array.shape, image.spacing if image.array.ndim == 3 else (1.0, *image.spacing))
    resampled = _resample(array, shape, "linear").numpy()
    if plans.input == "mlngm":
        rep = mlngm_volume(resampled, levels=plans.mlngm_levels, dims=plans.dims, device=device)
    else:
        rep = normalise_intensity(resampled, plans.clip_percentiles)
    framed, box = crop_or_pad(torch.from_numpy(np.ascontiguousarray(rep, dtype=np.float32)), plans.size, 0.0)
    return PreparedVolume(framed.numpy(), box, tuple(array.shape), int(shape[0]))  # type: ignore[arg-type]


def prepare_label(label: MedicalImage, plans: Plans) -> np.ndarray:
    """Nearest-neighbour resample and crop/pad a label map like prepare_image does the image."""
    return _framed_label(label, plans)[0]


def _framed_label(label: MedicalImage, plans: Plans) -> tuple[np.ndarray, float]:
    """:func:`prepare_label`, and the share of the resampled label's organ voxels that the crop left out."""
    array = label.array if label.array.ndim == 3 else label.array[None]
    shape = plans.target_shape(array.shape, label.spacing if label.array.ndim == 3 else (1.0, *label.spacing))
    resampled = _resample(torch.from_numpy(np.ascontiguousarray(array)), shape, "nearest")
    framed, _ = crop_or_pad(resampled, plans.size, 0)
    organ = int(torch.count_nonzero(resampled))
    cut = 1.0 - int(torch.count_nonzero(framed)) / organ if organ else 0.0
    return framed.numpy().astype(np.uint8), cut


def restore_probabilities(probs: torch.Tensor, prepared: PreparedVolume) -> torch.Tensor:
    """Map ``(C, Z, H, W)`` class probabilities back onto the original ``(C, Z, Y, X)`` grid.

    Whatever lay outside the network's frame is background with certainty.
    """
    out = uncrop(probs, prepared.box, 0.0)
    inside = uncrop(torch.ones_like(probs[0]), prepared.box, 0.0)
    out[0] += 1.0 - inside
    return _resample(out, prepared.original_shape, "linear")


# ----------------------------------------------------------------------------- cache


def default_cache_root(cfg_dir: str | None = None) -> Path:
    if cfg_dir:
        return Path(cfg_dir)
    env = os.environ.get("LMISA_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "lmisa"


def cache_dir_for(dataset_root: Path, plans: Plans, cache_root: Path) -> Path:
    """One folder per (data set, settings): different settings never share arrays."""
    root = Path(dataset_root).resolve()
    tag = hashlib.sha1(str(root).encode()).hexdigest()[:8]
    return cache_root / f"{root.name}-{tag}" / plans.cache_key()


def check_cache_dir(out_dir: Path, plans: Plans, names: Iterable[str], with_labels: bool) -> None:
    """Refuse a cache folder of the user's choosing whose arrays would not be these: one made with other
    settings (its ``plans.json``) or with(out) labels where these are without (with) them, or one holding case
    files but no ``plans.json``. Training caches need no check: their folders are keyed by the settings and
    by labels (``cache_dir_for``, ``-nolabel``)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise LmisaError(f"{out_dir}: exists and is not a folder")
    saved_path = out_dir / "plans.json"
    cached = [out_dir / f"{n}.npz" for n in names if (out_dir / f"{n}.npz").exists()]
    if not saved_path.exists():
        if cached:
            raise LmisaError(f"{cached[0]}: cached without a plans.json beside it, so its settings are unknown; "
                             "choose another folder")
        return
    try:
        saved = load_plans(saved_path)
    except LmisaError as exc:
        raise LmisaError(f"{exc}; choose another folder") from None
    if saved.cache_key() != plans.cache_key():
        keyed = ("spacing", "size", "input", "mlngm_levels", "clip_percentiles", "dims", "spacing_z")
        differ = "; ".join(f"{k} {getattr(saved, k)} there, {getattr(plans, k)} now"
                           for k in keyed if getattr(saved, k) != getattr(plans, k))
        raise LmisaError(f"{saved_path}: this folder was cached with other settings ({differ or 'version'}); "
                         "choose another folder")
    if cached:
        try:
            with np.load(cached[0]) as npz:
                has_label = "label" in npz.files
        except Exception as exc:  # numpy/zipfile raise many types for a broken file
            raise LmisaError(f"{cached[0]}: unreadable cached case ({type(exc).__name__}); delete it to cache it again") from None
        if has_label != with_labels:
            raise LmisaError(f"{cached[0]}: cached {'with' if has_label else 'without'} labels; choose another folder "
                             f"for this data set {'with' if with_labels else 'without'} them")


def _save_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    with atomic_write(path, ".tmp.npz") as tmp:
        np.savez(tmp, **arrays)


def cache_case(image_path: Path, label_path: Path | None, out: Path, plans: Plans) -> Path:
    """Prepare one case and store it as ``out`` (.npz: input float16, label uint8 if given), turned into
    ``plans.axis_codes`` where set (lmisa.orientation)."""
    from lmisa.orientation import to_axes

    def read(path: Path, reader: Callable[[Path], MedicalImage]) -> MedicalImage:
        image = reader(path)
        return to_axes(image, plans.axis_codes)[0] if plans.axis_codes else image

    prepared = prepare_image(read(image_path, read_image), plans)
    arrays = {"input": prepared.input.astype(np.float16)}
    if label_path is not None:
        arrays["label"], cut = _framed_label(read(label_path, read_label), plans)
        arrays[LABEL_CUT] = np.float32(cut)
    _save_npz_atomic(out, **arrays)
    return out


LABEL_CUT = "label_cut"  # in a cached case: the share of its organ voxels outside data.size's frame


def label_cut_shares(files: dict[str, Path]) -> dict[str, float]:
    """Each cached labelled case's share of organ voxels that the crop to ``data.size`` left out (cases cached
    before the share was recorded are absent)."""
    shares = {}
    for name, path in files.items():
        with np.load(path) as npz:
            if LABEL_CUT in npz:
                shares[name] = float(npz[LABEL_CUT])
    return shares


def _try_cache_case(job: tuple) -> str:
    """cache_case for one job; an error comes back as one line instead of stopping the others."""
    image_path, label_path, out, plans = job
    try:
        cache_case(image_path, label_path, out, plans)
    except Exception as exc:
        message = str(exc)
        named = str(image_path) in message or (label_path is not None and str(label_path) in message)
        return message if named else f"{image_path}: {message}"
    return ""


def _cache_case_worker(job: tuple) -> str:
    torch.set_num_threads(1)  # one case per process: no oversubscription
    return _try_cache_case(job)


MAX_CACHE_WORKERS = 8


def build_cache(
    cases: Sequence[tuple[str, Path, Path | None]],
    out_dir: Path,
    plans: Plans,
    workers: int | None = None,
    progress: bool = True,
    description: str = "preprocess",
) -> tuple[dict[str, Path], list[str]]:
    """Cache every ``(name, image, label)`` case into ``out_dir``; cases already there are skipped.

    ``workers`` defaults to the usable cores, at most :data:`MAX_CACHE_WORKERS` (each holds one full-resolution
    volume and its resampled copies: 0.4 GB more than the process, measured for a 512 x 512 x 200 CT). Returns the
    case files and the list of one-line errors (cases that failed are not cached).
    """
    if workers is None:
        workers = min(usable_cores(), MAX_CACHE_WORKERS)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "plans.json", plans.to_json())
    files = {name: out_dir / f"{name}.npz" for name, _, _ in cases}
    todo = [(img, lab, files[name], plans) for name, img, lab in cases if not files[name].exists()]
    errors: list[str] = []
    if todo:
        from rich.progress import Progress

        with Progress(disable=not progress, transient=False) as bar:
            task = bar.add_task(f"{description} ({len(todo)} new, {len(cases) - len(todo)} cached)", total=len(todo))
            if workers > 1 and len(todo) > 1:
                with ProcessPoolExecutor(max_workers=workers) as pool:
                    for err in pool.map(_cache_case_worker, todo):
                        if err:
                            errors.append(err)
                        bar.advance(task)
            else:
                for job in todo:
                    err = _try_cache_case(job)
                    if err:
                        errors.append(err)
                    bar.advance(task)
    return {k: v for k, v in files.items() if v.exists()}, errors


@dataclass
class SliceSet:
    """All slices of some cases, stacked: inputs ``(N, H, W)`` float16, labels ``(N, H, W)`` uint8 or None."""

    inputs: torch.Tensor
    labels: torch.Tensor | None
    case_of_slice: torch.Tensor  # (N,) int64 case index
    case_names: list[str]
    case_starts: torch.Tensor  # (num_cases,) first slice index per case
    case_lengths: torch.Tensor  # (num_cases,)

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def to(self, device: torch.device | str) -> "SliceSet":
        return SliceSet(
            self.inputs.to(device),
            None if self.labels is None else self.labels.to(device),
            self.case_of_slice.to(device),
            self.case_names,
            self.case_starts.to(device),
            self.case_lengths.to(device),
        )


def load_slices(files: dict[str, Path], names: Sequence[str], with_labels: bool) -> SliceSet:
    """Stack the cached cases ``names`` into one SliceSet (labels only when asked for)."""
    inputs, labels, owner, starts, lengths = [], [], [], [], []
    start = 0
    for i, name in enumerate(names):
        with np.load(files[name]) as npz:
            x = npz["input"]
            inputs.append(torch.from_numpy(x))
            if with_labels:
                if "label" not in npz:
                    raise ValueError(f"{files[name]}: cached case has no label")
                labels.append(torch.from_numpy(npz["label"]))
        owner.append(torch.full((x.shape[0],), i, dtype=torch.int64))
        starts.append(start)
        lengths.append(x.shape[0])
        start += x.shape[0]
    return SliceSet(
        torch.cat(inputs),
        torch.cat(labels) if with_labels else None,
        torch.cat(owner),
        list(names),
        torch.tensor(starts, dtype=torch.int64),
        torch.tensor(lengths, dtype=torch.int64),
    )
