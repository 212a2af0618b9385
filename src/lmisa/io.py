"""Medical image I/O with geometry: NIfTI (nibabel) and DICOM series (SimpleITK).

Arrays inside lmisa are ``(Z, Y, X)``: slices first, so ``array[k]`` is the k-th axial slice of a
volume as stored (the same order as ``SimpleITK.GetArrayFromImage``). The on-disk NIfTI voxel order
``(i, j, k)`` is ``(X, Y, Z)``; this module transposes on read and write, and keeps the affine in
nibabel's convention (voxel ``(i, j, k)`` to RAS+ millimetres).

Writing is atomic (a temporary file in the same folder, then ``os.replace``) and never replaces an
existing file unless ``overwrite=True``.

Example:
    >>> import numpy as np, tempfile, os
    >>> from lmisa.io import MedicalImage, write_image, read_image
    >>> d = tempfile.mkdtemp()
    >>> img = MedicalImage(np.zeros((3, 4, 5), np.float32), np.diag([1.5, 1.5, 4.0, 1.0]))
    >>> p = write_image(os.path.join(d, "x.nii.gz"), img)
    >>> back = read_image(p)
    >>> back.array.shape, back.spacing
    ((3, 4, 5), (4.0, 1.5, 1.5))
"""

from __future__ import annotations

import gzip
import json
import os
import secrets
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import nibabel as nib
import numpy as np

from lmisa.errors import LmisaError

NIFTI_SUFFIXES = (".nii.gz", ".nii")


class ImageReadError(LmisaError, ValueError):
    """A medical image could not be read; the message names the file."""


class JsonFileError(LmisaError, ValueError):
    """A JSON file could not be read as an object; ``reason`` is the message without the file name."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


@dataclass
class MedicalImage:
    """A volume with its geometry.

    ``array`` is ``(Z, Y, X)`` (or ``(Y, X)`` for a single slice); ``affine`` maps NIfTI voxel
    indices ``(i, j, k) = (x, y, z)`` to RAS+ world millimetres; ``header`` is the source NIfTI
    header when there was one (kept so that written outputs carry the input's header fields).
    """

    array: np.ndarray
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    header: nib.Nifti1Header | None = None

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size in mm in array axis order: ``(sz, sy, sx)``."""
        zooms = np.sqrt((np.asarray(self.affine)[:3, :3] ** 2).sum(axis=0))  # (sx, sy, sz)
        return tuple(float(z) for z in zooms[::-1][3 - self.array.ndim :])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)


def is_nifti(path: str | os.PathLike) -> bool:
    """True for ``.nii`` and ``.nii.gz`` file names."""
    return str(path).endswith(NIFTI_SUFFIXES)


def strip_nifti_suffix(name: str) -> str:
    """``case_0000.nii.gz`` -> ``case_0000``."""
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def load_nifti_header(path: str | os.PathLike) -> nib.Nifti1Image:
    """Open a NIfTI file lazily (header and affine only); raises ImageReadError naming the file."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: file not found")
    if not is_nifti(path):
        raise ImageReadError(f"{path}: not a NIfTI file (.nii or .nii.gz)")
    try:
        return nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for corrupt headers
        raise ImageReadError(f"{path}: unreadable NIfTI header ({type(exc).__name__}: {exc})") from None


def slice_spacing_mm(path: str | os.PathLike) -> float:
    """Through-plane voxel size (mm) of a NIfTI image, from its header alone."""
    return float(np.linalg.norm(np.asarray(load_nifti_header(path).affine)[:3, 2]))


def read_image(path: str | os.PathLike, dtype: np.dtype | type | None = np.float32) -> MedicalImage:
    """Read a NIfTI volume as ``(Z, Y, X)`` with its affine and header.

    Raises ImageReadError (one line, naming the file) for missing, corrupt or truncated files.
    """
    img = load_nifti_header(path)
    try:
        data = np.asanyarray(img.dataobj)
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile, ValueError) as exc:
        raise ImageReadError(f"{path}: truncated or corrupt image data ({type(exc).__name__}: {exc})") from None
    if data.ndim not in (2, 3):
        raise ImageReadError(f"{path}: expected a 3D volume, got {data.ndim}D array of shape {data.shape}")
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    array = np.ascontiguousarray(data.T)  # (X, Y, Z) -> (Z, Y, X)
    return MedicalImage(array=array, affine=np.asarray(img.affine, dtype=np.float64), header=img.header)


# far above any scanner's values (CT in HU, MR in arbitrary units, PET in Bq/mL: below 1e9), and low enough that a
# float32 sum over any image (MLNGM's local means) cannot overflow
MAX_ABS_INTENSITY = 1e20


def float32_range_problem(array: np.ndarray) -> str | None:
    """Why an image's finite values are too large for lmisa's float32 computing (they overflow it, and the cache
    fills with NaN), or None when they are not."""
    peak = max(-float(array.min()), float(array.max())) if array.size else 0.0
    if peak <= MAX_ABS_INTENSITY:
        return None
    return (f"image values reach {peak:.3g}, beyond {MAX_ABS_INTENSITY:.0e}, more than lmisa's float32 computing "
            "handles: rescale the image")


def read_label(path: str | os.PathLike) -> MedicalImage:
    """Read a label map as uint8; non-integer values or values outside 0..255 raise ImageReadError."""
    img = read_image(path, dtype=None)
    data = img.array
    if not np.issubdtype(data.dtype, np.integer):
        if not np.all(np.isfinite(data)):
            raise ImageReadError(f"{path}: label map contains NaN or Inf")
        rounded = np.rint(data)
        if not np.array_equal(rounded, data):
            raise ImageReadError(f"{path}: label map has non-integer values")
        data = rounded
    if data.size and (data.min() < 0 or data.max() > 255):
        raise ImageReadError(f"{path}: label values outside 0..255 (min {data.min()}, max {data.max()})")
    img.array = data.astype(np.uint8)
    return img


def write_image(
    path: str | os.PathLike,
    image: MedicalImage | np.ndarray,
    like: MedicalImage | None = None,
    *,
    dtype: np.dtype | type | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a ``(Z, Y, X)`` array as NIfTI, atomically.

    Geometry comes from ``image`` when it is a MedicalImage, else from ``like`` (affine and header),
    else identity. Raises FileExistsError if ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if not is_nifti(path):
        raise ValueError(f"{path}: output must end in .nii or .nii.gz")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists (pass overwrite=True to replace it)")
    if isinstance(image, MedicalImage):
        array, affine, header = image.array, image.affine, image.header
    else:
        array = np.asarray(image)
        affine = like.affine if like is not None else np.eye(4)
        header = like.header if like is not None else None
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    header = header.copy() if header is not None else None
    nii = nib.Nifti1Image(np.asarray(array).T, affine, header=header)
    nii.set_data_dtype(array.dtype)
    if np.issubdtype(array.dtype, np.integer):
        nii.header.set_slope_inter(1.0, 0.0)
    suffix = ".nii.gz" if str(path).endswith(".nii.gz") else ".nii"
    with atomic_write(path, f".tmp{suffix}") as tmp:
        nib.save(nii, tmp)
    return path


@contextmanager
def atomic_write(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A new temporary file beside ``path`` to write to (its name ends in ``suffix``, for writers that pick a
    format by it). When the block ends, it becomes ``path`` by a rename, so no reader ever sees half a file;
    when the block raises, it is removed. It has a new file's usual permissions (0666 less the umask in force),
    not the owner-only ones of ``tempfile.mkstemp``: outputs are meant to be shared."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
        except OSError as exc:  # a folder it may not write in, say: name what the user asked for, not the temporary
            raise type(exc)(exc.errno, exc.strerror, str(path)) from None
    else:
        raise FileExistsError(f"{path.parent}: no free temporary file name")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str, overwrite: bool = True) -> Path:
    """Write UTF-8 text through a temporary file and a rename: never a half-written file.

    With ``overwrite=False`` an existing ``path`` raises FileExistsError and is left alone.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists (pass overwrite=True / --overwrite to replace it)")
    with atomic_write(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    return path


def read_json_object(path: str | os.PathLike) -> dict:
    """The JSON object in ``path``: one reading, with one wording of what can go wrong, for every file
    lmisa reads back (dataset.json, split.json, records). JsonFileError names the file."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise JsonFileError(path, f"invalid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None
    except FileNotFoundError:
        raise JsonFileError(path, "not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise JsonFileError(path, f"unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(value, dict):
        raise JsonFileError(path, f"expected a JSON object, got {type(value).__name__}")
    return value


def affine_from_sitk(image: "SimpleITK.Image") -> np.ndarray:  # noqa: F821
    """NIfTI-style RAS affine of a SimpleITK image (which is LPS)."""
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
    origin = np.asarray(image.GetOrigin(), dtype=np.float64)
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    affine = np.eye(4)
    affine[:3, :3] = lps_to_ras @ direction @ np.diag(spacing)
    affine[:3, 3] = lps_to_ras @ origin
    return affine


def read_dicom_series(folder: str | os.PathLike) -> MedicalImage:
    """Read a DICOM series folder (the first series found) as ``(Z, Y, X)`` float32 with geometry."""
    import SimpleITK as sitk

    folder = Path(folder)
    if not folder.is_dir():
        raise ImageReadError(f"{folder}: not a folder")
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise ImageReadError(f"{folder}: no DICOM series found")
    files = reader.GetGDCMSeriesFileNames(str(folder), series[0])
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ImageReadError(f"{folder}: unreadable DICOM series ({first})") from None
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    return MedicalImage(array=array, affine=affine_from_sitk(image), header=None)


def is_dicom_folder(path: str | os.PathLike) -> bool:
    """True if ``path`` is a folder holding at least one DICOM series."""
    path = Path(path)
    if not path.is_dir() or not any(p.is_file() for p in path.iterdir()):
        return False
    import SimpleITK as sitk

    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # GDCM warns on every folder without a series
    try:
        return bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path)))
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)
