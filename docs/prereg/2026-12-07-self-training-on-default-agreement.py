"""Agreement between seeds, without a label (docs/prereg/2026-12-07-self-training-on-default.md, question 2).

For each recipe, the mean over organs, target test cases and pairs of seeds of the Dice between the two seeds'
predicted maps (whole volume; an organ absent from both counts 100, as in lmisa.metrics.dice_score). Reads the
predictions only, and the label table of the *source* training set: no target label.

    python docs/prereg/2026-12-07-self-training-on-default-agreement.py [--recipes NAME ...] [--out FILE.json]
    # other runs (2026-12-07-self-training-on-default-ct2mr.md): a prediction folder pattern per recipe, {s} the seed
    python docs/prereg/2026-12-07-self-training-on-default-agreement.py --folder lmisa \
      'bench_out/ct2mr3x/predictions/CT2MR/MR_CHAOS_T2_test/lmisa/seed{s}' --folder ... --labels SOURCE/dataset.json
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import nibabel as nib
import numpy as np

from lmisa.evaluation import load_labels
from lmisa.metrics import dice_score

SEEDS = (4, 5, 6)
TEST = "MR2CT/CT_BTCV_test"
RECIPES = {  # name -> prediction folder of one seed
    "source_only": "bench_out/so3x/predictions/{test}/source_only/seed{s}",
    "lmisa_no_window": "bench_out/wgate/base/predictions/{test}/lmisa/seed{s}",
    "lmisa_default": "bench_out/wgate/gated/predictions/{test}/lmisa/seed{s}",
    "self_trained_on_default": "bench_out/stdef/self_seed{s}/predictions/{test}/source_only/seed{s}",
}
LABELS = "bench_out/so3x/data/MR_CHAOS_T2_train/dataset.json"  # the source's label table (names -> values)


def agreement(folder_a: Path, folder_b: Path, organs: dict[str, int]) -> dict[str, dict[str, float]]:
    """Per case, per organ: the Dice between the two folders' maps of that case."""
    out = {}
    for path_a in sorted(folder_a.glob("*.nii.gz")):
        a = np.asarray(nib.load(path_a).dataobj)
        b = np.asarray(nib.load(folder_b / path_a.name).dataobj)
        out[path_a.name.removesuffix(".nii.gz")] = {o: dice_score(a == v, b == v) for o, v in organs.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES))
    parser.add_argument("--folder", nargs=2, action="append", metavar=("NAME", "PATTERN"),
                        help="a recipe's prediction folders, {s} the seed (replaces the MR -> CT recipes)")
    parser.add_argument("--labels", default=LABELS, help="the source's dataset.json (label names -> values)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    organs = {k: v for k, v in load_labels(args.labels).items() if v != 0}
    patterns = dict(args.folder) if args.folder else {n: RECIPES[n] for n in args.recipes}
    result = {}
    for name, pattern in patterns.items():
        folders = {s: Path(pattern.format(test=TEST, s=s)) for s in SEEDS}
        pairs = {}
        for s, t in itertools.combinations(SEEDS, 2):
            per_case = agreement(folders[s], folders[t], organs)
            if not per_case:
                raise SystemExit(f"{folders[s]}: no predictions")
            pairs[f"{s}-{t}"] = {
                "mean": float(np.mean([np.mean(list(c.values())) for c in per_case.values()])),
                "organs": {o: float(np.mean([c[o] for c in per_case.values()])) for o in organs},
            }
        mean = float(np.mean([p["mean"] for p in pairs.values()]))
        result[name] = {"mean": mean, "pairs": pairs}
        print(f"{name:26s} agreement {mean:5.1f}  pairs " + ", ".join(f"{k}: {p['mean']:.1f}" for k, p in pairs.items())
              + "  organs " + ", ".join(f"{np.mean([p['organs'][o] for p in pairs.values()]):.1f}" for o in organs))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
