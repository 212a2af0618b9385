"""Pseudo-labels for self-training: a trained model's label maps of the target training cases
(``data.pseudo_labels``).

Why: the segmenter learns the target's appearance only through the critic and the reconstruction. A model's own
post-processed predictions on the target training images (``lmisa predict -i TARGET -o FOLDER``) give it a
segmentation term there too, with no target label read. The folder holds one ``<case><ending>`` label map per
target training case, in the image's geometry; the target data set's own label folder is refused, so a slip
cannot turn adaptation into supervision.

Example:
    >>> from pathlib import Path
    >>> pseudo_label_file(Path("pseudo"), "case_01", ".nii.gz").as_posix()
    'pseudo/case_01.nii.gz'
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

from lmisa.datasets import Domain, Problem, check_case_files
from lmisa.errors import LmisaError

__all__ = ["pseudo_label_file", "pseudo_label_jobs", "pseudo_label_tag"]


def pseudo_label_file(folder: Path, case: str, file_ending: str) -> Path:
    """Where the pseudo-label map of ``case`` lies (the name ``lmisa predict`` writes)."""
    return folder / f"{case}{file_ending}"


def pseudo_label_jobs(folder: str | Path, target: Domain, names: Sequence[str]) -> list[tuple[str, Path, Path]]:
    """``(case, image, pseudo-label)`` for the target training cases ``names``, every file checked first.

    Raises LmisaError (one line per problem, each naming its file) when the folder is missing or is the target's
    own label folder, when a case has no map, or when a map is unreadable, not integer, holds a value the target
    data set does not declare, or differs from its image in shape or geometry.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise LmisaError(f"{folder}: data.pseudo_labels folder not found")
    if folder.resolve() == (target.root / "labelsTr").resolve():
        raise LmisaError(f"{folder}: data.pseudo_labels is the target data set's own label folder; pseudo-labels "
                         f"are a trained model's predictions (lmisa predict -i {target.root} -o FOLDER)")
    cases = {c.name: c for c in target.cases("train")}
    declared = tuple(sorted(target.labels.values()))
    jobs, problems = [], []
    for name in names:
        label = pseudo_label_file(folder, name, target.file_ending)
        if not label.is_file():
            problems.append(Problem(label, f"no pseudo-label map for target case {name}"))
            continue
        problems += check_case_files(cases[name].image, label, declared)
        jobs.append((name, cases[name].image, label))
    if problems:
        lines = "\n".join(str(p) for p in problems)
        raise LmisaError(f"data.pseudo_labels: {len(problems)} problem(s) found\n{lines}")
    return jobs


def pseudo_label_tag(jobs: Sequence[tuple[str, Path, Path]]) -> str:
    """A short fingerprint of the pseudo-label files (path, size, modification time): a folder of maps made
    again gets a cache of its own instead of the stale one."""
    h = hashlib.sha1()
    for name, _, label in sorted(jobs):
        st = label.stat()
        h.update(f"{name}|{label.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:10]
