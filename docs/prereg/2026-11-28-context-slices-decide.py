"""The rule of docs/prereg/2026-11-28-context-slices.md on the rows of benchmarks/label_free.py.

    python benchmarks/label_free.py bench_out/context1 bench_out/window2/base bench_out/extent/base \
        --variants lmisa --out bench_out/context1/label_free.json --parallel 2
    python docs/prereg/2026-11-28-context-slices-decide.py bench_out/context1/label_free.json
"""

import json
import math
import sys

rows = json.load(open(sys.argv[1]))


def row(bench: str, direction: str, seed: int) -> dict:
    (found,) = [r for r in rows if r["bench"].rstrip("/") == bench and r["direction"] == direction and r["seed"] == seed]
    return found


pairs = {"MR2CT": (row("bench_out/window2/base", "MR2CT", 2), row("bench_out/context1", "MR2CT", 2)),
         "CT2MR": (row("bench_out/extent/base", "CT2MR", 0), row("bench_out/context1", "CT2MR", 0))}
for d, (base, c1) in pairs.items():
    print(f"{d}: source val {base['val_dice']:.2f} -> {c1['val_dice']:.2f} (epoch {base['best_epoch']} / {c1['best_epoch']}); "
          f"outside {100 * base['outside_share']:.2f} -> {100 * c1['outside_share']:.2f} %; liver {base['ratios']['liver']:.3f} -> "
          f"{c1['ratios']['liver']:.3f}; volume score {base['volume_score']:.3f} -> {c1['volume_score']:.3f}")
gain = sum(c1["val_dice"] - base["val_dice"] for base, c1 in pairs.values()) / 2
a = gain >= 0.5
b = all(c1["val_dice"] >= base["val_dice"] - 1.0 for base, c1 in pairs.values())
base, c1 = pairs["MR2CT"]
c = (100 * c1["outside_share"] <= 100 * base["outside_share"] + 0.5
     and abs(math.log(c1["ratios"]["liver"])) <= abs(math.log(base["ratios"]["liver"])) + 0.05)
base, c1 = pairs["CT2MR"]
d = c1["volume_score"] <= base["volume_score"] + 0.02
print(f"(a) mean source-val gain {gain:+.2f} >= +0.5: {a}")
print(f"(b) each direction within 1.0 of its base: {b}")
print(f"(c) MR -> CT outside share and liver: {c}")
print(f"(d) CT -> MR volume score: {d}")
verdict = "GPU candidate" if a and b and c and d else ("harmless, not a candidate" if b and c and d else "not a candidate")
print(f"2.5D (context_slices 1): {verdict}")
