"""RESULTS 2ak, read after the rule: the self-training maps of every pair scored against the phantom labels of the
target training anatomies, and each model's per-organ test Dice, into the records folder.

    python docs/prereg/2026-12-07-self-training-phantoms-maps.py [--out bench_out/st_phantoms]

The phantom labels are a development pair's (no benchmark's target); the abdominal target labels are not read.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from lmisa.evaluation import evaluate_folders

RECORDS = Path(__file__).resolve().parent / "records" / "2026-12-07-self-training-phantoms"
PAIRS = [("CT2MR", "MR"), ("MR2CT", "CT")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("bench_out/st_phantoms"))
    root = ap.parse_args().out
    result = {}
    for direction, target in PAIRS:
        for seed in range(5):
            name = f"{direction}_seed{seed}"
            maps = root / "runs" / name / "self_train" / "pseudo_labels"
            work = Path(tempfile.mkdtemp())
            (work / "ref").mkdir()
            for m in maps.glob("*.nii.gz"):  # the references of the mapped anatomies only
                os.symlink((root / "phantoms" / target / "labelsTr" / m.name).resolve(), work / "ref" / m.name)
            evaluate_folders(maps, work / "ref", labels=root / "phantoms" / target / "dataset.json",
                             out_dir=work / "out", progress=False)
            summary = json.loads((work / "out" / "summary.json").read_text())
            row = {"maps_dice": summary["mean_over_structures"]["dice"]["mean"],
                   "per_organ": {o: v["dice"]["mean"] for o, v in summary["per_structure"].items()}}
            for arm in ("lmisa", "self_train"):
                test = json.loads((root / "predictions" / name / arm / "summary.json").read_text())
                row[f"test_per_organ_{arm}"] = {o: v["dice"]["mean"] for o, v in test["per_structure"].items()}
            result[name] = row
    (RECORDS / "maps_and_organs.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {RECORDS / 'maps_and_organs.json'}")


if __name__ == "__main__":
    main()
