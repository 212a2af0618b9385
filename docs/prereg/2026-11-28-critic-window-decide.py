"""Rule of docs/prereg/2026-11-28-critic-window-screen.md: (a) organ-volume score, (b) source-val Dice; no target label."""
import csv, json, subprocess, sys
from pathlib import Path

BASE = {"volume_score": 0.134, "val_dice": 79.1}  # R1 = bench_out/organs/base seed 0 (RESULTS 2m, 2k)
out = Path("bench_out/window/m11")
run = out / "runs/MR2CT/lmisa/seed0"
rows = list(csv.DictReader((run / "log.csv").open()))
best = min(rows, key=lambda r: float(r["val_loss"]))
res = {"best_epoch": int(best["epoch"]), "val_dice": float(best["val_dice"]),
       "window_share_by_epoch": [round(float(r["critic_window_share"]), 3) if r.get("critic_window_share") else None for r in rows]}
for name, extra in (("cap", []), ("nocap", ["--extent-margin", "0"])):
    keep = Path(f"bench_out/window/volumes_{name}")
    subprocess.run([sys.executable, "benchmarks/organ_volumes.py", str(run), "--target", str(out / "data/CT_BTCV_train"),
                    "--source", str(out / "data/MR_CHAOS_T2_train"), "--out", str(keep), *extra], check=True, capture_output=True)
    vol = json.loads((keep / "volumes.json").read_text())
    res[f"volume_score_{name}"] = vol["score"]
    res[f"ratios_{name}"] = {k: round(o["ratio"], 3) for k, o in vol["organs"].items()}
print(json.dumps(res, indent=1))
a = res["volume_score_cap"] <= BASE["volume_score"] - 0.02
b = res["val_dice"] >= BASE["val_dice"] - 1.0
print(f"volume score {res['volume_score_cap']:.3f} vs R1 {BASE['volume_score']:.3f} -> (a) {a}; "
      f"source-val Dice {res['val_dice']:.2f} vs R1 {BASE['val_dice']:.2f} -> (b) {b}; candidate: {a and b}")
