"""MM-WHS 2017 (``{ct,mr}_train_XXXX_{image,label}.nii.gz``) to the nnU-Net-v2 raw layout.

* Files: ``SRC/<modality>_train_<4 digits>_image.nii.gz`` and ``..._label.nii.gz`` (also ``.nii``),
  looked up in ``SRC`` and in its direct subfolders (the download unpacks to ``ct_train/``,
  ``mr_train/``). One data set per modality: ``modality`` (``"ct"`` or ``"mr"``) is required.
* Case names: ``<modality>_<number>``, e.g. ``ct_train_1001_image.nii.gz`` -> ``ct_1001``.
* Labels: MM-WHS codes 205, 420, 500, 820 -> 1..4 (myocardium, left_atrium, left_ventricle,
  ascending_aorta); 550, 600, 850 -> background. ``all_structures=True`` keeps the seven structures:
  205 myocardium, 420 left_atrium, 500 left_ventricle, 550 right_atrium, 600 right_ventricle,
  820 ascending_aorta, 850 pulmonary_artery -> 1..7. Any other code (or a non-integer value) is an
  error for that case.
* An image without its label (or a label without its image) is an error for that case; the unlabelled
  test images (``*_test_*_image``) are listed as skipped.
* Geometry: the image file's affine and header are copied unchanged (no reorientation); the label is
  written on the image's grid after checking shape and affine (within 1e-3 mm).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from lmisa.convert.common import (
    CaseSource,
    ConversionReport,
    ProgressFn,
    check_same_grid,
    image_dtype,
    integer_values,
    map_values,
    require_file,
    run_conversion,
    source_folder,
)
from lmisa.errors import LmisaError
from lmisa.io import MedicalImage, read_image

MODALITIES = ("ct", "mr")
FILE_RE = re.compile(r"^(ct|mr)_(train|test)_(\d+)_(image|label)\.nii(\.gz)?$")

STRUCTURES = {
    205: "myocardium",
    420: "left_atrium",
    500: "left_ventricle",
    550: "right_atrium",
    600: "right_ventricle",
    820: "ascending_aorta",
    850: "pulmonary_artery",
}
FOUR_STRUCTURES = (205, 420, 500, 820)


def mmwhs_mapping(all_structures: bool = False) -> tuple[dict[int, int], dict[str, int]]:
    """``(code -> label, dataset.json labels)`` for the default four structures or all seven."""
    kept = sorted(STRUCTURES) if all_structures else list(FOUR_STRUCTURES)
    mapping = {0: 0, **{code: 0 for code in STRUCTURES}}
    labels = {"background": 0}
    for value, code in enumerate(kept, start=1):
        mapping[code] = value
        labels[STRUCTURES[code]] = value
    return mapping, labels


def _scan(src: Path) -> list[Path]:
    folders = [src] + sorted(p for p in src.iterdir() if p.is_dir())
    return [p for folder in folders for p in sorted(folder.iterdir()) if p.is_file() and FILE_RE.match(p.name)]


def _loader(img_file: Path | None, lab_file: Path | None, expected_img: Path, expected_lab: Path, mapping: dict[int, int]):
    def load() -> tuple[MedicalImage, MedicalImage]:
        image_path = require_file(img_file or expected_img)
        label_path = require_file(lab_file or expected_lab)
        image = read_image(image_path, dtype=None)
        raw = read_image(label_path, dtype=None)
        check_same_grid(image, raw, label_path)
        label = map_values(integer_values(raw.array, label_path), mapping, label_path, what="label code")
        image = MedicalImage(image_dtype(image.array), image.affine, image.header)
        return image, MedicalImage(label, image.affine, image.header)

    return load


def find_mmwhs_cases(src: str | os.PathLike, modality: str, all_structures: bool = False) -> list[CaseSource]:
    """The MM-WHS cases of ``modality`` under ``src``, sorted by case name."""
    modality = modality.lower()
    if modality not in MODALITIES:
        raise LmisaError(f"unknown MM-WHS modality {modality!r} (choose from {', '.join(MODALITIES)})")
    src = source_folder(src)
    mapping, _ = mmwhs_mapping(all_structures)
    train: dict[str, dict[str, Path]] = {}
    test: dict[str, Path] = {}
    for path in _scan(src):
        mod, split, number, kind, _ = FILE_RE.match(path.name).groups()
        if mod != modality:
            continue
        name = f"{mod}_{number}"
        if split == "test":
            if kind == "image":
                test[name] = path
            continue
        slot = train.setdefault(name, {})
        if kind in slot:
            raise LmisaError(f"{path}: duplicate MM-WHS {kind} for case {name} (also {slot[kind]})")
        slot[kind] = path
    if not train and not test:
        raise LmisaError(f"{src}: no MM-WHS {modality} files ({modality}_train_XXXX_image.nii.gz) found")
    cases = []
    for name in sorted(set(train) | set(test)):
        if name not in train:
            cases.append(CaseSource(name, skip_reason=f"{test[name].name}: test image without label"))
            continue
        files = train[name]
        any_file = files.get("image") or files.get("label")
        number = name.split("_", 1)[1]
        expected_img = any_file.parent / f"{modality}_train_{number}_image.nii.gz"
        expected_lab = any_file.parent / f"{modality}_train_{number}_label.nii.gz"
        cases.append(CaseSource(name, load=_loader(files.get("image"), files.get("label"), expected_img, expected_lab, mapping)))
    return cases


def convert_mmwhs(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    modality: str,
    all_structures: bool = False,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> ConversionReport:
    """Convert the MM-WHS 2017 ``modality`` training pairs under ``src`` into ``dst``."""
    cases = find_mmwhs_cases(src, modality, all_structures)
    _, labels = mmwhs_mapping(all_structures)
    return run_conversion(
        cases,
        dst,
        labels=labels,
        channel_name="CT" if modality.lower() == "ct" else "MR",
        description=f"MM-WHS 2017 {modality.upper()} converted by lmisa convert mmwhs"
        + (" (all seven structures)" if all_structures else " (myocardium, left atrium, left ventricle, ascending aorta)"),
        overwrite=overwrite,
        progress=progress,
    )
