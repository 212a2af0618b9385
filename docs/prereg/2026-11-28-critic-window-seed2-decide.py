"""Rule of docs/prereg/2026-11-28-critic-window-seed2.md, no target label: on seed 2, the window's (a) outside
share is lower, (b) liver ratio closer to 1, (c) source-val Dice at least the base's less 1.0.

    python docs/prereg/2026-11-28-critic-window-seed2-decide.py            # the rule (seed 2)
    python docs/prereg/2026-11-28-critic-window-seed2-decide.py --seen     # also the outside share of seeds 0, 1 (reported only)
"""
import csv, json, math, subprocess, sys
from pathlib import Path

MARGIN = 1.1
RUNS = {"base": Path("bench_out/window2/base"), "window": Path("bench_out/window2/m11")}
SEEN = {"base": Path("bench_out/organs/base"), "window": Path("bench_out/window/m11")}  # 2m's R1/R2, 2n's runs
KEEP = Path("bench_out/window2/volumes")


def volumes(out: Path, seed: int, name: str, cap: bool) -> dict:
    run = out / f"runs/MR2CT/lmisa/seed{seed}"
    keep = KEEP / f"{name}_s{seed}_{'cap' if cap else 'nocap'}"
    extra = [] if cap else ["--extent-margin", "0", "--region-margin", str(MARGIN)]
    subprocess.run([sys.executable, "benchmarks/organ_volumes.py", str(run), "--target", str(out / "data/CT_BTCV_train"),
                    "--source", str(out / "data/MR_CHAOS_T2_train"), "--out", str(keep), *extra], check=True, capture_output=True)
    return json.loads((keep / "volumes.json").read_text())


def measures(out: Path, seed: int, name: str) -> dict:
    rows = list(csv.DictReader((out / f"runs/MR2CT/lmisa/seed{seed}/log.csv").open()))
    best = min(rows, key=lambda r: float(r["val_loss"]))
    cap, nocap = volumes(out, seed, name, True), volumes(out, seed, name, False)
    return {"best_epoch": int(best["epoch"]), "val_dice": float(best["val_dice"]),
            "outside_share": nocap["outside_region"]["share"], "region_mm": nocap["outside_region"]["region_mm"],
            "liver_ratio": cap["organs"]["liver"]["ratio"],
            "volume_score_cap": cap["score"], "volume_score_nocap": nocap["score"],
            "ratios_cap": {k: round(o["ratio"], 3) for k, o in cap["organs"].items()},
            "ratios_nocap": {k: round(o["ratio"], 3) for k, o in nocap["organs"].items()},
            "window_share_by_epoch": [round(float(r["critic_window_share"]), 3) if r.get("critic_window_share") else None
                                      for r in rows]}


res = {name: measures(out, 2, name) for name, out in RUNS.items()}
print(json.dumps(res, indent=1))
b, w = res["base"], res["window"]
a = w["outside_share"] < b["outside_share"]
liver = abs(math.log(w["liver_ratio"])) < abs(math.log(b["liver_ratio"]))
c = w["val_dice"] >= b["val_dice"] - 1.0
print(f"(a) outside share {w['outside_share']:.4f} vs base {b['outside_share']:.4f}: {a}; "
      f"(b) liver ratio {w['liver_ratio']:.3f} vs base {b['liver_ratio']:.3f}: {liver}; "
      f"(c) source-val Dice {w['val_dice']:.2f} vs base {b['val_dice']:.2f} - 1: {c}; GPU candidate: {a and liver and c}")
if "--seen" in sys.argv:  # reported only: seeds 0 and 1 (the base runs predate the recorded extents: no cap)
    for name, out in SEEN.items():
        for seed in (0, 1):
            nocap = volumes(out, seed, name, False)
            print(f"seen {name} seed {seed}: outside share {nocap['outside_region']['share']:.4f}, "
                  f"liver ratio (no cap) {nocap['organs']['liver']['ratio']:.3f}")
