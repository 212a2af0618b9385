"""Rule of docs/prereg/2026-12-06-cpu-critic-window-3x.md, no target label: the window arm (bench path ending in
"m11") against the base arm, paired by direction and seed, from benchmarks/label_free.py's JSON.

    python docs/prereg/2026-12-06-cpu-critic-window-3x-decide.py bench_out/windowcpu/label_free.json
"""
import json
import math
import statistics
import sys
from pathlib import Path

SEEDS = {"MR2CT": (1, 2, 3), "CT2MR": (1,)}


def arm(row: dict) -> str:
    return "window" if Path(row["bench"]).name == "m11" else "base"


rows = json.loads(Path(sys.argv[1]).read_text())
by = {(arm(r), r["direction"], r["seed"]): r for r in rows if r["variant"] == "lmisa"}
missing = [(a, d, s) for d, seeds in SEEDS.items() for s in seeds for a in ("base", "window") if (a, d, s) not in by]
if missing:
    sys.exit(f"no decision: runs missing from the JSON: {missing}")


def pairs(direction: str, key) -> list[tuple[float, float]]:
    return [(key(by[("base", direction, s)]), key(by[("window", direction, s)])) for s in SEEDS[direction]]


def mean(values) -> float:
    return statistics.mean(values)


outside = pairs("MR2CT", lambda r: r["outside_share"])
liver = pairs("MR2CT", lambda r: abs(math.log(r["ratios"]["liver"])))
val_mr = pairs("MR2CT", lambda r: r["val_dice_cases"])
val_ct = pairs("CT2MR", lambda r: r["val_dice_cases"])
score_ct = pairs("CT2MR", lambda r: r["volume_score"])

checks = {
    "(a) MR->CT outside share lower on the mean and in every seed":
        mean(w for _, w in outside) < mean(b for b, _ in outside) and all(w < b for b, w in outside),
    "(b) MR->CT mean |log liver ratio| lower": mean(w for _, w in liver) < mean(b for b, _ in liver),
    "(c) MR->CT mean whole-case source val >= base - 1.0": mean(w for _, w in val_mr) >= mean(b for b, _ in val_mr) - 1.0,
    "(d) CT->MR whole-case source val >= base - 1.0": mean(w for _, w in val_ct) >= mean(b for b, _ in val_ct) - 1.0,
    "(e) CT->MR organ-volume score <= base + 0.02": mean(w for _, w in score_ct) <= mean(b for b, _ in score_ct) + 0.02,
}
for name, values in (("MR->CT outside share", outside), ("MR->CT |log liver ratio|", liver),
                     ("MR->CT source val (whole cases)", val_mr), ("CT->MR source val (whole cases)", val_ct),
                     ("CT->MR organ-volume score", score_ct)):
    print(f"{name}: base {[round(b, 4) for b, _ in values]} -> window {[round(w, 4) for _, w in values]}")
for name, ok in checks.items():
    print(f"{name}: {ok}")
print("ADOPT loss.critic_window: 1.1 for lmisa" if all(checks.values()) else "NOT ADOPTED: stays an option")
