"""A label-free check of an adapted model: are the organs it predicts on the target the size of organs?

    python benchmarks/organ_volumes.py RUN --target TARGET_DATASET --source SOURCE_DATASET [--out DIR]

Predicts the target's images (never reads a target label) with the run's best checkpoint and compares
each organ's median predicted volume (mL) with its median reference volume in the SOURCE labels: the
anatomy is the same in both modalities, so a ratio far from 1 shows erased (<< 1) or spilled (>> 1)
organs without any target label. Score: the mean over organs of |log(ratio)| (0 = same sizes). Used to
choose between configurations on the target's unlabelled training images (docs/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np


def label_volumes_ml(path: Path, labels: dict[str, int]) -> dict[str, float]:
    """Volume (mL) of every foreground label of one label map, from its voxel size."""
    img = nib.load(str(path))
    counts = np.bincount(np.asarray(img.dataobj, dtype=np.int64).ravel(), minlength=max(labels.values()) + 1)
    voxel_ml = float(np.prod(img.header.get_zooms()[:3])) / 1000.0
    return {name: float(counts[value]) * voxel_ml for name, value in labels.items() if value > 0}


def volume_ratios(predictions: list[Path], references: list[Path], labels: dict[str, int]) -> dict[str, object]:
    """Per organ: median predicted and reference volume (mL) and their ratio; the score over organs."""
    pred = [label_volumes_ml(p, labels) for p in predictions]
    ref = [label_volumes_ml(p, labels) for p in references]
    organs: dict[str, dict[str, float]] = {}
    for name in (n for n, v in labels.items() if v > 0):
        p, r = statistics.median(v[name] for v in pred), statistics.median(v[name] for v in ref)
        organs[name] = {"pred_ml": p, "ref_ml": r, "ratio": p / r if r > 0 else math.nan}
    logs = [abs(math.log(o["ratio"])) if o["ratio"] > 0 else math.inf for o in organs.values()]
    return {"organs": organs, "score": sum(logs) / len(logs), "cases": len(pred)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--target", type=Path, required=True,
                    help="nnU-Net data set whose imagesTr are predicted: the target's TRAINING cases (OUT/data/<X>_train)")
    ap.add_argument("--source", type=Path, required=True, help="nnU-Net data set whose labelsTr are the reference")
    ap.add_argument("--out", type=Path, help="keep the predictions and write volumes.json here")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    from lmisa.predict import load_run, predict_path

    model = load_run(args.run, "best", device=args.device)
    out = args.out or Path(tempfile.mkdtemp(prefix="organ_volumes_"))
    # imagesTr only: a data set root would let list_inputs take imagesTs (test images) instead
    report = predict_path(model, args.target / "imagesTr", out / "predictions", overwrite=True,
                          device=args.device, progress=False)
    if report.failed or not report.written:
        first = report.failed[0] if report.failed else (args.target / "imagesTr", "no image predicted")
        raise SystemExit(f"error: {first[0]}: {first[1]}")
    result = volume_ratios(sorted(report.written), sorted((args.source / "labelsTr").glob("*.nii.gz")),
                           model.plans.labels)
    result["run"] = str(args.run)
    text = json.dumps(result, indent=2)
    (out / "volumes.json").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
