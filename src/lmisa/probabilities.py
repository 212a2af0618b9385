"""A case's class probabilities on disk (``lmisa predict --save-probabilities``): ``<case>.npz`` beside its label
map, as nnU-Net v2 writes them (``--save_probabilities``).

Why: a label map keeps only the argmax. The probabilities say how sure the model was (uncertainty, a confidence
threshold on pseudo-labels) and let runs be combined after the fact. The file holds ``probabilities``, float16
``(C, Z, Y, X)`` on the image's own voxel grid (``(C, Y, X)`` for a single 2D slice; class ``c`` is label value
``c``; before post-processing), the image's ``affine`` (4 x 4, RAS mm) and the ``labels`` table as JSON, so it needs
no other file to be read. A ``.npz`` is not a NIfTI file: tools that read the prediction folder's label maps
(``lmisa evaluate``) pass it by.

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "case_01.npz"
    >>> probs = np.full((2, 1, 2, 2), 0.5, np.float16)
    >>> _ = write_probabilities(path, probs, np.eye(4), {"background": 0, "liver": 1})
    >>> read = read_probabilities(path)
    >>> read.probabilities.shape, read.labels
    ((2, 1, 2, 2), {'background': 0, 'liver': 1})
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from lmisa.errors import LmisaError
from lmisa.io import atomic_write

PROBABILITIES_SUFFIX = ".npz"

__all__ = ["PROBABILITIES_SUFFIX", "CaseProbabilities", "write_probabilities", "read_probabilities"]


@dataclass(frozen=True)
class CaseProbabilities:
    """What a probabilities file holds."""

    probabilities: np.ndarray  # (C, Z, Y, X) float16; (C, Y, X) for a single slice
    affine: np.ndarray  # (4, 4)
    labels: dict[str, int]


def write_probabilities(
    path: str | os.PathLike, probabilities: np.ndarray, affine: np.ndarray, labels: Mapping[str, int],
    overwrite: bool = False,
) -> Path:
    """Write one case's probabilities (compressed, through a temporary file and a rename: never half a file).
    An existing ``path`` raises FileExistsError unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists (pass overwrite=True / --overwrite to replace it)")
    with atomic_write(path, ".tmp.npz") as tmp:
        np.savez_compressed(tmp, probabilities=np.asarray(probabilities, np.float16),
                            affine=np.asarray(affine, np.float64), labels=np.array(json.dumps(dict(labels))))
    return path


def read_probabilities(path: str | os.PathLike) -> CaseProbabilities:
    """Read a file :func:`write_probabilities` wrote; LmisaError naming the file when it is not one."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            return CaseProbabilities(npz["probabilities"], npz["affine"], json.loads(str(npz["labels"])))
    except FileNotFoundError:
        raise LmisaError(f"{path}: probabilities file not found") from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise LmisaError(f"{path}: not a probabilities file of lmisa predict ({type(exc).__name__}: {exc})") from None
