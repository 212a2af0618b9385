"""Voxel-axis orientation: lmisa slices every array as stored, so all training images must share one.

lmisa does not reorient (neither does nnU-Net's SimpleITK reader): a 2D model learns slices along the
third voxel axis, in the in-plane order the files store. A target scan stored with its left-right axis
flipped, or sagittal where the source is axial, would be read as another anatomy (a left kidney where the
source has the right one), and no loss would say so. The check compares nibabel's axis codes (``LAS``:
voxel axes towards patient Left, Anterior, Superior) from the headers alone.

    >>> import numpy as np
    >>> axis_codes_of(np.diag([-1.0, 1.0, 1.0, 1.0]))
    'LAS'
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import nibabel as nib
import numpy as np

from lmisa.datasets import Problem
from lmisa.io import load_nifti_header

__all__ = ["axis_codes_of", "axis_codes", "orientation_problems"]


def axis_codes_of(affine: np.ndarray) -> str:
    """The patient direction each voxel axis points to, e.g. ``'LAS'`` (nibabel's ``aff2axcodes``)."""
    return "".join(c or "?" for c in nib.aff2axcodes(np.asarray(affine)))


def axis_codes(path: Path) -> str:
    """:func:`axis_codes_of` a NIfTI file's header (the image data is not read)."""
    return axis_codes_of(load_nifti_header(path).affine)


def orientation_problems(images: Iterable[Path]) -> list[Problem]:
    """One problem per image whose axis codes differ from the first image's (the reference)."""
    problems: list[Problem] = []
    reference: tuple[Path, str] | None = None
    for path in images:
        codes = axis_codes(path)
        if reference is None:
            reference = (path, codes)
        elif codes != reference[1]:
            problems.append(Problem(path, f"voxel axes {codes} differ from {reference[0].name}'s {reference[1]}; lmisa "
                                          "slices arrays as stored, so reorient all images alike first "
                                          "(e.g. nibabel.as_closest_canonical)"))
    return problems
