"""Test-time augmentation (``post.tta``) against none, run by run, for a rule written before it (docs/prereg/).

    python benchmarks/tta_check.py source RUN [RUN ...] --out tta_source.json    # decides: source validation cases
    python benchmarks/tta_check.py target RUN [RUN ...] --test DATA_SET --out tta_target.json   # read afterwards

``source``: each finished run predicts its own source validation cases (``split.json``: the cases and the
data set it trained on), with and without TTA, with its own post-processing, and is scored on the source
labels (organ slices and whole volume). No target image or label is read.
``target``: the same on the target test set ``--test``; its labels are read, so only after a decision.
Both print the prediction time of each pass, side by side (the cost of TTA). ``--no-post`` predicts without
the post-processing (largest component, extent cap): what the views do to the network's own output.
``--plain-only`` skips the TTA pass: the whole-case source-val Dice that ``label_free.py`` reports (steadier than
the training log's 32 validation slices: docs/RESULTS.md 2s). ``--source`` names the source data set for a run
copied from another machine (default: the one its ``split.json`` records).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from lmisa.evaluation import evaluate_folders
from lmisa.predict import load_run, predict_path

PROTOCOLS = ("organ_slices", "volume")


def source_val_set(run: Path, into: Path, source: Path | None = None) -> Path:
    """A data set of the run's source validation cases (links into ``source``, by default the data set it
    trained on)."""
    split = json.loads((run / "split.json").read_text())
    source = source or Path(split["source"])
    into.mkdir(parents=True)
    for sub in ("imagesTr", "labelsTr"):
        (into / sub).mkdir()
    for case in split["source_val"]:
        for sub, name in (("imagesTr", f"{case}_0000.nii.gz"), ("labelsTr", f"{case}.nii.gz")):
            if not (source / sub / name).exists():
                raise SystemExit(f"error: {source / sub / name}: source validation case not found")
            (into / sub / name).symlink_to((source / sub / name).resolve())
    shutil.copy(source / "dataset.json", into / "dataset.json")
    return into


def passes(run: Path, data: Path, work: Path, post: bool = True, with_tta: bool = True, device: str = "cpu") -> dict:
    """Dice of both protocols (mean and per organ) and prediction seconds, without and (``with_tta``) with TTA."""
    model = load_run(run, "best", device=device)
    off = {} if post else {"largest_component": False, "extent_margin": 0.0}
    row: dict = {"run": str(run), "cases": len(list((data / "labelsTr").glob("*.nii.gz"))), "post": post}
    for tta in (False, True) if with_tta else (False,):
        key = "tta" if tta else "plain"
        pred = work / key
        start = time.perf_counter()
        predict_path(model, data, pred, device=device, progress=False, tta=tta, **off)
        row[f"s_{key}"] = time.perf_counter() - start
        row.update(scores(pred, data, work, key))
    return row


def scores(pred: Path, data: Path, work: Path, key: str) -> dict:
    """``dice_<key>_<protocol>`` (mean over organs), ``organs_<key>_<protocol>`` and ``cases_<key>_<protocol>``
    (each case's mean over organs) of the predictions in ``pred`` against the labels of ``data``, both protocols."""
    row = {}
    for protocol in PROTOCOLS:
        result = evaluate_folders(pred, data, out_dir=work / f"eval_{key}_{protocol}", protocol=protocol, progress=False)
        summary = result.to_dict()
        row[f"dice_{key}_{protocol}"] = summary["mean_over_structures"]["dice"]["mean"]
        row[f"organs_{key}_{protocol}"] = {o: v["dice"]["mean"] for o, v in summary["per_structure"].items()}
        per_case: dict[str, list[float]] = {}
        for r in result.rows:
            if r["dice"] is not None:
                per_case.setdefault(r["case"], []).append(float(r["dice"]))
        row[f"cases_{key}_{protocol}"] = {c: statistics.mean(d) for c, d in sorted(per_case.items())}
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("source", "target"))
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--test", type=Path, help="target: the test data set")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--no-post", action="store_true", help="predict without largest component and extent cap")
    ap.add_argument("--plain-only", action="store_true", help="no TTA pass (source val of the plain prediction)")
    ap.add_argument("--source", type=Path, help="source: the data set holding the validation cases (default: split.json's)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    if args.mode == "target" and args.test is None:
        raise SystemExit("error: target needs --test DATA_SET")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, run in enumerate(args.runs):
            if not (run / "DONE").exists():
                raise SystemExit(f"error: {run}: not a finished run (no DONE)")
            work = Path(tmp) / str(i)
            data = source_val_set(run, work / "data", args.source) if args.mode == "source" else args.test
            row = passes(run, data, work, post=not args.no_post, with_tta=not args.plain_only, device=args.device)
            rows.append(row)
            if args.plain_only:
                print(f"{run}: organ slices {row['dice_plain_organ_slices']:.2f}, volume {row['dice_plain_volume']:.2f}; "
                      f"{row['s_plain']:.1f} s", flush=True)
                continue
            gain = row["dice_tta_organ_slices"] - row["dice_plain_organ_slices"]
            print(f"{run}: organ slices {row['dice_plain_organ_slices']:.2f} -> {row['dice_tta_organ_slices']:.2f} "
                  f"({gain:+.2f}), volume {row['dice_plain_volume']:.2f} -> {row['dice_tta_volume']:.2f}; "
                  f"{row['s_plain']:.1f} s -> {row['s_tta']:.1f} s", flush=True)
    if not args.plain_only:
        gains = [r["dice_tta_organ_slices"] - r["dice_plain_organ_slices"] for r in rows]
        print(f"{len(rows)} runs: organ-slice Dice {statistics.mean(gains):+.3f} on the mean, higher in "
              f"{sum(g > 0 for g in gains)}; prediction {sum(r['s_tta'] for r in rows):.0f} s with TTA against "
              f"{sum(r['s_plain'] for r in rows):.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
