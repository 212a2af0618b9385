"""Rule of docs/prereg/2026-12-06-critic-window-beyond-source.md, no target label: the gated arm (bench path ending
in "gated") against the base arm, MR -> CT, paired by seed, from benchmarks/label_free.py's JSON; and the gate's
switch per direction from the gate check's JSON.

    python docs/prereg/2026-12-06-critic-window-beyond-source-decide.py bench_out/wgate/label_free.json bench_out/wgate/gate.json
"""
import json
import math
import statistics
import sys
from pathlib import Path

SEEDS = (4, 5, 6)


def arm(row: dict) -> str:
    return "gated" if Path(row["bench"]).name == "gated" else "base"


rows = json.loads(Path(sys.argv[1]).read_text())
gate = {(g["direction"], g["seed"]): g["window_on"] for g in json.loads(Path(sys.argv[2]).read_text())}
by = {(arm(r), r["seed"]): r for r in rows if r["variant"] == "lmisa" and r["direction"] == "MR2CT"}
missing = [(a, s) for s in SEEDS for a in ("base", "gated") if (a, s) not in by]
missing += [(d, s) for d in ("MR2CT", "CT2MR") for s in SEEDS if (d, s) not in gate]
if missing:
    sys.exit(f"no decision: runs or gate checks missing from the JSON: {missing}")


def pairs(key) -> list[tuple[float, float]]:
    return [(key(by[("base", s)]), key(by[("gated", s)])) for s in SEEDS]


def finite(values: list[tuple[float, float]]) -> bool:
    return all(math.isfinite(v) for pair in values for v in pair)


mean = statistics.mean
outside = pairs(lambda r: r["outside_share"])
liver = pairs(lambda r: abs(math.log(r["ratios"]["liver"])) if r["ratios"]["liver"] > 0 else math.inf)
val = pairs(lambda r: r["val_dice_cases"])
checks = {
    "(a) MR->CT outside share lower on the mean and in every seed": finite(outside)
        and mean(w for _, w in outside) < mean(b for b, _ in outside) and all(w < b for b, w in outside),
    "(b) MR->CT mean |log liver ratio| lower": finite(liver) and mean(w for _, w in liver) < mean(b for b, _ in liver),
    "(c) MR->CT mean whole-case source val >= base - 1.0": finite(val)
        and mean(w for _, w in val) >= mean(b for b, _ in val) - 1.0,
    "(d) the gate: on MR->CT and off CT->MR at every seed":
        all(gate[("MR2CT", s)] for s in SEEDS) and not any(gate[("CT2MR", s)] for s in SEEDS),
}
for name, values in (("MR->CT outside share", outside), ("MR->CT |log liver ratio|", liver),
                     ("MR->CT source val (whole cases)", val)):
    print(f"{name}: base {[round(b, 4) for b, _ in values]} -> gated {[round(w, 4) for _, w in values]}")
print(f"gate (window on): {sorted(gate.items())}")
for name, ok in checks.items():
    print(f"{name}: {ok}")
print("ADOPT loss.critic_window: 1.1 with critic_window_when: beyond_source for lmisa" if all(checks.values())
      else "NOT ADOPTED: stays an option")
