"""A label-free check of an adapted run: are the organs it predicts on the target the size of organs?

    python benchmarks/organ_volumes.py RUN --target TARGET_TRAIN_DATASET --source SOURCE_DATASET [--out DIR]

Predicts the target's imagesTr (its TRAINING cases; never reads a target label) with the run's best
checkpoint and compares each organ's median predicted volume with its median volume in the SOURCE
labels (``lmisa.volumes``; the same as ``lmisa predict`` + ``lmisa volumes``). Score: the mean over
organs of |log(ratio)| (0 = the source's sizes). Used to choose between configurations without target
labels (docs/RESULTS.md, section 2a). With ``--region-margin M`` it also reports the share of the predicted
organ voxels outside each scan's run of slices M times the source's longest organ region
(``lmisa.volumes.outside_region_share``): organs drawn where the source scans show no abdomen.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--target", type=Path, required=True,
                    help="nnU-Net data set whose imagesTr are predicted: the target's TRAINING cases (OUT/data/<X>_train)")
    ap.add_argument("--source", type=Path, required=True, help="nnU-Net data set whose labelsTr are the reference")
    ap.add_argument("--out", type=Path, help="keep the predictions and write volumes.json here")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--extent-margin", type=float, default=None,
                    help="the extent cap's margin (0: no cap); default: the run's own post.extent_margin")
    ap.add_argument("--region-margin", type=float, default=None,
                    help="also report the share of predicted organ voxels outside each scan's window of this many "
                         "times the source's longest organ region (>= 1)")
    args = ap.parse_args(argv)

    from lmisa.predict import load_run, predict_path
    from lmisa.volumes import compare_volumes, outside_region_share

    model = load_run(args.run, "best", device=args.device)
    out = args.out or Path(tempfile.mkdtemp(prefix="organ_volumes_"))
    # imagesTr only: a data set root would let list_inputs take imagesTs (test images) instead
    report = predict_path(model, args.target / "imagesTr", out / "predictions", overwrite=True,
                          device=args.device, progress=False, extent_margin=args.extent_margin)
    if report.failed or not report.written:
        first = report.failed[0] if report.failed else (args.target / "imagesTr", "no image predicted")
        raise SystemExit(f"error: {first[0]}: {first[1]}")
    result = compare_volumes(out / "predictions", args.source, model.plans.labels).to_dict()
    if args.region_margin is not None:
        result["outside_region"] = outside_region_share(out / "predictions", args.source, args.region_margin)
    result["run"] = str(args.run)
    text = json.dumps(result, indent=2)
    (out / "volumes.json").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
