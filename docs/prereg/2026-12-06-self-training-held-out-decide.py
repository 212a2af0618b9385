"""Rule of docs/prereg/2026-12-06-self-training-held-out.md, no target label: each self-trained run (bench folder
named "self_*") against its base run (bench folder "base"), paired by direction and seed, from
benchmarks/label_free.py --held-out's JSON.

    python docs/prereg/2026-12-06-self-training-held-out-decide.py bench_out/sthold/label_free_held.json
"""
import json
import statistics
import sys
from pathlib import Path

SEEDS = {"MR2CT": (0, 1), "CT2MR": (0, 1)}


def arm(row: dict) -> str:
    return "self" if Path(row["bench"]).name.startswith("self_") else "base"


rows = json.loads(Path(sys.argv[1]).read_text())
if any(not r.get("measured_on", "").endswith("_held") for r in rows):
    sys.exit("no decision: the JSON holds rows not measured on held-out cases (label_free.py --held-out)")
by: dict = {}
for r in rows:
    if r["variant"] == "source_only":
        key = (arm(r), r["direction"], r["seed"])
        if key in by:
            sys.exit(f"no decision: two rows for {key}")
        by[key] = r
keys = [(d, s) for d, seeds in SEEDS.items() for s in seeds]
missing = [(a, d, s) for d, s in keys for a in ("base", "self") if (a, d, s) not in by]
if missing:
    sys.exit(f"no decision: runs missing from the JSON: {missing}")
unlike = [(d, s) for d, s in keys if by[("base", d, s)]["measured_cases"] != by[("self", d, s)]["measured_cases"]]
if unlike:
    sys.exit(f"no decision: base and self-trained measured on different held-out cases in {unlike}")


def pairs(key, directions=tuple(SEEDS)) -> list[tuple[float, float]]:
    return [(key(by[("base", d, s)]), key(by[("self", d, s)])) for d, s in keys if d in directions]


score = pairs(lambda r: r["volume_score"])
outside = pairs(lambda r: r["outside_share"], ("MR2CT",))
val = pairs(lambda r: r["val_dice_cases"])

checks = {
    "(a) organ-volume score lower in >= 3 of 4 pairs and on the mean":
        sum(t < b for b, t in score) >= 3 and statistics.mean(t for _, t in score) < statistics.mean(b for b, _ in score),
    "(b) MR->CT outside share <= base + 0.005 in both pairs": all(t <= b + 0.005 for b, t in outside),
    "(c) whole-case source val >= base - 2.0 in every pair": all(t >= b - 2.0 for b, t in val),
}
for name, values in (("organ-volume score (MR2CT 0, 1, CT2MR 0, 1)", score), ("MR->CT outside share", outside),
                     ("source val, whole cases", val)):
    print(f"{name}: base {[round(b, 4) for b, _ in values]} -> self-trained {[round(t, 4) for _, t in values]}")
for name, ok in checks.items():
    print(f"{name}: {ok}")
print("ADOPT one round of self-training as a recommended step" if all(checks.values()) else "NOT ADOPTED: stays an option")
