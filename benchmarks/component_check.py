"""Which component each organ keeps: the largest (the default) against the one by position
(``lmisa.components.keep_component_nearest``), without and with TTA, on each run's source validation cases.

    python benchmarks/component_check.py RUN [RUN ...] --out components.json [--min-share 0.1]

Each finished run predicts its source validation cases (its ``split.json``) once without post-processing per
pass (plain, TTA); both choices are then applied to the same prediction, each followed by the run's own extent
cap, and scored on the source labels (organ slices and whole volume). The offsets come from the run's source
training labels. No target image or label is read.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from lmisa.components import keep_component_nearest, organ_offsets_mm
from lmisa.evaluation import evaluate_folders
from lmisa.extent import cap_extent
from lmisa.io import read_image, write_image
from lmisa.postprocess import keep_largest_component
from lmisa.predict import extent_caps, load_run, predict_volume

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tta_check import PROTOCOLS, source_val_set  # noqa: E402

CHOICES = ("largest", "position")


def source_offsets(run: Path, classes: range) -> dict[int, list[float]]:
    split = json.loads((run / "split.json").read_text())
    folder = Path(split["source"]) / "labelsTr"
    maps = ((read_image(folder / f"{c}.nii.gz").array, read_image(folder / f"{c}.nii.gz").affine)
            for c in split["source_train"])
    return organ_offsets_mm(maps, classes)


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
            kept = {"largest": keep_largest_component(raw, classes=classes),
                    "position": keep_component_nearest(raw, image.affine, offsets, min_share=min_share)}
            for choice, labels in kept.items():
                if caps:
                    labels = cap_extent(labels, image.spacing[0], caps)
                out = work / f"{key}_{choice}" / image_path.name.replace("_0000.nii.gz", ".nii.gz")
                out.parent.mkdir(parents=True, exist_ok=True)
                write_image(out, labels.astype(np.uint8), like=image, dtype=np.uint8)
        for choice in CHOICES:
            for protocol in PROTOCOLS:
                summary = evaluate_folders(work / f"{key}_{choice}", data, out_dir=work / f"eval_{key}_{choice}_{protocol}",
                                           protocol=protocol, progress=False).to_dict()
                row[f"dice_{key}_{choice}_{protocol}"] = summary["mean_over_structures"]["dice"]["mean"]
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
