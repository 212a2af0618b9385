"""Pseudo-labels for self-training: a trained model's label maps of the target training cases
(``data.pseudo_labels``).

Why: the segmenter learns the target's appearance only through the critic and the reconstruction. A model's own
post-processed predictions on the target training images (``lmisa predict -m RUN -i TARGET/imagesTr -o FOLDER``)
give it a segmentation term there too, with no target label used. The folder holds one label map per target
training case, ``<case><ending>`` or ``<case>.nii.gz`` (what ``lmisa predict`` writes), in the image's geometry.
The target data set's own label folder, or a map that is one of its label files (a link into its ``labelsTr``, or
the same bytes, gzipped or not), is refused, so a slip cannot turn adaptation into supervision. A run records a
fingerprint of the maps' contents and a resume refuses maps changed since.

Example:
    >>> from pathlib import Path
    >>> pseudo_label_file(Path("pseudo"), "case_01", ".nii.gz").as_posix()
    'pseudo/case_01.nii.gz'
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path
from typing import Mapping, Sequence

from lmisa.datasets import Domain, Problem, check_case_files, raise_problems
from lmisa.errors import LmisaError

PREDICT_ENDING = ".nii.gz"  # lmisa.predict.OUTPUT_SUFFIX, without importing torch here
MAKE_MAPS = "lmisa predict -m RUN -i {target}/imagesTr -o FOLDER"

__all__ = ["pseudo_label_file", "pseudo_label_jobs", "pseudo_label_tag", "check_same_pseudo_labels"]


def pseudo_label_file(folder: Path, case: str, file_ending: str) -> Path:
    """Where the pseudo-label map of ``case`` lies: ``<case><file_ending>`` (the target's ending), else
    ``<case>.nii.gz`` when only that exists (``lmisa predict`` writes .nii.gz for any input)."""
    own, written = _map_names(folder, case, file_ending)
    return written if not own.is_file() and written.is_file() else own


def _map_names(folder: Path, case: str, file_ending: str) -> tuple[Path, Path]:
    """The two names a map of ``case`` may have: the target's ending, and what ``lmisa predict`` writes."""
    return folder / f"{case}{file_ending}", folder / f"{case}{PREDICT_ENDING}"


def pseudo_label_jobs(
    folder: str | Path, target: Domain, names: Sequence[str], labels: Mapping[str, int] | None = None,
    check: bool = True,
) -> list[tuple[str, Path, Path]]:
    """``(case, image, pseudo-label)`` for the target training cases ``names``, every file checked first
    (unless ``check``: the maps are only found, as after :func:`lmisa.training.data.check_training_inputs`
    checked them).

    ``labels``: the run's label table (the source's), whose values a map may hold; None: the target's. Raises
    LmisaError (one line per problem, each naming its file) when the folder is missing or is the target's own
    label folder, when a case has no map or two (both endings), when a map is one of the target's label files
    (a link into its ``labelsTr``, or the same bytes, gzipped or not: the label files are opened for this
    comparison only), or when a map is unreadable, not integer, holds another value, or differs from its image
    in shape or geometry.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise LmisaError(f"{folder}: data.pseudo_labels folder not found")
    own_folder = (target.root / "labelsTr").resolve()
    if folder.resolve() == own_folder:
        raise LmisaError(f"{folder}: data.pseudo_labels is the target data set's own label folder; pseudo-labels "
                         f"are a trained model's predictions ({MAKE_MAPS.format(target=target.root)})")
    cases = {c.name: c for c in target.cases("train")}
    declared = tuple(sorted((labels if labels is not None else target.labels).values()))
    jobs, problems = [], []
    for name in names:
        if name not in cases:
            problems.append(Problem(target.root / "imagesTr", f"no target training case {name} (the run's split names it)"))
            continue
        label = pseudo_label_file(folder, name, target.file_ending)
        both = set(_map_names(folder, name, target.file_ending))
        if not label.is_file():
            problems.append(Problem(label, f"no pseudo-label map for target case {name} "
                                           f"({MAKE_MAPS.format(target=target.root)} writes one per case)"))
            continue
        if len(both) == 2 and all(p.is_file() for p in both):
            problems.append(Problem(label, f"two maps for target case {name} ({' and '.join(sorted(p.name for p in both))}); "
                                           "keep one"))
            continue
        jobs.append((name, cases[name].image, label))
        if not check:
            continue
        own = cases[name].label
        if label.resolve().parent == own_folder or (own is not None and _same_payload(label, own)):
            problems.append(Problem(label, "is one of the target's own label maps: pseudo-labels are a trained "
                                           "model's predictions, never the target's labels"))
            continue
        problems += check_case_files(cases[name].image, label, declared)
    raise_problems(problems, "data.pseudo_labels")
    return jobs


def _payload(path: Path) -> bytes:
    """A file's bytes, decompressed when gzipped."""
    return gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()


def _same_payload(a: Path, b: Path) -> bool:
    """The same NIfTI bytes: a copy of ``b``, gzipped or not."""
    return _payload(a) == _payload(b)


def pseudo_label_tag(jobs: Sequence[tuple[str, Path, Path]]) -> str:
    """A short fingerprint of the pseudo-label maps' contents: a folder of maps made again gets a cache of its
    own instead of the stale one, and a resumed run can tell (a copy or a touch of the same maps keeps it)."""
    h = hashlib.sha1()
    for name, _, label in sorted(jobs):
        h.update(f"{name}|{hashlib.sha1(label.read_bytes()).hexdigest()}\n".encode())
    return h.hexdigest()[:10]


def check_same_pseudo_labels(recorded: str | None, jobs: Sequence[tuple[str, Path, Path]], folder: str) -> None:
    """A resumed run trains on the maps it started with: refuse maps changed since (``recorded``: the tag in
    the run's ``split.json``; None in runs from before it was recorded)."""
    if recorded is not None and (now := pseudo_label_tag(jobs)) != recorded:
        raise LmisaError(f"{folder}: the pseudo-label maps changed since the run started (fingerprint {recorded}, "
                         f"now {now}); restore them, or start a new run on the new maps")
