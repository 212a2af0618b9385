"""Rule of docs/prereg/2026-11-27-critic-organ-size-screen.md: (a) volume score, (b) source-val Dice; no target label."""
import csv, json, subprocess, sys
from pathlib import Path
seeds = [int(s) for s in sys.argv[1:]] or [0, 1]
BASE = {"volume_score": 0.160, "val_dice": 79.1}  # bench_out/organs/base seed 0 (RESULTS 2k)
res = {}
for s in seeds:
    out = Path("bench_out/q25/q25")
    run = out / f"runs/MR2CT/lmisa/seed{s}"
    rows = list(csv.DictReader((run / "log.csv").open()))
    best = min(rows, key=lambda r: float(r["val_loss"]))
    keep = Path(f"bench_out/q25/volumes_s{s}")
    subprocess.run([sys.executable, "benchmarks/organ_volumes.py", str(run), "--target", str(out / "data/CT_BTCV_train"),
                    "--source", str(out / "data/MR_CHAOS_T2_train"), "--out", str(keep)], check=True, capture_output=True)
    vol = json.loads((keep / "volumes.json").read_text())
    share = [round(float(r["loss_critic_fake_share"]), 3) for r in rows if r.get("loss_critic_fake_share")]
    res[s] = {"best_epoch": int(best["epoch"]), "val_dice": float(best["val_dice"]), "volume_score": vol["score"],
              "ratios": {k: round(o["ratio"], 3) for k, o in vol["organs"].items()}, "fake_share_by_epoch": share}
    print(s, res[s])
mean = lambda k: sum(res[s][k] for s in seeds) / len(seeds)
a = mean("volume_score") < BASE["volume_score"]
b = mean("val_dice") >= BASE["val_dice"] - 1.0
print(f"seeds {seeds}: volume score q25 {mean('volume_score'):.3f} vs base s0 {BASE['volume_score']:.3f} -> (a) {a}; "
      f"source-val Dice q25 {mean('val_dice'):.2f} vs base s0 {BASE['val_dice']:.2f} -> (b) {b}; candidate: {a and b}")
