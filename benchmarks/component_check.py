"""Which component each organ keeps: the largest (the default) against the one by position
(:func:`keep_component_nearest`), without and with TTA, on each run's source validation cases.

"Largest component" trusts size alone. After test-time augmentation a CT spleen can split into the organ and a
spurious blob above it, and the blob is the larger (docs/RESULTS.md 2q: one case's spleen Dice 53 -> 0). By
position, among an organ's components of at least ``--min-share`` of its largest, the one kept lies nearest the
centroid of all predicted organs plus the organ's mean offset from the centroid of all organs in the source
training labels (:func:`organ_offsets_mm`). Not adopted (RESULTS 2r): the predicted organs' centroid is itself
pulled by spurious organ, so on 600-step runs it chose wrong more often than size did. It lives here, not in
the package.

    python benchmarks/component_check.py RUN [RUN ...] --out components.json [--min-share 0.1]

Each finished run predicts its source validation cases (its ``split.json``) once without post-processing per
pass (plain, TTA); both choices are then applied to the same prediction, each followed by the run's own extent
cap (``largest`` is the run's own post-processing, ``lmisa.predict``'s), and scored on the source labels (organ slices and whole volume). The offsets come from the run's source
training labels. No target image or label is read.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
from scipy import ndimage

from lmisa.io import read_image, write_image
from lmisa.predict import _postprocess, extent_caps, load_run, predict_volume

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tta_check import scores, source_val_set  # noqa: E402

CHOICES = ("largest", "position")


def centroid_mm(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """World position (mm, the affine's axes) of the centroid of ``mask`` ``(Z, Y, X)``; the affine maps voxel
    ``(x, y, z)`` as nibabel does (:mod:`lmisa.io`)."""
    zyx = np.asarray(ndimage.center_of_mass(mask), dtype=np.float64)
    return np.asarray(affine, dtype=np.float64)[:3, :3] @ zyx[::-1] + np.asarray(affine, dtype=np.float64)[:3, 3]


def organ_offsets_mm(label_maps: Iterable[tuple[np.ndarray, np.ndarray]], classes: Iterable[int]) -> dict[int, list[float]]:
    """Per class, the mean world offset (mm) of its centroid from the centroid of all organ voxels, over the
    ``(labels (Z, Y, X), affine)`` maps that hold it; a class in none of them gets none."""
    wanted = [int(c) for c in classes if int(c) != 0]
    found: dict[int, list[np.ndarray]] = {c: [] for c in wanted}
    for labels, affine in label_maps:
        labels = np.asarray(labels)
        if not (labels > 0).any():
            continue
        centre = centroid_mm(labels > 0, affine)
        for c in wanted:
            if (labels == c).any():
                found[c].append(centroid_mm(labels == c, affine) - centre)
    return {c: np.mean(v, axis=0).tolist() for c, v in found.items() if v}


def keep_component_nearest(
    labels: np.ndarray, affine: np.ndarray, offsets: Mapping[int, Sequence[float]], min_share: float = 0.1,
    connectivity: int | None = None,
) -> np.ndarray:
    """A copy of ``labels`` ``(Z, Y, X)`` where each class keeps one connected component: for a class in
    ``offsets``, of those at least ``min_share`` of its largest, the one nearest its expected place (module
    docstring); for any other class, the largest. Removed voxels become 0."""
    labels = np.asarray(labels)
    out = labels.copy()
    if labels.ndim != 3 or not (labels > 0).any():
        return out
    if not 0 < min_share <= 1:
        raise ValueError(f"min_share must be in (0, 1], got {min_share}")
    structure = ndimage.generate_binary_structure(3, connectivity or 3)
    centre = centroid_mm(labels > 0, affine)
    for c in (int(v) for v in np.unique(labels) if v != 0):
        comps, n = ndimage.label(labels == c, structure=structure)
        if n <= 1:
            continue
        sizes = np.bincount(comps.ravel())[1:]
        keep = int(np.argmax(sizes)) + 1
        if c in offsets:
            candidates = [k + 1 for k in np.flatnonzero(sizes >= min_share * sizes.max())]
            target = centre + np.asarray(offsets[c], dtype=np.float64)
            keep = min(candidates, key=lambda k: float(np.linalg.norm(centroid_mm(comps == k, affine) - target)))
        out[(comps > 0) & (comps != keep)] = 0
    return out


def source_offsets(run: Path, classes: range) -> dict[int, list[float]]:
    split = json.loads((run / "split.json").read_text())
    folder = Path(split["source"]) / "labelsTr"
    images = (read_image(folder / f"{c}.nii.gz") for c in split["source_train"])
    return organ_offsets_mm(((image.array, image.affine) for image in images), classes)


def measure(run: Path, work: Path, min_share: float) -> dict:
    model = load_run(run, "best", device="cpu")
    classes = range(1, model.plans.num_classes)
    offsets = source_offsets(run, classes)
    caps = extent_caps(model)
    data = source_val_set(run, work / "data")
    row: dict = {"run": str(run), "offsets_mm": {str(k): v for k, v in offsets.items()}}
    for tta in (False, True):
        key = "tta" if tta else "plain"
        for image_path in sorted((data / "imagesTr").glob("*_0000.nii.gz")):
            image = read_image(image_path)
            raw = predict_volume(model, image, device="cpu", tta=tta, largest_component=False, extent_margin=0.0)
            kept = {"largest": _postprocess(raw, model, image, None, caps),
                    "position": _postprocess(keep_component_nearest(raw, image.affine, offsets, min_share=min_share),
                                             model, image, False, caps)}
            for choice, labels in kept.items():
                out = work / f"{key}_{choice}" / image_path.name.replace("_0000.nii.gz", ".nii.gz")
                out.parent.mkdir(parents=True, exist_ok=True)
                write_image(out, labels.astype(np.uint8), like=image, dtype=np.uint8)
        for choice in CHOICES:
            row.update(scores(work / f"{key}_{choice}", data, work, f"{key}_{choice}"))
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--min-share", type=float, default=0.1)
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, run in enumerate(args.runs):
            if not (run / "DONE").exists():
                raise SystemExit(f"error: {run}: not a finished run (no DONE)")
            row = measure(run, Path(tmp) / str(i), args.min_share)
            rows.append(row)
            d = {k: row[f"dice_{k}_organ_slices"] for k in ("plain_largest", "plain_position", "tta_largest", "tta_position")}
            print(f"{run}: organ slices, plain {d['plain_largest']:.2f} / {d['plain_position']:.2f} (largest / position), "
                  f"TTA {d['tta_largest']:.2f} / {d['tta_position']:.2f}", flush=True)
    for key in ("plain", "tta"):
        gains = [r[f"dice_{key}_position_organ_slices"] - r[f"dice_{key}_largest_organ_slices"] for r in rows]
        print(f"{key}: position - largest {statistics.mean(gains):+.3f} on the mean, higher in {sum(g > 0 for g in gains)}, "
              f"lower in {sum(g < 0 for g in gains)} of {len(rows)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
