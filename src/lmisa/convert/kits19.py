"""KiTS19 (``SRC/case_XXXXX/imaging.nii.gz`` + ``segmentation.nii.gz``) to the nnU-Net-v2 raw layout.

* Cases: every folder ``case_<5 digits>`` in ``SRC`` (or in ``SRC/data`` when ``SRC`` holds none, the
  layout of the kits19 git repository). The case name is the folder name, e.g. ``case_00000``.
* Labels: KiTS19 uses 0 background, 1 kidney, 2 tumour. By default kidney and tumour become one
  ``kidney`` label 1 (``{"background": 0, "kidney": 1}``); ``keep_tumour=True`` keeps tumour as 2
  (``{"background": 0, "kidney": 1, "tumour": 2}``). Any other value is an error for that case.
* A case folder without ``segmentation.nii.gz`` (the KiTS19 test cases 210-299) is skipped and listed;
  a case with a segmentation but no ``imaging.nii.gz`` is an error for that case.
* Geometry: KiTS19 stores its arrays as (slice, H, W) in the file with an affine that says so. The
  file's affine and header are copied unchanged (no reorientation), so in lmisa's ``(Z, Y, X)`` array
  convention axis 0 of a converted KiTS19 volume is the file's third axis, not the axial one. The label
  is written with the image's affine after checking that the segmentation has the same shape and
  (within 1e-3 mm) the same affine. Integer intensities keep their dtype; floating ones become float32.
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

CASE_DIR = re.compile(r"^case_\d{5}$")
IMAGE_FILE = "imaging.nii.gz"
LABEL_FILE = "segmentation.nii.gz"


def kits19_labels(keep_tumour: bool = False) -> dict[str, int]:
    labels = {"background": 0, "kidney": 1}
    if keep_tumour:
        labels["tumour"] = 2
    return labels


def _case_root(src: Path) -> Path:
    if any(CASE_DIR.match(p.name) for p in src.iterdir() if p.is_dir()):
        return src
    if (src / "data").is_dir() and any(CASE_DIR.match(p.name) for p in (src / "data").iterdir() if p.is_dir()):
        return src / "data"
    raise LmisaError(f"{src}: no KiTS19 case folders (case_XXXXX/{IMAGE_FILE}) found")


def _loader(folder: Path, keep_tumour: bool):
    mapping = {0: 0, 1: 1, 2: 2 if keep_tumour else 1}

    def load() -> tuple[MedicalImage, MedicalImage]:
        img_file = require_file(folder / IMAGE_FILE)
        lab_file = require_file(folder / LABEL_FILE)
        image = read_image(img_file, dtype=None)
        seg = read_image(lab_file, dtype=None)
        check_same_grid(image, seg, lab_file)
        label = map_values(integer_values(seg.array, lab_file), mapping, lab_file)
        image = MedicalImage(image_dtype(image.array), image.affine, image.header)
        return image, MedicalImage(label, image.affine, image.header)

    return load


def find_kits19_cases(src: str | os.PathLike, keep_tumour: bool = False) -> list[CaseSource]:
    """The KiTS19 cases under ``src``, sorted by name (skipped ones carry a reason)."""
    root = _case_root(source_folder(src))
    cases = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and CASE_DIR.match(p.name)):
        if not (folder / LABEL_FILE).exists():
            cases.append(CaseSource(folder.name, skip_reason=f"no {LABEL_FILE} (unlabelled case)"))
        else:
            cases.append(CaseSource(folder.name, load=_loader(folder, keep_tumour)))
    return cases


def convert_kits19(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    keep_tumour: bool = False,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> ConversionReport:
    """Convert a KiTS19 download into ``dst`` (nnU-Net-v2 raw). See the module docstring."""
    cases = find_kits19_cases(src, keep_tumour)
    return run_conversion(
        cases,
        dst,
        labels=kits19_labels(keep_tumour),
        channel_name="CT",
        description="KiTS19 kidney CT converted by lmisa convert kits19"
        + (" (kidney 1, tumour 2)" if keep_tumour else " (kidney and tumour merged into kidney 1)"),
        overwrite=overwrite,
        progress=progress,
    )
