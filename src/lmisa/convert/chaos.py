"""CHAOS (DICOM series + per-slice PNG ground truth) to the nnU-Net-v2 raw layout.

Source layout (``SRC`` may also be a folder holding ``Train_Sets/`` with this inside)::

    SRC/MR/<patient>/T2SPIR/DICOM_anon/*.dcm                + SRC/MR/<patient>/T2SPIR/Ground/*.png
    SRC/MR/<patient>/T1DUAL/DICOM_anon/{InPhase,OutPhase}/*.dcm + SRC/MR/<patient>/T1DUAL/Ground/*.png
    SRC/CT/<patient>/DICOM_anon/*.dcm                       + SRC/CT/<patient>/Ground/*.png

``modality`` picks one series per patient: ``t2spir``, ``t1in`` (T1DUAL in-phase), ``t1out`` (T1DUAL
out-phase; in- and out-phase share ``T1DUAL/Ground``) or ``ct``. Case names are ``chaos_<patient>``
(the patient folder name, e.g. ``chaos_1``); a patient without a ``Ground`` folder is skipped and listed.

Labels: MR grey values 63/126/189/252 -> 1..4 (liver, right_kidney, left_kidney, spleen); CT 255 -> 1
(liver). 0 is background; any other grey value is an error for the case ("unknown grey value X in FILE").

How each PNG reaches its slice (nothing is guessed from positions or flipped):

1. The DICOM folder must hold exactly one series; it is read with SimpleITK's ``ImageSeriesReader``
   (``GetGDCMSeriesFileNames`` sorts the files by position), giving the ``(Z, Y, X)`` volume and its
   geometry (``lmisa.io.affine_from_sitk``). Every ``*.dcm`` file must belong to that series.
2. Each DICOM file is mapped to its slice index ``k`` in that volume by projecting its
   ImagePositionPatient on the volume's slice normal (ranked along the normal, from the volume origin);
   the file's own pixels are then checked to equal ``volume[k]``.
3. PNG masks are paired with DICOM files by name when the PNG stems are exactly the DICOM stems
   (``IMG-0004-00001.png`` <-> ``IMG-0004-00001.dcm``); otherwise the i-th PNG in natural sort order
   (``liver_GT_000.png``, ``liver_GT_001.png``, ...) pairs with the i-th DICOM file in InstanceNumber
   order. CHAOS releases differ in whether the CT masks run with or against ImagePositionPatient;
   this pairing follows the names / instance numbers, which is what the masks are indexed by, so the
   position order never decides which PNG goes where.
4. PNG row ``r``, column ``c`` is DICOM pixel row ``r``, column ``c`` (the pixel-array orientation), so
   ``label[k] = png`` of the paired file, not transposed or flipped. A PNG whose size is not the DICOM
   ``(Rows, Columns)`` is an error; so is a PNG count that differs from the DICOM slice count.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lmisa.convert.common import (
    CaseError,
    CaseSource,
    ConversionReport,
    ProgressFn,
    image_dtype,
    map_values,
    natural_key,
    run_conversion,
    source_folder,
    unreadable,
)
from lmisa.errors import LmisaError
from lmisa.io import MedicalImage, affine_from_sitk

#: modality -> (top folder, DICOM folder and Ground folder relative to the patient folder, channel)
MODALITIES: dict[str, tuple[str, str, str, str]] = {
    "t2spir": ("MR", "T2SPIR/DICOM_anon", "T2SPIR/Ground", "MR"),
    "t1in": ("MR", "T1DUAL/DICOM_anon/InPhase", "T1DUAL/Ground", "MR"),
    "t1out": ("MR", "T1DUAL/DICOM_anon/OutPhase", "T1DUAL/Ground", "MR"),
    "ct": ("CT", "DICOM_anon", "Ground", "CT"),
}
MR_GREY = {0: 0, 63: 1, 126: 2, 189: 3, 252: 4}
MR_LABELS = {"background": 0, "liver": 1, "right_kidney": 2, "left_kidney": 3, "spleen": 4}
CT_GREY = {0: 0, 255: 1}
CT_LABELS = {"background": 0, "liver": 1}


def chaos_labels(modality: str) -> tuple[dict[int, int], dict[str, int]]:
    """``(grey value -> label, dataset.json labels)`` for ``modality``."""
    return (CT_GREY, CT_LABELS) if modality == "ct" else (MR_GREY, MR_LABELS)


def _files(folder: Path, suffix: str) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == suffix and not p.name.startswith(".")),
        key=lambda p: natural_key(p.name),
    )


def _read_series(folder: Path) -> tuple["object", list[Path]]:
    """The SimpleITK volume of the only series in ``folder`` and the files it was read from."""
    import SimpleITK as sitk

    dcm_files = _files(folder, ".dcm")
    if not dcm_files:
        raise CaseError(f"{folder}: no .dcm files")
    try:
        series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    except RuntimeError as exc:
        raise unreadable(folder, exc, "DICOM folder") from None
    if not series:
        raise CaseError(f"{folder}: no readable DICOM series")
    if len(series) > 1:
        raise CaseError(f"{folder}: holds {len(series)} DICOM series, expected one")
    files = [Path(f) for f in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0])]
    missing = {p.resolve() for p in dcm_files} - {p.resolve() for p in files}
    if missing:
        raise CaseError(f"{sorted(missing)[0]}: not part of the DICOM series in {folder} ({len(missing)} such file(s))")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in files])
    try:
        volume = reader.Execute()
    except RuntimeError as exc:
        raise unreadable(folder, exc, "DICOM series") from None
    return volume, files


def _read_slice(path: Path) -> tuple[np.ndarray, np.ndarray, int | None]:
    """``(pixels (rows, cols), ImagePositionPatient (LPS), InstanceNumber or None)`` of one DICOM file."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        img = reader.Execute()
    except RuntimeError as exc:
        raise unreadable(path, exc, "DICOM file") from None
    arr = sitk.GetArrayFromImage(img)
    if arr.ndim == 3:
        if arr.shape[0] != 1:
            raise CaseError(f"{path}: multi-frame DICOM ({arr.shape[0]} frames) is not supported")
        arr = arr[0]
    if reader.HasMetaDataKey("0020|0032"):
        try:
            ipp = np.array([float(v) for v in reader.GetMetaData("0020|0032").strip().split("\\")], np.float64)
        except ValueError:
            raise CaseError(f"{path}: malformed ImagePositionPatient") from None
        if ipp.shape != (3,):
            raise CaseError(f"{path}: malformed ImagePositionPatient")
    else:
        raise CaseError(f"{path}: no ImagePositionPatient (0020,0032)")
    instance = None
    if reader.HasMetaDataKey("0020|0013"):
        try:
            instance = int(float(reader.GetMetaData("0020|0013").strip()))
        except ValueError:
            instance = None
    return arr, ipp, instance


def _slice_indices(volume, files: list[Path]) -> tuple[dict[Path, int], dict[Path, int | None]]:
    """Map each DICOM file to its slice index in ``volume`` by ImagePositionPatient along the normal."""
    import SimpleITK as sitk

    vol_array = sitk.GetArrayFromImage(volume)
    n_slices = vol_array.shape[0]
    if len(files) != n_slices:
        raise CaseError(f"{files[0].parent}: {len(files)} DICOM files but the series volume has {n_slices} slices")
    direction = np.asarray(volume.GetDirection(), np.float64).reshape(3, 3)
    normal = direction[:, 2]
    origin = np.asarray(volume.GetOrigin(), np.float64)
    dz = float(volume.GetSpacing()[2])
    pixels, along, instances = {}, {}, {}
    for f in files:
        arr, ipp, inst = _read_slice(f)
        pixels[f], along[f], instances[f] = arr, float((ipp - origin) @ normal), inst
    ranked = sorted(files, key=lambda f: along[f])
    ts = np.array([along[f] for f in ranked])
    if n_slices > 1 and np.min(np.diff(ts)) < 1e-3:
        dup = ranked[int(np.argmin(np.diff(ts))) + 1]
        raise CaseError(f"{dup}: two DICOM slices share the same position along the slice normal")
    if abs(ts[0]) > 0.5 * max(dz, 1e-6):
        raise CaseError(f"{ranked[0]}: slice positions do not start at the series origin (unexpected slice order)")
    index = {f: k for k, f in enumerate(ranked)}
    for f, k in index.items():
        if pixels[f].shape != vol_array.shape[1:] or not np.array_equal(
            pixels[f].astype(np.float64), vol_array[k].astype(np.float64)
        ):
            raise CaseError(f"{f}: pixels differ from slice {k} of the series volume (slice mapping failed)")
    return index, instances


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                mode = im.mode
            arr = np.asarray(im)
    except Exception as exc:  # PIL raises several types for broken files
        raise unreadable(path, exc, "PNG") from None
    if mode == "1":
        return arr.astype(np.int64) * 255
    if arr.ndim == 3:
        colour = arr[..., :3] if arr.shape[2] >= 3 else arr[..., :1]
        if not np.all(colour == colour[..., :1]):
            raise CaseError(f"{path}: colour PNG, expected a greyscale mask")
        arr = colour[..., 0]
    return arr.astype(np.int64)


def _pair(dcm_files: list[Path], pngs: list[Path], instances: dict[Path, int | None]) -> list[tuple[Path, Path]]:
    """``[(dicom_file, png_file)]``: by identical stems, else i-th PNG <-> i-th DICOM by InstanceNumber."""
    by_stem = {f.stem: f for f in dcm_files}
    if len(by_stem) == len(dcm_files) and {p.stem for p in pngs} == set(by_stem):
        return [(by_stem[p.stem], p) for p in pngs]
    missing = [f for f in dcm_files if instances[f] is None]
    if missing:
        raise CaseError(f"{missing[0]}: no InstanceNumber (0020,0013), cannot pair the PNG masks")
    ordered = sorted(dcm_files, key=lambda f: instances[f])
    for a, b in zip(ordered, ordered[1:]):
        if instances[a] == instances[b]:
            raise CaseError(f"{b}: InstanceNumber {instances[b]} also used by {a.name}, cannot pair the PNG masks")
    return list(zip(ordered, pngs))


def _loader(dicom_dir: Path, ground_dir: Path, grey: dict[int, int]):
    def load() -> tuple[MedicalImage, MedicalImage]:
        import SimpleITK as sitk

        if not dicom_dir.is_dir():
            raise CaseError(f"{dicom_dir}: DICOM folder not found")
        volume, files = _read_series(dicom_dir)
        pngs = _files(ground_dir, ".png")
        n = volume.GetSize()[2]
        if len(pngs) != n:
            raise CaseError(
                f"{ground_dir}: mismatched slice count, {len(pngs)} PNG mask(s) for {n} DICOM slice(s) in {dicom_dir}"
            )
        index, instances = _slice_indices(volume, files)
        array = sitk.GetArrayFromImage(volume)
        label = np.zeros(array.shape, np.uint8)
        for dcm, png in _pair(files, pngs, instances):
            mask = _read_png(png)
            if mask.shape != array.shape[1:]:
                raise CaseError(
                    f"{png}: size {mask.shape[0]}x{mask.shape[1]} (rows x cols) differs from the DICOM "
                    f"{array.shape[1]}x{array.shape[2]} of {dcm.name}"
                )
            label[index[dcm]] = map_values(mask, grey, png, what="grey value")
        affine = affine_from_sitk(volume)
        return MedicalImage(image_dtype(array), affine), MedicalImage(label, affine)

    return load


def _modality_root(src: Path, top: str) -> Path:
    for base in (src, src / "Train_Sets"):
        if (base / top).is_dir():
            return base / top
    raise LmisaError(f"{src}: no CHAOS {top} folder ({top}/<patient>/...) found")


def find_chaos_cases(src: str | os.PathLike, modality: str) -> list[CaseSource]:
    """The CHAOS patients of ``modality`` under ``src`` (natural order of patient folder names)."""
    modality = modality.lower()
    if modality not in MODALITIES:
        raise LmisaError(f"unknown CHAOS modality {modality!r} (choose from {', '.join(MODALITIES)})")
    top, dicom_rel, ground_rel, _ = MODALITIES[modality]
    root = _modality_root(source_folder(src), top)
    grey, _ = chaos_labels(modality)
    cases = []
    for patient in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name)):
        name = f"chaos_{patient.name}"
        ground = patient / ground_rel
        if not ground.is_dir():
            cases.append(CaseSource(name, skip_reason=f"no {ground_rel} folder (unlabelled)"))
        else:
            cases.append(CaseSource(name, load=_loader(patient / dicom_rel, ground, grey)))
    if not cases:
        raise LmisaError(f"{root}: no patient folders")
    return cases


def convert_chaos(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    modality: str,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> ConversionReport:
    """Convert the CHAOS ``modality`` series (with ground truth) under ``src`` into ``dst``."""
    modality = modality.lower()
    cases = find_chaos_cases(src, modality)
    _, labels = chaos_labels(modality)
    return run_conversion(
        cases,
        dst,
        labels=labels,
        channel_name=MODALITIES[modality][3],
        description=f"CHAOS {modality.upper()} converted by lmisa convert chaos",
        overwrite=overwrite,
        progress=progress,
    )


__all__ = ["MODALITIES", "chaos_labels", "convert_chaos", "find_chaos_cases"]
