"""Label-free records of `2026-12-07-self-training-source-only-mr2ct.md`, made before any target result is read.

Per seed: the best checkpoint's source-val Dice of the base and of the self-trained run (``log.csv``, as
``benchmarks/label_free.py`` reads it), and the Dice between the base's maps of the CT training cases (the
pseudo-labels) and the self-trained run's maps of the same images (``lmisa predict``, made here if missing). Reads
predictions and the source's label table only: no target label.

    python docs/prereg/2026-12-07-self-training-source-only-mr2ct-label-free.py --seeds 4 5 --out FILE.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from label_free import best_validation  # noqa: E402

from lmisa.evaluation import load_labels  # noqa: E402
from lmisa.metrics import dice_score  # noqa: E402

OUT = Path("bench_out/sost")
CT_TRAIN = OUT / "data/CT_BTCV_train/imagesTr"
LABELS = OUT / "data/MR_CHAOS_T2_train/dataset.json"  # the source's label table (names -> values)


def maps_dice(folder_a: Path, folder_b: Path, organs: dict[str, int]) -> float:
    """Mean over cases and organs of the Dice between the two folders' maps (absent from both: 100)."""
    scores = []
    for path_a in sorted(folder_a.glob("*.nii.gz")):
        a = np.asarray(nib.load(path_a).dataobj)
        b = np.asarray(nib.load(folder_b / path_a.name).dataobj)
        scores += [dice_score(a == v, b == v) for v in organs.values()]
    if not scores:
        raise SystemExit(f"{folder_a}: no maps")
    return float(np.mean(scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[4, 5])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    organs = {k: v for k, v in load_labels(LABELS).items() if v != 0}
    result = {}
    for s in args.seeds:
        base = OUT / f"runs/MR2CT/source_only/seed{s}"
        self_run = OUT / f"self_seed{s}/runs/MR2CT/source_only/seed{s}"
        self_maps = OUT / f"maps_self/source_only_seed{s}"
        if not (self_maps.parent / f"{self_maps.name}.DONE").exists():
            subprocess.run(["lmisa", "predict", "-m", str(self_run), "-i", str(CT_TRAIN), "-o", str(self_maps),
                            "--device", "cpu"], check=True, stdout=subprocess.DEVNULL)
            (self_maps.parent / f"{self_maps.name}.DONE").touch()
        result[s] = {
            "source_val_base": best_validation(base),
            "source_val_self": best_validation(self_run),
            "maps_base_vs_self": maps_dice(OUT / f"maps/source_only_seed{s}", self_maps, organs),
        }
        print(s, result[s])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
