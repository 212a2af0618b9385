"""Domains: nnU-Net-v2 raw data sets, their cases, an up-front integrity check, and case-level splits.

One *domain* (one modality) is one nnU-Net-v2 raw data set::

    <root>/dataset.json                  {"labels": {"background": 0, ...}, "file_ending": ".nii.gz", ...}
    <root>/imagesTr/<case>_0000.nii.gz   training images (lmisa reads channel 0000 only)
    <root>/labelsTr/<case>.nii.gz        their label maps, on the same grid
    <root>/imagesTs/<case>_0000.nii.gz   optional test images, no labels

``Domain.open(root)`` reads ``dataset.json`` and lists cases; ``check_domain(root)`` checks every file
up front and returns *all* problems found (an empty list means the data set is usable);
``split_cases`` makes a deterministic train/validation split by case, never by slice.

Example:
    >>> split_cases(["c", "a", "b", "d", "e"], val_fraction=0.2, seed=0) == split_cases(["e", "d", "c", "b", "a"])
    True
"""

from __future__ import annotations

import json
import math
import os
import random
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from lmisa.cores import usable_cores
from lmisa.errors import LmisaError
from lmisa.io import (
    NIFTI_SUFFIXES, ImageReadError, JsonFileError, float32_range_problem, is_nifti, read_image, read_json_object,
    strip_nifti_suffix, write_text_atomic
)

DEFAULT_FILE_ENDING = ".nii.gz"
CHANNEL = "0000"  # the only channel lmisa reads
GEOMETRY_RTOL = 1e-3

__all__ = [
    "Case",
    "Domain",
    "Problem",
    "check_case_files",
    "check_domain",
    "split_cases",
    "save_split",
    "load_split",
    "link_subset",
]


@dataclass(frozen=True)
class Case:
    """One case of a domain: its channel-0000 image and its label map (``None`` when it has none)."""

    name: str
    image: Path
    label: Path | None = None


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a data set, tied to the file (or folder) it is about."""

    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


# --------------------------------------------------------------------------------------------------
# dataset.json


def _read_dataset_json(root: Path) -> tuple[dict | None, list[Problem]]:
    """Parse and validate ``root/dataset.json``; returns (meta or None, problems)."""
    path = root / "dataset.json"
    if not path.is_file():
        what = "is not a file" if path.exists() else "missing (an nnU-Net v2 data set needs dataset.json)"
        return None, [Problem(path, what)]
    try:
        meta = read_json_object(path)
    except JsonFileError as exc:
        return None, [Problem(path, exc.reason)]

    problems: list[Problem] = []
    labels = meta.get("labels")
    if not isinstance(labels, dict) or not labels:
        problems.append(Problem(path, 'no "labels" (expected e.g. {"background": 0, "liver": 1})'))
    else:
        bad = {k: v for k, v in labels.items() if isinstance(v, bool) or not isinstance(v, int) or v < 0}
        if bad and all(str(k).isdigit() and isinstance(v, str) for k, v in labels.items()):
            flipped = {v: int(k) for k, v in labels.items()}
            problems.append(Problem(path, f'"labels" is written value: name, as in nnU-Net v1; v2 (and lmisa) '
                                          f'write name: value, e.g. {json.dumps(flipped)}'))
        elif bad:
            problems.append(
                Problem(path, f'"labels" values must be non-negative integers (region-based labels are not supported): {bad}')
            )
        else:
            values = list(labels.values())
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                problems.append(Problem(path, f'"labels" maps several names to the same value(s) {dupes}'))
            if 0 not in values:
                problems.append(Problem(path, '"labels" must declare the background as value 0'))
    ending = meta.get("file_ending", DEFAULT_FILE_ENDING)
    if not isinstance(ending, str) or ending not in NIFTI_SUFFIXES:
        problems.append(Problem(path, f'"file_ending" {ending!r} is not supported (use ".nii.gz" or ".nii")'))
    channels = meta.get("channel_names", meta.get("modality", {"0": "unknown"}))
    if not isinstance(channels, dict) or not channels:
        problems.append(Problem(path, '"channel_names" must be an object such as {"0": "CT"}'))
    elif "0" not in {str(k) for k in channels}:
        problems.append(Problem(path, '"channel_names" must declare channel "0"'))
    return meta, problems


# --------------------------------------------------------------------------------------------------
# Domain


def _case_stem(filename: str, file_ending: str) -> tuple[str, str | None] | None:
    """``x_0000.nii.gz`` -> (``x``, ``0000``); ``x.nii.gz`` -> (``x``, None); other endings -> None."""
    if not filename.endswith(file_ending):
        return None
    stem = filename[: -len(file_ending)]
    m = re.fullmatch(r"(.+)_(\d{4})", stem)
    return (m.group(1), m.group(2)) if m else (stem, None)


def _visible_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


class Domain:
    """One nnU-Net-v2 raw data set (one modality), or a plain folder of images (``from_images``).

    Attributes: ``root``, ``name``, ``labels`` (name -> value), ``file_ending``, ``channel_names``,
    ``meta`` (the whole ``dataset.json``). Splits: ``"train"`` (imagesTr + labelsTr) and ``"test"``
    (imagesTs, no labels) for a data set; one split, ``"test"``, for an image folder.
    """

    def __init__(
        self,
        root: Path,
        *,
        name: str,
        labels: dict[str, int],
        file_ending: str = DEFAULT_FILE_ENDING,
        channel_names: dict[str, str] | None = None,
        meta: dict | None = None,
        splits: dict[str, tuple[Path, Path | None]] | None = None,
        default_split: str = "train",
    ) -> None:
        self.root = Path(root)
        self.name = name
        self.labels = dict(labels)
        self.file_ending = file_ending
        self.channel_names = dict(channel_names or {"0": "unknown"})
        self.meta = dict(meta or {})
        self._splits = splits if splits is not None else {
            "train": (self.root / "imagesTr", self.root / "labelsTr"),
            "test": (self.root / "imagesTs", None),
        }
        self._default_split = default_split
        self._images_only = False  # from_images: every NIfTI file is a case

    # ---- construction
    @classmethod
    def open(cls, path: str | os.PathLike) -> "Domain":
        """Open an nnU-Net-v2 raw data set; raises LmisaError naming the file when ``dataset.json`` is
        missing or invalid. Does not read any image (use ``check_domain`` for that)."""
        root = Path(path)
        if not root.is_dir():
            raise LmisaError(f"{root}: data set folder not found" if not root.exists() else f"{root}: not a folder")
        meta, problems = _read_dataset_json(root)
        if problems:
            raise LmisaError(str(problems[0]))
        assert meta is not None
        channels = meta.get("channel_names", meta.get("modality", {"0": "unknown"}))
        return cls(
            root,
            name=str(meta.get("name") or root.name),
            labels={str(k): int(v) for k, v in meta["labels"].items()},
            file_ending=meta.get("file_ending", DEFAULT_FILE_ENDING),
            channel_names={str(k): str(v) for k, v in channels.items()},
            meta=meta,
        )

    @classmethod
    def from_images(cls, folder: str | os.PathLike, labels: dict[str, int] | None = None, name: str | None = None) -> "Domain":
        """A plain folder of NIfTI images, no labels (for prediction). Case names are file names without
        the NIfTI suffix and without a trailing ``_0000``; ``_0001``... files beside a ``_0000`` are
        other channels and are skipped. Its one split is ``"test"`` (also the default of ``cases()``)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise LmisaError(f"{folder}: image folder not found" if not folder.exists() else f"{folder}: not a folder")
        dom = cls(
            folder,
            name=name or folder.name,
            labels=dict(labels or {}),
            file_ending=DEFAULT_FILE_ENDING,
            splits={"test": (folder, None)},
            default_split="test",
        )
        dom._images_only = True
        return dom

    # ---- labels
    @property
    def label_names(self) -> list[str]:
        """Label names ordered by value (``["background", "liver", ...]``)."""
        return [k for k, _ in sorted(self.labels.items(), key=lambda kv: kv[1])]

    @property
    def num_classes(self) -> int:
        """Number of classes including the background."""
        return len(self.labels)

    @property
    def splits(self) -> list[str]:
        """Split names that exist on disk."""
        return [s for s, (images, _) in self._splits.items() if images.is_dir()]

    # ---- cases
    def cases(self, split: str | None = None) -> list[Case]:
        """Cases of a split sorted by name: ``"train"`` (default for a data set; label is
        ``labelsTr/<case><ending>`` or None when that file is missing) or ``"test"`` (imagesTs, no
        labels; empty when absent). Only channel-0000 images are listed."""
        split = split or self._default_split
        if split not in self._splits:
            raise LmisaError(f"{self.root}: unknown split {split!r} (have: {', '.join(self._splits)})")
        images, labels = self._splits[split]
        if not images.is_dir():
            return []
        if self._images_only:
            return self._folder_cases(images)
        out = []
        for f in _visible_files(images):
            parsed = _case_stem(f.name, self.file_ending)
            if parsed is None or parsed[1] != CHANNEL:
                continue
            label = labels / f"{parsed[0]}{self.file_ending}" if labels is not None else None
            out.append(Case(parsed[0], f, label if label is not None and label.is_file() else None))
        return sorted(out, key=lambda c: c.name)

    def _folder_cases(self, folder: Path) -> list[Case]:
        files = [f for f in _visible_files(folder) if is_nifti(f)]
        stems = {strip_nifti_suffix(f.name) for f in files}
        by_name: dict[str, Path] = {}
        for f in files:
            stem = strip_nifti_suffix(f.name)
            m = re.fullmatch(r"(.+)_(\d{4})", stem)
            if m and m.group(2) != CHANNEL and f"{m.group(1)}_{CHANNEL}" in stems:
                continue  # another channel of a multi-channel case
            name = m.group(1) if m and m.group(2) == CHANNEL else stem
            if name in by_name:
                raise LmisaError(f"{f}: same case name {name!r} as {by_name[name].name}")
            by_name[name] = f
        return [Case(n, by_name[n], None) for n in sorted(by_name)]

    def case(self, name: str) -> Case:
        """The case called ``name`` (searched in every split); LmisaError if there is none."""
        for split in self._splits:
            for c in self.cases(split):
                if c.name == name:
                    return c
        raise LmisaError(f"{self.root}: no case named {name!r}")

    def __repr__(self) -> str:
        return f"Domain({self.name!r}, root={str(self.root)!r}, labels={self.labels})"


# --------------------------------------------------------------------------------------------------
# check


def _geometry(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(spacing (sx, sy, sz), direction columns, origin) of a NIfTI affine."""
    a = np.asarray(affine, dtype=np.float64)
    spacing = np.sqrt((a[:3, :3] ** 2).sum(axis=0))
    direction = a[:3, :3] / np.where(spacing > 0, spacing, 1.0)
    return spacing, direction, a[:3, 3]


def _fmt(v: Iterable[float]) -> str:
    return "(" + ", ".join(f"{x:.4g}" for x in v) + ")"


def _geometry_differences(img_affine: np.ndarray, lab_affine: np.ndarray) -> list[str]:
    si, di, oi = _geometry(img_affine)
    sl, dl, ol = _geometry(lab_affine)
    out = []
    if not np.allclose(sl, si, rtol=GEOMETRY_RTOL, atol=0.0):
        out.append(f"spacing {_fmt(sl[::-1])} vs image {_fmt(si[::-1])} mm (z, y, x)")
    scale = float(max(np.abs(oi).max(), np.abs(ol).max(), si.max(), 1e-6))
    if not np.allclose(ol, oi, rtol=0.0, atol=GEOMETRY_RTOL * scale):
        out.append(f"origin {_fmt(ol)} vs image {_fmt(oi)} mm")
    if not np.allclose(dl, di, rtol=0.0, atol=GEOMETRY_RTOL):
        out.append(f"direction {_fmt(dl.T.ravel())} vs image {_fmt(di.T.ravel())}")
    return out


def _read_volume(path: Path, what: str, problems: list[Problem]):
    """read_image without conversion, turning every failure into a Problem; None on failure."""
    try:
        img = read_image(path, dtype=None)  # reads all the data: a truncated gzip fails here
    except ImageReadError as exc:
        msg = str(exc)
        prefix = f"{path}: "
        problems.append(Problem(path, msg[len(prefix):] if msg.startswith(prefix) else msg))
        return None
    except Exception as exc:  # never let one odd file stop the whole check
        problems.append(Problem(path, f"unreadable {what} ({type(exc).__name__}: {exc})"))
        return None
    arr = img.array
    if arr.ndim != 3:
        problems.append(Problem(path, f"expected a 3D {what}, got a {arr.ndim}D array of shape {arr.shape}"))
        return None
    if arr.size == 0:
        problems.append(Problem(path, f"empty {what} (shape {arr.shape})"))
        return None
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating) or arr.dtype == bool):
        problems.append(Problem(path, f"unsupported {what} data type {arr.dtype}"))
        return None
    return img


def label_values(arr: np.ndarray) -> np.ndarray:
    """The values a label map holds, sorted (uint8/uint16: a count per value, no sort of the volume)."""
    if arr.dtype == bool:
        arr = arr.view(np.uint8)
    if arr.dtype in (np.uint8, np.uint16):
        return np.flatnonzero(np.bincount(arr.ravel()))
    return np.unique(arr)


def _check_case(image: Path, label: Path | None, declared: tuple[int, ...] | None) -> list[Problem]:
    """Every per-file check of one case (runs in a worker process); ``declared`` None: values unchecked."""
    problems: list[Problem] = []
    img = _read_volume(image, "image", problems)
    if img is not None and np.issubdtype(img.array.dtype, np.floating):
        n_nan = n_inf = 0
        if not math.isfinite(img.array.sum(dtype=np.float64)):
            n_nan = int(np.isnan(img.array).sum())
            n_inf = int(np.isinf(img.array).sum())
        if n_nan or n_inf:
            problems.append(Problem(image, f"image contains {n_nan} NaN and {n_inf} Inf voxel(s)"))
        elif (too_large := float32_range_problem(img.array)) is not None:
            problems.append(Problem(image, too_large))
    if label is None:
        return problems
    lab = _read_volume(label, "label map", problems)
    if lab is not None:
        arr = lab.array
        ok = True
        if np.issubdtype(arr.dtype, np.floating):
            if not np.isfinite(arr).all():
                problems.append(Problem(label, "label map contains NaN or Inf"))
                ok = False
            elif not np.array_equal(np.rint(arr), arr):
                n = int((np.rint(arr) != arr).sum())
                problems.append(Problem(label, f"label map has non-integer values ({n} voxel(s))"))
                ok = False
        if ok and declared is not None:
            values = [int(v) for v in label_values(arr)]
            extra = sorted(set(values) - set(declared))
            if extra:
                shown = ", ".join(map(str, extra[:20])) + (", ..." if len(extra) > 20 else "")
                problems.append(
                    Problem(label, f"label values [{shown}] not declared in dataset.json labels (declared: {list(declared)})")
                )
    if img is not None and lab is not None:
        if img.array.shape != lab.array.shape:
            problems.append(
                Problem(label, f"shape {lab.array.shape} differs from image {image.name} {img.array.shape} (z, y, x)")
            )
        diffs = _geometry_differences(img.affine, lab.affine)
        if diffs:
            problems.append(Problem(label, f"geometry differs from image {image.name}: " + "; ".join(diffs)))
    return problems


def check_case_files(image: Path, label: Path | None, declared: tuple[int, ...] | None) -> list[Problem]:
    """Every per-file check of one image (and label map) outside a data set, e.g. a pseudo-label folder's:
    readable, finite, integer labels among ``declared`` (None: unchecked), same shape and geometry."""
    return _check_case_safe((image, label, declared))


def _check_case_safe(args: tuple[Path, Path | None, tuple[int, ...] | None]) -> list[Problem]:
    image, label, declared = args
    try:
        return _check_case(image, label, declared)
    except Exception as exc:  # pragma: no cover - defensive
        return [Problem(image, f"check failed ({type(exc).__name__}: {exc})")]


def _scan_folder(
    folder: Path,
    labels_folder: Path | None,
    file_ending: str,
    channels: set[str],
    require_labels: bool,
    problems: list[Problem],
) -> list[Case]:
    """File-name checks of one images folder (and its labels folder); returns the cases to read."""
    expected = f"<case>_{CHANNEL}{file_ending}"
    files = _visible_files(folder)
    by_case: dict[str, dict[str, Path]] = {}
    bare: dict[str, Path] = {}
    for f in files:
        parsed = _case_stem(f.name, file_ending)
        if parsed is None:
            problems.append(Problem(f, f"not an image of this data set (expected {expected})"))
        elif parsed[1] is None:
            bare[parsed[0]] = f
            problems.append(Problem(f, f"image file name must end with _{CHANNEL}{file_ending} (expected {expected})"))
        elif str(int(parsed[1])) not in channels:
            problems.append(Problem(f, f"channel {parsed[1]} is not declared in dataset.json channel_names"))
        else:
            by_case.setdefault(parsed[0], {})[parsed[1]] = f
    cases = []
    for name in sorted(by_case):
        chans = by_case[name]
        if CHANNEL not in chans:
            first = chans[min(chans)]
            problems.append(Problem(first, f"case {name!r} has no channel {CHANNEL} image ({name}_{CHANNEL}{file_ending})"))
            continue
        cases.append(Case(name, chans[CHANNEL], None))
    if not by_case and not bare:
        problems.append(Problem(folder, f"no images (expected {expected} files)"))

    if labels_folder is None:
        return cases
    if not labels_folder.is_dir():
        if require_labels and cases:
            problems.append(Problem(labels_folder, "missing folder (labels are required)"))
        return cases
    label_files = {}
    for f in _visible_files(labels_folder):
        if not f.name.endswith(file_ending):
            problems.append(Problem(f, f"not a label map of this data set (expected <case>{file_ending})"))
            continue
        label_files[f.name[: -len(file_ending)]] = f
    out = []
    for c in cases:
        lab = label_files.pop(c.name, None)
        if lab is None and require_labels:
            problems.append(Problem(c.image, f"no label map (expected {labels_folder / (c.name + file_ending)})"))
        out.append(Case(c.name, c.image, lab))
    for stem, f in sorted(label_files.items()):
        if stem in bare or stem in by_case:
            continue  # its image is there, misnamed (already reported)
        problems.append(Problem(f, f"label map without image (expected {folder / (stem + '_' + CHANNEL + file_ending)})"))
    return out


def raise_problems(problems: Sequence[object], what: str) -> None:
    """Raise one LmisaError listing ``problems`` (each names its file), headed by ``what``; nothing if none.
    A single problem is the whole message, on one line."""
    if len(problems) == 1:
        raise LmisaError(str(problems[0]))
    if problems:
        lines = "\n".join(str(p) for p in problems)
        raise LmisaError(f"{what}: {len(problems)} problem(s) found\n{lines}")


def check_domain(
    path: str | os.PathLike | Domain,
    require_labels: bool = True,
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Problem]:
    """Check an nnU-Net-v2 raw data set up front and return every problem found (empty: all good).

    Checks ``dataset.json`` (present, valid JSON, labels), the ``imagesTr``/``labelsTr`` pairing and
    file names, and then reads every image and label in full: unreadable or truncated files, volumes
    that are not 3D, NaN/Inf in images, non-integer or undeclared label values, image/label shape and
    geometry (spacing, origin, direction; relative tolerance 1e-3) mismatches. ``imagesTs`` is
    checked too when present (images only).

    ``require_labels=False`` (a target domain): labels are neither required nor read.
    ``workers``: threads reading files (None: 2, or 1 on a single core).
    ``progress(done, total)`` is called after each case is read.
    """
    root = path.root if isinstance(path, Domain) else Path(path)
    if not root.exists():
        return [Problem(root, "data set folder not found")]
    if not root.is_dir():
        return [Problem(root, "not a folder (expected an nnU-Net v2 data set folder)")]
    meta, problems = _read_dataset_json(root)
    file_ending = DEFAULT_FILE_ENDING
    declared: tuple[int, ...] | None = None  # None: no valid "labels" (reported), values not checked
    channels = {"0"}
    if meta is not None:
        fe = meta.get("file_ending", DEFAULT_FILE_ENDING)
        file_ending = fe if isinstance(fe, str) and fe in NIFTI_SUFFIXES else DEFAULT_FILE_ENDING
        labels = meta.get("labels")
        if isinstance(labels, dict) and labels and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in labels.values()
        ):
            declared = tuple(sorted(set(labels.values())))
        ch = meta.get("channel_names", meta.get("modality"))
        if isinstance(ch, dict) and ch:
            channels = {str(k) for k in ch}

    jobs: list[tuple[Path, Path | None, tuple[int, ...] | None]] = []
    images_tr = root / "imagesTr"
    if not images_tr.is_dir():
        problems.append(Problem(images_tr, "missing folder (no training images)"))
    else:
        labels_tr = root / "labelsTr" if require_labels else None
        cases = _scan_folder(images_tr, labels_tr, file_ending, channels, require_labels, problems)
        n_train = meta.get("numTraining") if meta is not None else None
        if isinstance(n_train, int) and not isinstance(n_train, bool) and cases and n_train != len(cases):
            problems.append(Problem(root / "dataset.json", f'"numTraining" is {n_train} but imagesTr has {len(cases)} case(s)'))
        jobs += [(c.image, c.label, declared) for c in cases]
    images_ts = root / "imagesTs"
    if images_ts.is_dir():
        ts_problems: list[Problem] = []
        cases_ts = _scan_folder(images_ts, None, file_ending, channels, False, ts_problems)
        problems += [p for p in ts_problems if not (p.path == images_ts and p.message.startswith("no images"))]
        jobs += [(c.image, None, declared) for c in cases_ts]

    total = len(jobs)
    if progress is not None:
        progress(0, total)
    n_workers = workers if workers is not None else min(2, usable_cores())
    results: list[list[Problem]]
    if n_workers > 1 and total > 1:
        # Threads, not processes: gzip inflation and numpy release the GIL. Measured on CT_BTCV
        # (24 cases, 2 cores): 1 thread 1.7 s, 2 threads 1.1 s, 2 spawned processes 2.2 s.
        with ThreadPoolExecutor(max_workers=min(n_workers, total)) as pool:
            results = list(_with_progress(pool.map(_check_case_safe, jobs), total, progress))
    else:
        results = list(_with_progress(map(_check_case_safe, jobs), total, progress))
    for r in results:
        problems += r
    return problems


def _with_progress(results: Iterable[list[Problem]], total: int, progress: Callable[[int, int], None] | None):
    for i, r in enumerate(results, 1):
        if progress is not None:
            progress(i, total)
        yield r


# --------------------------------------------------------------------------------------------------
# splits


def split_cases(names: Iterable[str], val_fraction: float = 0.2, seed: int = 0) -> dict[str, list[str]]:
    """Split case names into ``{"train": [...], "val": [...]}`` (each sorted), by case.

    Deterministic for a given ``seed`` and independent of the input order; at least one validation
    case (and at least one training case) when there are two cases or more.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    names = [str(n) for n in names]
    unique = sorted(set(names))
    if len(unique) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"duplicate case names: {dupes}")
    n = len(unique)
    n_val = int(round(n * val_fraction))
    if n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    else:
        n_val = 0
    order = unique[:]
    random.Random(seed).shuffle(order)
    val = set(order[:n_val])
    return {"train": [c for c in unique if c not in val], "val": [c for c in unique if c in val]}


def save_split(split: dict[str, list[str]], path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a split as JSON (atomically); refuses to replace an existing file unless ``overwrite``."""
    path = Path(path)
    _validate_split(split, path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists (pass overwrite=True to replace it)")
    return write_text_atomic(path, json.dumps({k: list(v) for k, v in split.items()}, indent=2) + "\n")


def load_split(path: str | os.PathLike) -> dict[str, list[str]]:
    """Read a split written by ``save_split``; LmisaError naming the file if it is missing or invalid."""
    path = Path(path)
    if not path.is_file():
        raise LmisaError(f"{path}: split file not found")
    split = read_json_object(path)
    _validate_split(split, path)
    return {k: list(v) for k, v in split.items()}


def is_case_list(value: object) -> bool:
    """Whether ``value`` is a list of case names, as split files hold them."""
    return isinstance(value, list) and all(isinstance(name, str) for name in value)


def _validate_split(split: object, path: Path) -> None:
    if not isinstance(split, dict) or not {"train", "val"} <= set(split):
        raise LmisaError(f'{path}: a split must be an object with "train" and "val" lists')
    for k, v in split.items():
        if not is_case_list(v):
            raise LmisaError(f'{path}: split "{k}" must be a list of case names')
    seen: dict[str, str] = {}
    for k, v in split.items():
        for name in v:
            if name in seen:
                raise LmisaError(f'{path}: case {name!r} is in both "{seen[name]}" and "{k}"')
            seen[name] = k


def link_subset(src: str | os.PathLike, dst: str | os.PathLike, cases: Iterable[str], with_labels: bool = True) -> Path:
    """Make ``dst`` an nnU-Net data set holding only ``cases`` of ``src``, as symbolic links.

    Used to give training and testing disjoint case sets without copying images (a split by case,
    never by slice). ``with_labels=False`` leaves ``labelsTr`` out entirely: an unlabelled domain that
    cannot leak a label. Existing links are kept; a ``dst`` with other content is refused.
    """
    src, dst = Path(src), Path(dst)
    domain = Domain.open(src)
    by_name = {c.name: c for c in domain.cases("train")}
    wanted = list(cases)
    missing = [c for c in wanted if c not in by_name]
    if missing:
        raise LmisaError(f"{src}: no such case(s): {', '.join(missing)}")
    (dst / "imagesTr").mkdir(parents=True, exist_ok=True)
    if with_labels:
        (dst / "labelsTr").mkdir(parents=True, exist_ok=True)
    for name in wanted:
        case = by_name[name]
        links = [(dst / "imagesTr" / case.image.name, case.image)]
        if with_labels and case.label is not None:
            links.append((dst / "labelsTr" / case.label.name, case.label))
        for link, target in links:
            if link.is_symlink() and link.resolve() == target.resolve():
                continue
            if link.exists() or link.is_symlink():
                raise LmisaError(f"{link}: exists and is not a link to {target}")
            link.symlink_to(target.resolve())
    names = {by_name[n].image.name for n in wanted} | {by_name[n].label.name for n in wanted if by_name[n].label}
    extra = sorted(p.name for sub in ("imagesTr", "labelsTr") if (dst / sub).is_dir() for p in (dst / sub).iterdir()
                   if p.name not in names)
    if extra:  # e.g. an earlier, different split: never let other cases into this subset
        raise LmisaError(f"{dst}: holds cases outside this subset ({', '.join(extra[:5])}...); use a new folder")
    meta = dict(domain.meta, numTraining=len(wanted))
    write_text_atomic(dst / "dataset.json", json.dumps(meta, indent=2))
    return dst
