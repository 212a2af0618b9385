"""Voxel-axis orientation: a 2D model learns slices along the third voxel axis, in the in-plane order the
files store, so every image must reach it in one orientation.

A scan stored with its left-right axis flipped, or sagittal where the training scans are axial, would be read
as another anatomy (a left kidney where the source has the right one), and no loss would say so. nibabel's
axis codes (``LAS``: voxel axes towards patient Left, Anterior, Superior) name an orientation from the header.
Training refuses images in mixed orientations (:func:`orientation_problems`: its cache, extents and slice
spacings all read arrays as stored); prediction turns an image into the run's orientation and its labels back
(:func:`to_axes`, as nnU-Net's reorienting reader does), which flips and transposes exactly.

    >>> import numpy as np
    >>> axis_codes_of(np.diag([-1.0, 1.0, 1.0, 1.0]))
    'LAS'
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from typing import Callable

import nibabel as nib
import numpy as np
from nibabel import orientations as ornt

from lmisa.datasets import Problem
from lmisa.io import MedicalImage, load_nifti_header

__all__ = ["axis_codes_of", "axis_codes", "orientation_problems", "to_axes"]


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


def to_axes(image: MedicalImage, codes: str) -> tuple[MedicalImage, Callable[[np.ndarray], np.ndarray]]:
    """``image`` stored in voxel axes ``codes`` (the same voxels and world positions), and the function that takes
    an array on that grid (``(Z, Y, X)``, e.g. predicted labels) back onto ``image``'s grid. A 3D image already in
    ``codes`` comes back as it is, with the identity."""
    if image.array.ndim != 3 or axis_codes_of(image.affine) == codes:
        return image, lambda a: a
    current = ornt.io_orientation(image.affine)
    forward = ornt.ornt_transform(current, ornt.axcodes2ornt(tuple(codes)))
    xyz = image.array.transpose(2, 1, 0)  # nibabel's voxel order (i, j, k) = (x, y, z)
    turned = ornt.apply_orientation(xyz, forward)
    affine = np.asarray(image.affine) @ ornt.inv_ornt_aff(forward, xyz.shape)
    backward = ornt.ornt_transform(ornt.axcodes2ornt(tuple(codes)), current)

    def back(array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(ornt.apply_orientation(array.transpose(2, 1, 0), backward).transpose(2, 1, 0))

    return MedicalImage(np.ascontiguousarray(turned.transpose(2, 1, 0)), affine, image.header), back
