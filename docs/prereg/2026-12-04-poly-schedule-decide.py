"""The rule of docs/prereg/2026-12-04-poly-schedule.md on the rows of benchmarks/label_free.py.

    python benchmarks/label_free.py bench_out/poly/base bench_out/poly/poly --variants source_only \
        --out bench_out/poly/label_free.json --parallel 2
    python docs/prereg/2026-12-04-poly-schedule-decide.py bench_out/poly/label_free.json
    # stage 2 (lmisa, MR -> CT):
    python benchmarks/label_free.py bench_out/poly/base bench_out/poly/poly --variants lmisa \
        --out bench_out/poly/label_free_lmisa.json --parallel 2
    python docs/prereg/2026-12-04-poly-schedule-decide.py bench_out/poly/label_free_lmisa.json --lmisa
"""

import json
import math
import sys

rows = json.load(open(sys.argv[1]))
STAGE2 = "--lmisa" in sys.argv[2:]


def row(bench: str, direction: str) -> dict:
    (found,) = [r for r in rows if r["bench"].rstrip("/").endswith(bench) and r["direction"] == direction
                and r["variant"] == ("lmisa" if STAGE2 else "source_only") and r["seed"] == 0]
    return found


if STAGE2:
    base, poly = row("poly/base", "MR2CT"), row("poly/poly", "MR2CT")
    print(f"MR2CT lmisa: source val, whole cases {base['val_dice_cases']:.2f} -> {poly['val_dice_cases']:.2f} "
          f"(32 slices {base['val_dice']:.2f} -> {poly['val_dice']:.2f}, epoch {base['best_epoch']} / {poly['best_epoch']}); "
          f"outside {100 * base['outside_share']:.2f} -> {100 * poly['outside_share']:.2f} %; liver "
          f"{base['ratios']['liver']:.3f} -> {poly['ratios']['liver']:.3f}")
    a = poly["val_dice_cases"] >= base["val_dice_cases"]
    b = (100 * poly["outside_share"] <= 100 * base["outside_share"] + 0.5
         and abs(math.log(poly["ratios"]["liver"])) <= abs(math.log(base["ratios"]["liver"])) + 0.05)
    print(f"(a) whole-case source val at least the base's: {a}")
    print(f"(b) outside share and liver: {b}")
    print(f"poly learning-rate decay, lmisa MR -> CT: {'still a candidate' if a and b else 'not a candidate'}")
    sys.exit()


pairs = {d: (row("poly/base", d), row("poly/poly", d)) for d in ("MR2CT", "CT2MR")}
for d, (base, poly) in pairs.items():
    print(f"{d}: source val, whole cases {base['val_dice_cases']:.2f} -> {poly['val_dice_cases']:.2f} "
          f"(32 slices {base['val_dice']:.2f} -> {poly['val_dice']:.2f}, epoch {base['best_epoch']} / {poly['best_epoch']}); "
          f"outside {100 * base['outside_share']:.2f} -> {100 * poly['outside_share']:.2f} %; liver "
          f"{base['ratios']['liver']:.3f} -> {poly['ratios']['liver']:.3f}; volume score {base['volume_score']:.3f} -> "
          f"{poly['volume_score']:.3f}")
gain = sum(poly["val_dice_cases"] - base["val_dice_cases"] for base, poly in pairs.values()) / 2
a = gain >= 0.5
b = all(poly["val_dice_cases"] >= base["val_dice_cases"] - 1.0 for base, poly in pairs.values())
base, poly = pairs["MR2CT"]
c = (100 * poly["outside_share"] <= 100 * base["outside_share"] + 0.5
     and abs(math.log(poly["ratios"]["liver"])) <= abs(math.log(base["ratios"]["liver"])) + 0.05)
base, poly = pairs["CT2MR"]
d = poly["volume_score"] <= base["volume_score"] + 0.02
print(f"(a) mean whole-case source-val gain {gain:+.2f} >= +0.5: {a}")
print(f"(b) each direction within 1.0 of its base: {b}")
print(f"(c) MR -> CT outside share and liver: {c}")
print(f"(d) CT -> MR volume score: {d}")
verdict = "candidate for lmisa" if a and b and c and d else ("harmless, not a candidate" if b and c and d else "not a candidate")
print(f"poly learning-rate decay: {verdict}")
