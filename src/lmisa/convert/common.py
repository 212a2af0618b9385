"""Shared machinery of the converters: case discovery results, per-case atomic writing, dataset.json.

Every converter turns a downloaded data set into lmisa's nnU-Net-v2 raw layout::

    DST/dataset.json
    DST/imagesTr/<case>_0000.nii.gz
    DST/labelsTr/<case>.nii.gz

A converter only *describes* its cases (:class:`CaseSource`: a name, and either a reason to skip it or
a ``load`` function returning the image and the already-mapped label map); :func:`run_conversion`
does the rest, the same way for every format:

* nothing is written before every output path has been checked: without ``overwrite`` an existing
  ``dataset.json``, an existing case file, or any other NIfTI file already in ``imagesTr``/``labelsTr``
  refuses the whole conversion up front (``FileExistsError``, nothing written);
* each case is loaded and validated completely in memory; a malformed case (missing or unreadable
  file, unknown label value, mismatched geometry...) becomes one line in ``report.failed`` naming the
  case and the file, writes nothing, and the next case goes on;
* a good case is written into a hidden staging folder ``DST/.lmisa-convert-*`` (``lmisa.io.write_image``,
  atomic) and only then moved into ``imagesTr``/``labelsTr``; if moving fails, what was moved is
  removed again, so a case is either complete or absent;
* ``dataset.json`` is written last (atomically), only if at least one case was converted, with
  ``numTraining`` equal to the number of cases converted by this call and the converter's labels.

With ``overwrite``, case files and ``dataset.json`` are replaced; NIfTI files in ``imagesTr``/``labelsTr``
that this call did not write (cases of an earlier run that failed or vanished now) are left alone,
are not counted in ``numTraining`` and are listed in ``report.stale`` so the caller can warn.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from lmisa.errors import LmisaError
from lmisa.io import MedicalImage, is_nifti, write_image, write_text_atomic

IMAGES_DIR = "imagesTr"
LABELS_DIR = "labelsTr"
DATASET_JSON = "dataset.json"
FILE_ENDING = ".nii.gz"

#: ``progress(done, total, case_name)``: called with ``done == 0`` before the first case, then after
#: every case (converted, skipped or failed).
ProgressFn = Callable[[int, int, str], None]

_CASE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class CaseError(LmisaError):
    """A malformed source case; the message names the file (the case name is added by the runner)."""


@dataclass
class CaseSource:
    """One case found in the source tree.

    ``load()`` returns ``(image, label)`` as MedicalImages with the label already mapped to the target
    label values (uint8), or raises (preferably :class:`CaseError` naming the file). A case with a
    ``skip_reason`` is not loaded: it is reported as skipped (e.g. an unlabelled test case).
    """

    name: str
    load: Callable[[], tuple[MedicalImage, MedicalImage]] | None = None
    skip_reason: str | None = None


@dataclass
class ConversionReport:
    """What a conversion did. ``failed`` and ``skipped`` map case names to one-line reasons."""

    dst: Path
    labels: dict[str, int]
    converted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)
    dataset_json: Path | None = None

    @property
    def ok(self) -> bool:
        """True when no case failed and something was converted."""
        return not self.failed and bool(self.converted)


def image_path(dst: Path, case: str) -> Path:
    return Path(dst) / IMAGES_DIR / f"{case}_0000{FILE_ENDING}"


def label_path(dst: Path, case: str) -> Path:
    return Path(dst) / LABELS_DIR / f"{case}{FILE_ENDING}"


def one_line(exc: BaseException) -> str:
    """A single-line description of an exception (its message's last non-empty line)."""
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if isinstance(exc, LmisaError) and lines:
        return " ".join(lines)
    detail = lines[-1] if lines else ""
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def unreadable(path: Path | str, exc: BaseException, what: str = "file") -> CaseError:
    """A CaseError for an unreadable file, naming it."""
    return CaseError(f"{path}: unreadable {what} ({one_line(exc)})")


def require_file(path: Path) -> Path:
    if not path.is_file():
        raise CaseError(f"{path}: file not found")
    return path


def check_same_grid(image: MedicalImage, label: MedicalImage, label_file: Path | str, atol: float = 1e-3) -> None:
    """Raise CaseError unless the label map has the image's shape and (within ``atol`` mm) affine."""
    if image.array.shape != label.array.shape:
        raise CaseError(
            f"{label_file}: shape {tuple(label.array.shape)} differs from the image's {tuple(image.array.shape)} "
            "(arrays are (Z, Y, X))"
        )
    if not np.allclose(np.asarray(image.affine), np.asarray(label.affine), atol=atol, rtol=0):
        raise CaseError(f"{label_file}: affine differs from the image's (geometry mismatch)")


def integer_values(array: np.ndarray, path: Path | str) -> np.ndarray:
    """The array as int64; raises CaseError for NaN/Inf or non-integer values (naming ``path``)."""
    if np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        return array.astype(np.int64, copy=False)
    if not np.all(np.isfinite(array)):
        raise CaseError(f"{path}: label map contains NaN or Inf")
    rounded = np.rint(array)
    if not np.array_equal(rounded, array):
        raise CaseError(f"{path}: label map has non-integer values")
    return rounded.astype(np.int64)


def map_values(values: np.ndarray, mapping: dict[int, int], path: Path | str, what: str = "label value") -> np.ndarray:
    """Map integer source values through ``mapping`` to uint8; a value not in ``mapping`` is a CaseError.

    The message is ``"unknown <what> X in <path>"`` (the smallest unknown value, plus how many others).
    """
    present = np.unique(values)
    unknown = [int(v) for v in present if int(v) not in mapping]
    if unknown:
        more = f" (and {len(unknown) - 1} other unknown value(s))" if len(unknown) > 1 else ""
        raise CaseError(f"unknown {what} {unknown[0]} in {path}{more}")
    out = np.zeros(values.shape, np.uint8)
    for src, dst in mapping.items():
        if dst and src in present:
            out[values == src] = dst
    return out


def image_dtype(array: np.ndarray) -> np.ndarray:
    """Keep integer intensities as they are; store floating-point ones as float32."""
    if np.issubdtype(array.dtype, np.floating) and array.dtype != np.float32:
        return array.astype(np.float32)
    if array.dtype == bool:
        return array.astype(np.uint8)
    return array


def _existing_nifti(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and is_nifti(p) and not p.name.startswith("."))


def _preflight(dst: Path, names: Sequence[str], overwrite: bool) -> None:
    """Refuse (FileExistsError, nothing written) when the outputs would replace or mix with existing ones."""
    if dst.exists() and not dst.is_dir():
        raise FileExistsError(f"{dst}: exists and is not a folder")
    if overwrite:
        return
    if (dst / DATASET_JSON).exists():
        raise FileExistsError(f"{dst / DATASET_JSON}: exists (pass --overwrite to replace the data set)")
    for name in names:
        for path in (image_path(dst, name), label_path(dst, name)):
            if path.exists():
                raise FileExistsError(f"{path}: exists (pass --overwrite to replace it)")
    for sub in (IMAGES_DIR, LABELS_DIR):
        others = _existing_nifti(dst / sub)
        if others:
            raise FileExistsError(
                f"{dst / sub}: already holds {len(others)} NIfTI file(s) not from this conversion "
                f"(e.g. {others[0].name}); use an empty DST or pass --overwrite"
            )


def _validate_case(name: str, image: MedicalImage, label: MedicalImage) -> None:
    if image.array.ndim != 3:
        raise CaseError(f"{name}: image is {image.array.ndim}D, expected a 3D volume")
    if label.array.shape != image.array.shape:
        raise CaseError(f"{name}: label shape {label.array.shape} differs from image shape {image.array.shape}")
    if label.array.dtype != np.uint8:
        raise CaseError(f"{name}: internal error, label map is {label.array.dtype}, expected uint8")


def _commit_case(staging: Path, dst: Path, name: str, image: MedicalImage, label: MedicalImage, overwrite: bool) -> None:
    """Write both files in ``staging``, then move them into place; on any failure nothing stays behind."""
    tmp_img = write_image(staging / f"{name}_0000{FILE_ENDING}", image)
    tmp_lab = write_image(staging / f"{name}{FILE_ENDING}", label)
    final_img, final_lab = image_path(dst, name), label_path(dst, name)
    moved: list[Path] = []
    try:
        for tmp, final in ((tmp_img, final_img), (tmp_lab, final_lab)):
            if final.exists() and not overwrite:
                raise FileExistsError(f"{final}: exists (pass --overwrite to replace it)")
            os.replace(tmp, final)
            moved.append(final)
    except BaseException:
        for path in moved:
            path.unlink(missing_ok=True)
        tmp_img.unlink(missing_ok=True)
        tmp_lab.unlink(missing_ok=True)
        raise


def write_dataset_json(dst: Path, meta: dict, overwrite: bool) -> Path:
    """Write ``dst/dataset.json`` atomically; refuses to replace an existing one unless ``overwrite``."""
    path = Path(dst) / DATASET_JSON
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists (pass --overwrite to replace it)")
    write_text_atomic(path, json.dumps(meta, indent=2) + "\n", overwrite=True)
    return path


def run_conversion(
    cases: Iterable[CaseSource],
    dst: str | os.PathLike,
    *,
    labels: dict[str, int],
    channel_name: str,
    description: str,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> ConversionReport:
    """Convert ``cases`` into the nnU-Net-v2 raw layout under ``dst`` (see the module docstring).

    Raises FileExistsError (nothing written) when outputs exist and ``overwrite`` is False, LmisaError
    for duplicate or unusable case names, and LmisaError if writing into ``dst`` fails (a disk error
    stops the conversion; the case being written is removed, earlier cases stay, no dataset.json).
    """
    dst = Path(dst)
    cases = list(cases)
    names = [c.name for c in cases]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise LmisaError(f"duplicate case names in the source: {', '.join(dupes)}")
    for name in names:
        if not _CASE_NAME.match(name):
            raise LmisaError(f"unusable case name {name!r} (letters, digits, '_', '-', '.' only)")
    to_write = [c.name for c in cases if c.skip_reason is None]
    _preflight(dst, to_write, overwrite)

    report = ConversionReport(dst=dst, labels=dict(labels))
    total = len(cases)
    if progress:
        progress(0, total, "")
    if to_write:
        (dst / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
        (dst / LABELS_DIR).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".lmisa-convert-", dir=dst)) if to_write else None
    try:
        for done, case in enumerate(cases, start=1):
            if case.skip_reason is not None:
                report.skipped[case.name] = case.skip_reason
            else:
                try:
                    if case.load is None:
                        raise CaseError("no loader")
                    image, label = case.load()
                    _validate_case(case.name, image, label)
                except MemoryError:
                    raise
                except Exception as exc:  # one bad case must not stop the others
                    report.failed[case.name] = f"{case.name}: {one_line(exc)}"
                else:
                    try:
                        _commit_case(staging, dst, case.name, image, label, overwrite)
                    except FileExistsError:
                        raise
                    except OSError as exc:
                        raise LmisaError(f"{dst}: cannot write case {case.name} ({one_line(exc)})") from None
                    report.converted.append(case.name)
                    del image, label
            if progress:
                progress(done, total, case.name)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)

    written = {image_path(dst, n).name for n in report.converted} | {label_path(dst, n).name for n in report.converted}
    for sub in (IMAGES_DIR, LABELS_DIR):
        report.stale += [f"{sub}/{p.name}" for p in _existing_nifti(dst / sub) if p.name not in written]

    if report.converted:
        meta = {
            "name": dst.name,
            "description": description,
            "channel_names": {"0": channel_name},
            "labels": dict(labels),
            "numTraining": len(report.converted),
            "file_ending": FILE_ENDING,
        }
        report.dataset_json = write_dataset_json(dst, meta, overwrite)
    return report


def natural_key(text: str) -> tuple:
    """Sort key that orders embedded numbers numerically: ``img2 < img10``."""
    return tuple((0, int(tok), "") if tok.isdigit() else (1, 0, tok) for tok in re.split(r"(\d+)", text) if tok)


def source_folder(src: str | os.PathLike) -> Path:
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"{src}: source folder not found")
    if not src.is_dir():
        raise LmisaError(f"{src}: not a folder")
    return src
