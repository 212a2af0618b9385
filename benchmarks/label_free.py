"""The label-free measures of a benchmark's runs, for a rule written before the runs (docs/prereg/).

    python benchmarks/label_free.py BENCH_OUT [BENCH_OUT ...] --variants lmisa --out label_free.json

For every run under ``BENCH_OUT/runs/<direction>/<variant>/seed*`` that finished (``DONE``), it reports the
best checkpoint's source-validation Dice (``log.csv``, the epoch of the lowest validation loss) and, on the
target's TRAINING images (the data sets the run's ``split.json`` names, or the folders of the same names under
``BENCH_OUT/data`` for a run copied from another machine; no target label is read):
- the predicted / source organ volume ratios and their score with the run's own post-processing
  (``organ_volumes.py``), and without the extent cap;
- the share of predicted organ voxels (no cap) outside each scan's window of ``--region-margin`` times the
  source's longest organ region (``lmisa.volumes.outside_region_share``): organs drawn on body parts the
  source scans never show (docs/RESULTS.md 2o);
- ``val_dice_cases``: the best checkpoint's organ-slice Dice on the whole source validation cases, with its own
  post-processing (``tta_check.py source --plain-only``). The log's ``val_dice`` scores 32 fixed validation
  slices without post-processing; over the ten 2,400-step MR -> CT runs of RESULTS 2s its sd was 4.0 against 1.0.
Each run's three predictions (two of the target's training images, one of the source-val cases) run in their own
processes, ``--parallel`` runs at a time (several fit on one GPU).

With ``--held-out`` the target measures are read on ``<target>_held`` instead: the target training cases that
``abdomen.py --hold-out-target`` kept out of every run, which the run trained on as ``<target>_fit``. A run
that fitted its target images (the critic, self-training's maps) is then measured on images no model saw.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent


def best_validation(run: Path) -> tuple[int, float]:
    """Epoch and source-val Dice of the lowest validation loss in the run's ``log.csv``."""
    rows = list(csv.DictReader((run / "log.csv").open()))
    best = min(rows, key=lambda r: float(r["val_loss"]))
    return int(best["epoch"]), float(best["val_dice"])


def trained_on(bench: Path, run: Path) -> tuple[Path, Path]:
    """The source and target data sets the run trained on, from its ``split.json``."""
    split = json.loads((run / "split.json").read_text())
    if not split.get("source") or not split.get("target"):
        raise SystemExit(f"error: {run / 'split.json'}: names no source and target data set")
    found = []
    for recorded in (Path(split["source"]), Path(split["target"])):
        moved = bench / "data" / recorded.name
        found.append(recorded if recorded.is_dir() or not moved.is_dir() else moved)
    return found[0], found[1]


def organ_volumes(run: Path, source: Path, target: Path, keep: Path, device: str, extra: list[str]) -> dict:
    """``organ_volumes.py`` on the target's training images, its ``volumes.json``."""
    cmd = [sys.executable, str(HERE / "organ_volumes.py"), str(run), "--target", str(target), "--source", str(source),
           "--out", str(keep), "--device", device, *extra]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"error: {run}: organ_volumes.py failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads((keep / "volumes.json").read_text())


def source_val_cases(run: Path, source: Path, keep: Path, device: str) -> float:
    """Organ-slice Dice of the best checkpoint on the run's whole source validation cases (``tta_check.py``)."""
    keep.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(HERE / "tta_check.py"), "source", str(run), "--plain-only", "--source", str(source),
           "--device", device, "--out", str(keep / "source_val.json")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"error: {run}: tta_check.py failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads((keep / "source_val.json").read_text())[0]["dice_plain_organ_slices"]


def held_out_set(run: Path, target: Path) -> Path:
    """``<target>_held`` beside the ``<target>_fit`` the run trained on (abdomen.py --hold-out-target)."""
    if not target.name.endswith("_fit"):
        raise SystemExit(f"error: {run}: trained on {target}, not on a <target>_fit set of abdomen.py --hold-out-target")
    held = target.with_name(target.name.removesuffix("_fit") + "_held")
    if not (held / "imagesTr").is_dir():
        raise SystemExit(f"error: {run}: no held-out set {held} beside {target}")
    return held


def measure(bench: Path, run: Path, keep: Path, margin: float, device: str, held_out: bool = False) -> dict:
    """The label-free row of one finished run (the target measures on its held-out set with ``held_out``)."""
    direction, variant, seed = run.parts[-3], run.parts[-2], int(run.name.removeprefix("seed"))
    source, target = trained_on(bench, run)
    if held_out:
        target = held_out_set(run, target)
    epoch, val_dice = best_validation(run)
    own = organ_volumes(run, source, target, keep / "own", device, [])
    nocap = organ_volumes(run, source, target, keep / "nocap", device,
                          ["--extent-margin", "0", "--region-margin", str(margin)])
    return {
        "bench": str(bench), "direction": direction, "variant": variant, "seed": seed, "measured_on": target.name,
        "measured_cases": sorted(f.name for f in (target / "imagesTr").iterdir()),
        "best_epoch": epoch, "val_dice": val_dice, "val_dice_cases": source_val_cases(run, source, keep / "val", device),
        "outside_share": nocap["outside_region"]["share"], "region_mm": nocap["outside_region"]["region_mm"],
        "ratios": {k: o["ratio"] for k, o in own["organs"].items()}, "volume_score": own["score"],
        "ratios_nocap": {k: o["ratio"] for k, o in nocap["organs"].items()}, "volume_score_nocap": nocap["score"],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("benches", type=Path, nargs="+", help="benchmark output folders (abdomen.py --out)")
    ap.add_argument("--variants", nargs="+", default=["lmisa"])
    ap.add_argument("--out", type=Path, required=True, help="the JSON list of rows written here")
    ap.add_argument("--region-margin", type=float, default=1.1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--keep", type=Path, help="keep the predictions here (default: a temporary folder)")
    ap.add_argument("--held-out", action="store_true",
                    help="measure the target on <target>_held, the cases abdomen.py --hold-out-target kept out of training")
    args = ap.parse_args(argv)
    runs = [(bench, run) for bench in args.benches for variant in args.variants
            for run in sorted(bench.glob(f"runs/*/{variant}/seed*")) if (run / "DONE").exists()]
    if not runs:
        raise SystemExit(f"error: no finished run of {' '.join(args.variants)} under {' '.join(map(str, args.benches))}")
    keep = args.keep or Path(tempfile.mkdtemp(prefix="label_free_"))
    with ThreadPoolExecutor(max(1, args.parallel)) as pool:
        rows = list(pool.map(lambda br: measure(br[0], br[1], keep / f"{br[0].name}_{'_'.join(br[1].parts[-3:])}",
                                                args.region_margin, args.device, args.held_out), runs))
    args.out.write_text(json.dumps(rows, indent=1))
    for r in rows:
        print(f"{r['bench']} {r['direction']} {r['variant']} seed {r['seed']}: source val {r['val_dice']:.2f} "
              f"(epoch {r['best_epoch']}; whole cases {r['val_dice_cases']:.2f}), outside {100 * r['outside_share']:.2f} %, liver {r['ratios'].get('liver', float('nan')):.3f}, "
              f"volume score {r['volume_score']:.3f}")


if __name__ == "__main__":
    main()
