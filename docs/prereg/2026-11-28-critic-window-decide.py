"""Rule of docs/prereg/2026-11-28-critic-window-screen.md: (a) organ-volume score, (b) source-val Dice; no target label."""
import csv, json, subprocess, sys
from pathlib import Path

seeds = [int(s) for s in sys.argv[1:]] or [0, 1]
BASE = {0: {"volume_score": 0.134, "val_dice": 79.1}, 1: {"volume_score": 0.162, "val_dice": 85.6}}  # R1, R2 (RESULTS 2m)
out = Path("bench_out/window/m11")
res = {}
for s in seeds:
    run = out / f"runs/MR2CT/lmisa/seed{s}"
    rows = list(csv.DictReader((run / "log.csv").open()))
    best = min(rows, key=lambda r: float(r["val_loss"]))
    r = {"best_epoch": int(best["epoch"]), "val_dice": float(best["val_dice"]),
         "window_share_by_epoch": [round(float(x["critic_window_share"]), 3) if x.get("critic_window_share") else None for x in rows]}
    for name, extra in (("cap", []), ("nocap", ["--extent-margin", "0"])):
        keep = Path(f"bench_out/window/volumes_s{s}_{name}")
        subprocess.run([sys.executable, "benchmarks/organ_volumes.py", str(run), "--target", str(out / "data/CT_BTCV_train"),
                        "--source", str(out / "data/MR_CHAOS_T2_train"), "--out", str(keep), *extra], check=True, capture_output=True)
        vol = json.loads((keep / "volumes.json").read_text())
        r[f"volume_score_{name}"] = vol["score"]
        r[f"ratios_{name}"] = {k: round(o["ratio"], 3) for k, o in vol["organs"].items()}
    res[s] = r
    print(s, json.dumps(r))
mean = lambda d, k: sum(d[s][k] for s in seeds) / len(seeds)
vol, base_vol = mean(res, "volume_score_cap"), mean(BASE, "volume_score")
dice, base_dice = mean(res, "val_dice"), mean(BASE, "val_dice")
a = vol <= base_vol - 0.02 + 1e-9
b = dice >= base_dice - 1.0
print(f"seeds {seeds}: volume score {vol:.3f} vs base {base_vol:.3f} -> (a) {a}; "
      f"source-val Dice {dice:.2f} vs base {base_dice:.2f} -> (b) {b}; candidate: {a and b}")
