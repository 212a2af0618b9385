"""Predict label maps with a trained run: one volume in memory, or files and folders on disk.

``load_run(run_dir)`` reads ``RUN/checkpoints/best.pt`` (or ``latest.pt``) with ``weights_only=True``
and rebuilds the network from the configuration stored in the checkpoint (through
``lmisa.training.variants.build_inference_net``, so a peer method's own segmenter loads too). ``predict_volume`` runs
one :class:`~lmisa.io.MedicalImage` through exactly the steps that training used:

1. :func:`lmisa.preprocess.prepare_image` (in-plane resampling to the run's spacing, through-plane too
   where the run sets ``data.spacing_z``, MLNGM or
   normalised intensities, centre crop/pad to the run's size), stored as float16 as the training
   cache stores it; a run that computed MLNGM online in training (``augment.before_mlngm``, the default)
   gets normalised intensities here and MLNGM in step 3, on the frame, as in training;
2. per slice ``k``, the slices ``k-c .. k+c`` as channels (2.5D, ``c = context_slices``), clamped
   inside the volume, by the training code itself (:func:`lmisa.sampling.gather_slices`);
3. MLNGM per channel for those runs, then :func:`lmisa.augment.standardise` (z-score per sample and
   channel): the trainer's ``represent``;
4. ``net.forward_seg`` in batches under ``torch.inference_mode`` (bf16 autocast where the device computes it
   natively and the run trained in bf16, as its validation did: :mod:`lmisa.precision`), optionally
   averaged over a few in-plane views (:mod:`lmisa.tta`, the run's ``post.tta``);
5. softmax, :func:`lmisa.preprocess.restore_probabilities` back onto the image's own grid (outside
   the network's frame is background; resampled slices go back through-plane first), argmax;
6. optionally :func:`lmisa.postprocess.keep_largest_component` per organ (default: the run's
   ``post.largest_component``), then optionally :func:`lmisa.extent.cap_extent`: each organ at most
   ``post.extent_margin`` times its longest extent in the source's training labels (the run's plans).

An :class:`lmisa.ensemble.Ensemble` of runs that prepare images alike goes through the same steps, its members'
probabilities (step 4) averaged before the argmax.

``predict_path`` does this for a NIfTI file, a folder of NIfTI files, a DICOM series folder (or a
folder of DICOM series folders), or an nnU-Net raw data set root (``imagesTs`` if it holds images,
else ``imagesTr``), writing ``<output_dir>/<case>.nii.gz`` (uint8, the input's affine and header), and on request the
class probabilities before post-processing, ``<case>.npz`` (:mod:`lmisa.probabilities`, as nnU-Net's
``--save_probabilities``).
Existing outputs are never replaced unless ``overwrite=True``; an unreadable input is reported and
skipped and the others go on.

Speed (measured once, a one-epoch run with the default network, 2.5D input with one context slice,
256 x 256 frame; a 120 x 512 x 512 volume at 0.75 mm, ``predict_volume`` without file I/O): 0.27 s on
one H100 (CUDA, bf16), 23.5 s on its 16 CPU cores (float32: that CPU had no AMX). bf16 flips a few boundary
voxels against float32: 0.03 % of them on two CT cases (docs/RESULTS.md 2ac).

Example::

    from lmisa.predict import load_run, predict_path
    model = load_run("runs/ct-to-mr")
    report = predict_path(model, "data/MR/imagesTs", "preds/mr")
    print(report.summary())
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from lmisa.config import Config
from lmisa.errors import LmisaError
from lmisa.io import MedicalImage, is_dicom_folder, is_nifti, read_dicom_series, read_image, strip_nifti_suffix
from lmisa.nets import segment_logits
from lmisa.orientation import to_axes
from lmisa.precision import autocast, trained_in_bf16
from lmisa.preprocess import Plans, SliceSet, prepare_image, resample_volume, restore_probabilities
from lmisa.training.trainer import resolve_device
from lmisa.tta import tta_probabilities, views_within

if TYPE_CHECKING:
    from lmisa.ensemble import Ensemble

__all__ = [
    "LoadedModel",
    "InputCase",
    "PredictionReport",
    "load_run",
    "list_inputs",
    "predict_volume",
    "predict_volume_with_probabilities",
    "predict_path",
    "extent_caps",
    "OUTPUT_SUFFIX",
    "PREDICTION_VERSION",
]

OUTPUT_SUFFIX = ".nii.gz"
CHECKPOINTS = ("best", "latest")
# Bumped whenever the label maps a run predicts change (so stored predictions are redone): 2 = MLNGM on the
# frame for online-MLNGM runs, as in training (before: on the whole slice, then cropped).
PREDICTION_VERSION = 2


# --------------------------------------------------------------------------------------------------
# the model


@dataclass
class LoadedModel:
    """A trained generator in eval mode with the plans and configuration of its run."""

    net: torch.nn.Module
    plans: Plans
    config: Config
    checkpoint: Path | None = None
    epoch: int | None = None
    # the run trained under bf16 autocast: prediction does too, where the device computes it natively
    bf16: bool = True

    @property
    def device(self) -> torch.device:
        p = next(self.net.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    @property
    def online_mlngm(self) -> bool:
        """True when training computed MLNGM per batch on the frame of cached intensities: prediction then
        does the same (:func:`lmisa.training.data.network_input`)."""
        from lmisa.training.data import online_mlngm

        return self.plans.input == "mlngm" and online_mlngm(self.config)

    @property
    def in_channels(self) -> int:
        return 2 * self.plans.context_slices + 1

    @property
    def label_names(self) -> list[str]:
        """Label names ordered by value (background first)."""
        return [k for k, _ in sorted(self.plans.labels.items(), key=lambda kv: kv[1])]


def load_run(run_dir: str | Path, which: str = "best", device: str | torch.device = "auto") -> LoadedModel:
    """Load ``RUN/checkpoints/<which>.pt`` (``which`` = "best" or "latest") as an eval-mode network.

    ``run_dir`` may also be the path of a checkpoint file itself. ``device``: "auto" (CUDA when present, as
    ``lmisa predict``), "cpu", "cuda", ...
    Raises LmisaError naming the folder (or file) when it is not a run, or the checkpoint is missing or
    unreadable.
    """
    from lmisa.training import run as runfiles
    from lmisa.training.checkpoint import load_checkpoint
    from lmisa.training.variants import build_inference_net

    if which not in CHECKPOINTS:
        raise LmisaError(f"checkpoint must be one of {', '.join(CHECKPOINTS)}, got {which!r}")
    run_dir = Path(run_dir)
    if run_dir.is_file() and run_dir.suffix == ".pt":
        path = run_dir
    else:
        if not run_dir.exists():
            raise LmisaError(f"{run_dir}: run folder not found")
        if not run_dir.is_dir():
            raise LmisaError(f"{run_dir}: not a run folder (expected a folder made by `lmisa train`)")
        path = run_dir / runfiles.CKPT_DIR / f"{which}.pt"
        if not path.is_file():
            is_run = any((run_dir / n).exists() for n in (runfiles.CONFIG, runfiles.PLANS, runfiles.CKPT_DIR))
            if not is_run:
                raise LmisaError(f"{run_dir}: not a run folder (no {runfiles.CKPT_DIR}/, {runfiles.CONFIG} or {runfiles.PLANS})")
            other = [c for c in CHECKPOINTS if c != which and (run_dir / runfiles.CKPT_DIR / f"{c}.pt").is_file()]
            hint = f"; {runfiles.CKPT_DIR}/{other[0]}.pt exists (--checkpoint {other[0]})" if other else " (no epoch finished yet?)"
            raise LmisaError(f"{run_dir}: no {runfiles.CKPT_DIR}/{which}.pt{hint}")
    device = resolve_device(device)
    state = load_checkpoint(path, map_location="cpu")
    if not isinstance(state, dict) or not {"net", "config", "plans"} <= set(state):
        raise LmisaError(f"{path}: not an lmisa checkpoint (needs net, config and plans)")
    config = Config.from_dict(state["config"], str(path), saved_run=True)
    try:
        plans = Plans.from_json(state["plans"])
    except Exception as exc:
        raise LmisaError(f"{path}: invalid plans in checkpoint ({type(exc).__name__}: {exc})") from None
    # the network the run's trainer built (a peer method may register its own segmenter)
    net = build_inference_net(config, 2 * plans.context_slices + 1, plans.num_classes)
    try:
        net.load_state_dict(state["ema"] if "ema" in state else state["net"])  # the weights validation chose
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise LmisaError(f"{path}: weights do not fit the network of its config ({first})") from None
    net.to(device).eval()
    epoch = state.get("epoch")
    hardware = path.parent.parent / runfiles.HARDWARE
    bf16 = trained_in_bf16(state, config.train.amp, hardware.read_text() if hardware.is_file() else None)
    return LoadedModel(net=net, plans=plans, config=config, checkpoint=path,
                       epoch=int(epoch) if epoch is not None else None, bf16=bf16)


# --------------------------------------------------------------------------------------------------
# one volume


def class_argmax(probs: torch.Tensor) -> torch.Tensor:
    """``probs.argmax(0)`` as uint8 (first class on ties). A running maximum over the few classes: on
    the CPU, torch's argmax over the leading dimension of a (C, Z, 512, 512) volume is 2-3x slower."""
    best = probs[0].clone()
    labels = torch.zeros(probs.shape[1:], dtype=torch.uint8, device=probs.device)
    for c in range(1, probs.shape[0]):
        better = probs[c] > best
        labels.masked_fill_(better, c)
        torch.maximum(best, probs[c], out=best)
    return labels


# slices per forward when none is given: a CPU predicts a 2D run fastest in small batches whose activations
# stay in cache (benchmarks/bench_predict.py, CT at 4 mm: 1.15-1.35x at 8 against 32, the same labels); an
# accelerator, in large ones
CPU_SLICE_BATCH, DEFAULT_BATCH = 8, 32


def default_batch_size(device: torch.device, dims: int) -> int:
    """Slices per forward (2D) or its eighth as patches per forward (3D) when the caller gives none."""
    return CPU_SLICE_BATCH if device.type == "cpu" and dims == 2 else DEFAULT_BATCH


def predict_volume(
    model: LoadedModel | Ensemble,
    image: MedicalImage,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    largest_component: bool | None = None,
    tta: bool | None = None,
    extent_margin: float | None = None,
) -> np.ndarray:
    """The label map of ``image`` on its own grid: uint8, the shape of ``image.array`` (``(Z, Y, X)``). An image
    stored in other voxel axes than the run's training images is predicted in the run's (lmisa.orientation); one
    built in memory without geometry (the identity affine and no NIfTI header) as stored.

    ``model``: one run, or an :class:`lmisa.ensemble.Ensemble` whose members' probabilities are averaged.
    ``device`` defaults to the model's device (the network is moved there if needed).
    ``largest_component`` None: the run's ``config.post.largest_component``.
    ``tta`` None: the run's ``config.post.tta`` (test-time augmentation, :mod:`lmisa.tta`; 2D runs only).
    ``extent_margin`` None: the run's ``config.post.extent_margin`` (0: no cap on the organs' extents).
    ``batch_size`` None: :func:`default_batch_size` for the device.
    """
    return _predict(model, image, device, batch_size, largest_component, tta, extent_margin, False)[0]


def predict_volume_with_probabilities(
    model: LoadedModel | Ensemble,
    image: MedicalImage,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    largest_component: bool | None = None,
    tta: bool | None = None,
    extent_margin: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`predict_volume`'s label map, and the class probabilities its argmax was taken from:
    ``(C, *image.array.shape)`` float16 on the image's own grid, class ``c`` the label value ``c``. As in
    nnU-Net (``--save_probabilities``), the probabilities are those before post-processing: the largest
    component and the extent cap act on the label map only. For uncertainty, or to combine runs later."""
    labels, probs = _predict(model, image, device, batch_size, largest_component, tta, extent_margin, True)
    assert probs is not None
    return labels, probs


def _predict(
    model: LoadedModel | Ensemble,
    image: MedicalImage,
    device: str | torch.device | None,
    batch_size: int | None,
    largest_component: bool | None,
    tta: bool | None,
    extent_margin: float | None,
    keep_probabilities: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`predict_volume`, and with ``keep_probabilities`` the probabilities (float16) beside it."""
    from lmisa.sampling import gather_slices

    dims = model.config.train.dims
    tta = model.config.post.tta if tta is None else tta
    if tta and dims != 2:
        raise LmisaError("test-time augmentation (post.tta) is for 2D runs; this run is 3D")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    plans = model.plans
    array = np.asarray(image.array)
    if array.ndim not in (2, 3) or array.size == 0:
        raise LmisaError(f"expected a non-empty 2D or 3D image, got shape {array.shape}")
    # an image stored otherwise is turned into the run's voxel axes, and back; one built in memory without
    # geometry (MedicalImage's default identity affine, no header) is taken as stored
    if plans.axis_codes is not None and not (image.header is None and np.array_equal(image.affine, np.eye(4))):
        turned, back = to_axes(image, plans.axis_codes)
        if turned is not image:
            labels, probs = _predict(model, turned, device, batch_size, largest_component, tta, extent_margin,
                                     keep_probabilities)
            return back(labels), None if probs is None else np.stack([back(p) for p in probs])
    caps = extent_caps(model, extent_margin)  # before any network time
    device = model.device if device is None else resolve_device(device)
    batch_size = batch_size or default_batch_size(device, dims)
    members = _members(model)
    segments = [_segmenter(m, device) for m in members]

    # a run that computed MLNGM per batch in training (online) gets intensities here, and MLNGM in its segmenter
    prepared = prepare_image(image, replace(plans, input="raw") if model.online_mlngm else plans, device=device)
    z = prepared.input.shape[0]
    # The training cache stores inputs as float16 and gather_slices returns float32: the same here.
    vol = torch.from_numpy(prepared.input.astype(np.float16)).to(device)
    if dims == 3:
        with torch.inference_mode():
            total = sum(_patch_probabilities(seg, vol, tuple(m.config.data.patch), batch_size)
                        for m, seg in zip(members, segments))
            probs = restore_probabilities(total / len(members), prepared)
            result = class_argmax(probs).cpu().numpy()
        kept = probs.half().cpu().numpy().reshape(-1, *array.shape) if keep_probabilities else None
        return _postprocess(result.reshape(array.shape), model, image, largest_component, caps), kept
    slices = SliceSet(
        inputs=vol,
        labels=None,
        case_of_slice=torch.zeros(z, dtype=torch.int64, device=device),
        case_names=["image"],
        case_starts=torch.zeros(1, dtype=torch.int64, device=device),
        case_lengths=torch.full((1,), z, dtype=torch.int64, device=device),
    )
    c = plans.context_slices
    offsets = torch.arange(-c, c + 1, device=device)
    out_yx = tuple(prepared.original_shape[-2:])
    # each member averages only the views it trained on
    views = [views_within(m.config.augment.rotate_deg, m.config.augment.scale, m.config.augment.enabled) for m in members]
    z_out = prepared.original_shape[0]

    def probabilities(start: int) -> torch.Tensor:  # (C, B, H, W) in the frame, slices start .. start + B
        idx = torch.arange(start, min(z, start + batch_size), device=device)
        x, _ = gather_slices(slices, idx, offsets, with_labels=False)
        total: torch.Tensor | float = 0.0
        for segment, member_views in zip(segments, views):
            total = total + (tta_probabilities(segment, x, member_views) if tta else torch.softmax(segment(x), dim=1))
        return (total / len(members)).transpose(0, 1)

    labels = torch.empty((z_out, *out_yx), dtype=torch.uint8, device=device)
    # probabilities kept in host memory, batch by batch: (C, Z, Y, X) of a large scan would crowd a GPU
    kept = torch.empty((plans.num_classes, z_out, *out_yx), dtype=torch.float16) if keep_probabilities else None

    def restore(probs: torch.Tensor, start: int) -> None:  # slices start .. start + B: back to the image's grid
        probs = restore_probabilities(probs, replace(prepared, original_shape=(probs.shape[1], *out_yx)))
        labels[start : start + probs.shape[1]] = class_argmax(probs)
        if kept is not None:
            kept[:, start : start + probs.shape[1]] = probs.to("cpu", torch.float16)

    with torch.inference_mode():
        if z_out == z:  # the scan's own slices (no data.spacing_z): each batch straight back
            for start in range(0, z, batch_size):
                restore(probabilities(start), start)
        else:  # resampled through-plane (data.spacing_z): the frame's probabilities back to the scan's slices first
            frame = torch.cat([probabilities(start) for start in range(0, z, batch_size)], dim=1)
            frame = resample_volume(frame, (z_out, *frame.shape[-2:]), "linear")
            for start in range(0, z_out, batch_size):
                restore(frame[:, start : start + batch_size], start)
    result = _postprocess(labels.cpu().numpy().reshape(array.shape), model, image, largest_component, caps)
    return result, None if kept is None else kept.numpy().reshape(-1, *array.shape)


def _members(model: LoadedModel | Ensemble) -> list[LoadedModel]:
    """The runs whose probabilities a prediction averages: an ensemble's members, or the one run."""
    return list(getattr(model, "members", [model]))


def _segmenter(model: LoadedModel, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """Slices (2D) or patches (3D) as training warped them -> float logits: the run's network input
    (:func:`lmisa.training.data.network_input`, outside autocast as in training), then its network in the
    precision it trained in."""
    from lmisa.training.data import network_input

    net = model.net.to(device).eval()
    amp = autocast(device, model.bf16, model.config.train.dims)

    def segment(x: torch.Tensor) -> torch.Tensor:
        x = network_input(x, model.config)
        with amp:
            return segment_logits(net, x).float()

    return segment


def _postprocess(
    result: np.ndarray, model: LoadedModel, image: MedicalImage, largest_component: bool | None,
    caps: dict[int, float],
) -> np.ndarray:
    if largest_component is None:
        largest_component = model.config.post.largest_component
    if largest_component:
        from lmisa.postprocess import keep_largest_component

        result = keep_largest_component(result, classes=range(1, model.plans.num_classes))
    if caps and result.ndim == 3:  # a single 2D slice has no extent to cap
        from lmisa.extent import cap_extent

        result = cap_extent(result, image.spacing[0], caps)
    return result


def extent_caps(model: LoadedModel | Ensemble, extent_margin: float | None = None) -> dict[int, float]:
    """Label value -> the longest extent (mm) allowed: ``extent_margin`` (None: the run's
    ``post.extent_margin``) times the organ's longest extent in the run's training labels (an organ absent
    there gets no cap); empty when the margin is 0. A run trained before the extents were recorded has
    none to scale: an error naming its checkpoint."""
    from lmisa.extent import check_extent_margin

    margin = model.config.post.extent_margin if extent_margin is None else extent_margin
    check_extent_margin(margin)
    if margin == 0:
        return {}
    extents = model.plans.organ_extent_mm
    if not extents:
        without = [m for m in _members(model) if not m.plans.organ_extent_mm]
        checkpoint = without[0].checkpoint if without else model.checkpoint
        where = f"{checkpoint}: " if checkpoint else ""
        raise LmisaError(f"{where}post.extent_margin {margin}: this run's plans hold no organ extents (trained before "
                         "they were recorded); predict with extent margin 0 or retrain")
    labels = model.plans.labels
    return {labels[name]: margin * mm for name, mm in extents.items() if name in labels and mm > 0}


def _patch_probabilities(
    segment: Callable[[torch.Tensor], torch.Tensor], vol: torch.Tensor, patch: tuple[int, int, int], batch_size: int,
) -> torch.Tensor:
    """3D runs: MONAI's sliding-window inference over the prepared volume (Gaussian-weighted overlaps of the
    windows' logits), then softmax: ``(C, Z', H, W)`` on the prepared frame."""
    from monai.inferers import sliding_window_inference

    logits = sliding_window_inference(
        vol.float()[None, None], roi_size=patch, sw_batch_size=max(1, batch_size // 8),
        predictor=segment, overlap=0.5, mode="gaussian", padding_mode="replicate",  # like training
    )
    return torch.softmax(logits[0], dim=0)


# --------------------------------------------------------------------------------------------------
# files and folders


@dataclass(frozen=True)
class InputCase:
    """One volume to predict: its case name, where it is, and how to read it ("nifti" or "dicom")."""

    name: str
    path: Path
    kind: str = "nifti"

    def read(self) -> MedicalImage:
        return read_dicom_series(self.path) if self.kind == "dicom" else read_image(self.path)


def _case_name(filename: str) -> str:
    stem = strip_nifti_suffix(filename)
    m = re.fullmatch(r"(.+)_0000", stem)
    return m.group(1) if m else stem


def _nifti_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and is_nifti(p))


def _dataset_images_folder(root: Path) -> Path | None:
    """imagesTs (if it holds images) else imagesTr of an nnU-Net raw data set root; None otherwise."""
    ts, tr = root / "imagesTs", root / "imagesTr"
    if ts.is_dir() and _nifti_files(ts):
        return ts
    if tr.is_dir():
        return tr
    if ts.is_dir():
        return ts
    return None


def _folder_cases(folder: Path) -> list[InputCase]:
    from lmisa.datasets import Domain

    return [InputCase(c.name, c.image, "nifti") for c in Domain.from_images(folder).cases()]


def list_inputs(input: str | Path) -> tuple[list[InputCase], Path]:
    """The volumes behind ``input`` and the folder they were found in.

    ``input``: a NIfTI file; an nnU-Net raw data set root (``imagesTs`` if it holds images, else
    ``imagesTr``); a folder of NIfTI files (``_0000`` stripped from case names, other channels
    skipped); a DICOM series folder (one case named after the folder); or a folder whose sub-folders
    are DICOM series (one case each). Raises LmisaError naming ``input`` when it holds none of these.
    """
    path = Path(input)
    if not path.exists():
        raise LmisaError(f"{path}: input not found")
    if path.is_file():
        if not is_nifti(path):
            raise LmisaError(f"{path}: not a NIfTI file (.nii or .nii.gz); for DICOM give the series folder")
        return [InputCase(_case_name(path.name), path, "nifti")], path.parent
    images = _dataset_images_folder(path)
    if images is not None:
        cases = _folder_cases(images)
        if not cases:
            raise LmisaError(f"{images}: no NIfTI images (<case>_0000.nii.gz) found")
        return cases, images
    if _nifti_files(path):
        return _folder_cases(path), path
    if is_dicom_folder(path):
        return [InputCase(path.name, path, "dicom")], path
    subs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    series = [InputCase(p.name, p, "dicom") for p in subs if is_dicom_folder(p)]
    if series:
        return series, path
    raise LmisaError(f"{path}: no NIfTI images, DICOM series or nnU-Net data set (imagesTs/imagesTr) found")


@dataclass
class PredictionReport:
    """What ``predict_path`` did: output files written, existing output files kept, inputs that failed (a case's
    files: its label map, and its probabilities when asked for)."""

    output_dir: Path
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # output files that existed (overwrite=False)
    failed: list[tuple[Path, str]] = field(default_factory=list)  # (input, one-line reason)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no input failed (skipped existing outputs are fine)."""
        return not self.failed

    def lines(self) -> list[str]:
        """One line per skipped output and failed input."""
        out = [f"{p}: exists, kept" for p in self.skipped]
        out += [f"{p}: {msg}" for p, msg in self.failed]
        return out

    def summary(self) -> str:
        def files(n: int) -> str:
            return f"{n} file{'s' if n != 1 else ''}"

        parts = [f"{files(len(self.written))} written to {self.output_dir}"]
        if self.skipped:
            parts.append(f"{files(len(self.skipped))} existed, kept (use --overwrite)")
        if self.failed:
            parts.append(f"{len(self.failed)} input{'s' if len(self.failed) != 1 else ''} failed")
        return "; ".join(parts)


def _one_line(exc: BaseException, path: Path) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    prefix = f"{path}: "
    if msg.startswith(prefix):
        msg = msg[len(prefix) :]
    if not isinstance(exc, LmisaError):
        msg = f"{type(exc).__name__}: {msg}"
    return msg


def predict_path(
    model: LoadedModel | Ensemble,
    input: str | Path,
    output_dir: str | Path,
    overwrite: bool = False,
    device: str | torch.device | None = None,
    progress: bool = True,
    largest_component: bool | None = None,
    batch_size: int | None = None,
    on_case: Callable[[InputCase, str], None] | None = None,
    tta: bool | None = None,
    extent_margin: float | None = None,
    save_probabilities: bool = False,
) -> PredictionReport:
    """Predict every volume of ``input`` (see :func:`list_inputs`) into ``<output_dir>/<case>.nii.gz``, and with
    ``save_probabilities`` the class probabilities into ``<case>.npz`` (:mod:`lmisa.probabilities`).

    Outputs are uint8 with the input's affine and header. An existing output is left alone and
    listed in ``report.skipped`` unless ``overwrite`` (a case is predicted again when its probabilities are asked
    for and missing, its label map kept); an input that cannot be read or predicted is
    listed in ``report.failed`` with a one-line reason and the others go on. ``on_case(case, status)``
    is called after each case with status "written", "skipped" or "failed: <reason>".
    ``largest_component``, ``tta``, ``extent_margin``, ``batch_size``: as :func:`predict_volume`.
    """
    from lmisa.io import write_image
    from lmisa.probabilities import PROBABILITIES_SUFFIX, write_probabilities

    extent_caps(model, extent_margin)  # a margin this run cannot apply fails here, not once per case
    t0 = time.perf_counter()
    cases, source_folder = list_inputs(input)
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise LmisaError(f"{output_dir}: output exists and is not a folder")
    if output_dir.resolve() == source_folder.resolve():
        raise LmisaError(f"{output_dir}: is the input folder; write predictions to another folder")
    names = [c.name for c in cases]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise LmisaError(f"{input}: several inputs have the same case name: {', '.join(dupes)}")
    output_dir.mkdir(parents=True, exist_ok=True)
    report = PredictionReport(output_dir=output_dir)
    device = model.device if device is None else resolve_device(device)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]predict"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[case]}"), disable=not progress, transient=False,
    ) as bar:
        task = bar.add_task("predict", total=len(cases), case="")
        for case in cases:
            bar.update(task, case=case.name)
            outputs = [output_dir / f"{case.name}{OUTPUT_SUFFIX}"]
            if save_probabilities:
                outputs.append(output_dir / f"{case.name}{PROBABILITIES_SUFFIX}")
            kept = [] if overwrite else [o for o in outputs if o.exists()]
            report.skipped += kept
            missing = [o for o in outputs if o not in kept]
            status = "written" if missing else "skipped"
            if missing:
                try:
                    image = case.read()
                    labels, probs = _predict(model, image, device, batch_size, largest_component, tta, extent_margin,
                                             keep_probabilities=any(o.name.endswith(PROBABILITIES_SUFFIX) for o in missing))
                    for o in missing[::-1]:  # the label map last: a case interrupted between them is done again
                        try:
                            if o.name.endswith(PROBABILITIES_SUFFIX):
                                write_probabilities(o, probs, image.affine, model.plans.labels, overwrite=overwrite)
                            else:
                                write_image(o, labels, like=image, dtype=np.uint8, overwrite=overwrite)
                            report.written.append(o)
                        except FileExistsError:  # appeared meanwhile (another process): kept
                            report.skipped.append(o)
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as exc:  # one bad input never stops the others
                    msg = _one_line(exc, case.path)
                    report.failed.append((case.path, msg))
                    status = f"failed: {msg}"
            if on_case is not None:
                on_case(case, status)
            bar.advance(task)
        bar.update(task, case="")
    report.seconds = time.perf_counter() - t0
    return report
