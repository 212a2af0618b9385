"""`2026-12-08-self-training-ensemble-maps-mr2ct.md`: the maps' own Dice against the labels of the CT training cases
they map (the source labels of the other direction; no run here read them), per protocol, for the ensemble's maps
and each base's maps. Run only after every run of the file has finished (it reads target-side labels):

    python docs/prereg/2026-12-08-self-training-ensemble-maps-mr2ct-maps-dice.py \
      --out docs/prereg/records/2026-12-08-self-training-ensemble-maps-mr2ct/maps_dice.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from lmisa.evaluation import evaluate_folders

LABELLED = Path("bench_out/sost/data/CT_BTCV_train")
MAPS = {"ensemble_seeds4-6": Path("bench_out/ensm/maps/ensemble_seeds4-6"),
        **{f"source_only_seed{s}": Path(f"bench_out/sost/maps/source_only_seed{s}") for s in (4, 5, 6)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    result = {}
    for name, maps in MAPS.items():
        result[name] = {}
        for protocol in ("organ_slices", "volume"):
            with tempfile.TemporaryDirectory() as work:
                s = evaluate_folders(maps, LABELLED, out_dir=work, protocol=protocol, progress=False)
            result[name][protocol] = {"dice": s.mean_over_structures["dice"]["mean"],
                                      "per_organ": {o: v["dice"]["mean"] for o, v in s.per_structure.items()},
                                      "cases": len(s.cases)}
        o, v = (result[name][p]["dice"] for p in ("organ_slices", "volume"))
        print(f"{name}: {o:.1f} ({v:.1f}) on {result[name]['volume']['cases']} cases "
              f"(organ slices, whole volume); per organ {[round(x, 1) for x in result[name]['organ_slices']['per_organ'].values()]}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
