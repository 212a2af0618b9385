"""Voxel-axis orientation: a 2D model learns slices along the third voxel axis, in the in-plane order the
files store, so every image must reach it in one orientation.

A scan stored with its left-right axis flipped, or sagittal where the training scans are axial, would be read
as another anatomy (a left kidney where the source has the right one), and no loss would say so. nibabel's
axis codes (``LAS``: voxel axes towards patient Left, Anterior, Superior) name an orientation from the header.
A run takes the codes of its first labelled training image. Training turns every image stored with flipped
axes into them (:func:`to_axes`: exact, a flip of the array) and refuses one whose voxel axes run along other
anatomical axes (:func:`orientation_problems`: slice spacing, extents and organ spans are read along the
stored third axis). Prediction turns any image into the run's codes and its labels back, as nnU-Net's
reorienting reader does.

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

__all__ = ["axis_codes_of", "axis_codes", "known", "orientation_problems", "needs_turning", "to_axes"]

_AXIS = {"L": "LR", "R": "LR", "A": "AP", "P": "AP", "S": "SI", "I": "SI"}


def axis_codes_of(affine: np.ndarray) -> str:
    """The patient direction each voxel axis points to, e.g. ``'LAS'`` (nibabel's ``aff2axcodes``; ``?`` for an
    axis the affine leaves without direction)."""
    return "".join(c or "?" for c in nib.aff2axcodes(np.asarray(affine)))


def axis_codes(path: Path) -> str:
    """:func:`axis_codes_of` a NIfTI file's header (the image data is not read)."""
    return axis_codes_of(load_nifti_header(path).affine)


def known(codes: str | None) -> bool:
    """Codes that name a direction for every axis (an affine without one cannot be turned)."""
    return codes is not None and "?" not in codes


def _axes(codes: str) -> tuple[str, ...]:
    """The anatomical axis each voxel axis runs along, whatever its sign: ``LAS`` and ``RPS`` alike."""
    return tuple(_AXIS[c] for c in codes)


def orientation_problems(images: Iterable[Path]) -> list[Problem]:
    """One problem per image whose voxel axes run along other anatomical axes than the first image's (a sagittal
    scan among axial ones); flipped axes are no problem (:func:`to_axes`), nor an affine without directions."""
    problems: list[Problem] = []
    reference: tuple[Path, str] | None = None
    for path in images:
        codes = axis_codes(path)
        if not known(codes):
            continue
        if reference is None:
            reference = (path, codes)
        elif _axes(codes) != _axes(reference[1]):
            problems.append(Problem(path, f"voxel axes {codes} run along other anatomical axes than {reference[1]} "
                                          f"({reference[0]}); lmisa trains on the slices as stored, so resample "
                                          "these scans into the others' axes first (e.g. nibabel.as_closest_canonical "
                                          "for all)"))
    return problems


def needs_turning(images: Iterable[Path], codes: str | None) -> bool:
    """True when some image is stored otherwise than ``codes`` (None: a run that does not turn images)."""
    return known(codes) and any(known(c) and c != codes for c in map(axis_codes, images))


def to_axes(image: MedicalImage, codes: str) -> tuple[MedicalImage, Callable[[np.ndarray], np.ndarray]]:
    """``image`` stored in voxel axes ``codes`` (the same voxels and world positions), and the function that takes
    an array on that grid (``(Z, Y, X)``, e.g. predicted labels) back onto ``image``'s grid. An image already in
    ``codes``, not 3D, or with an affine that names no direction for some axis comes back as it is."""
    current_codes = axis_codes_of(image.affine) if image.array.ndim == 3 else codes
    if current_codes == codes or not (known(codes) and known(current_codes)):
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
