"""Gate check of docs/prereg/2026-12-06-critic-window-beyond-source.md, no target label: whether
``loss.critic_window_when: beyond_source`` switches the critic's window on, per direction and seed, on a benchmark
folder's data and settings (the split depends on the seed). Prints one line each and writes a JSON list.

    python docs/prereg/2026-12-06-critic-window-beyond-source-gate.py bench_out/wgate/gated --seeds 4 5 6 \
        --out bench_out/wgate/gate.json
"""
import argparse
import json
from pathlib import Path

from lmisa.training import resolve_config
from lmisa.training.data import prepare_training_data

DATA = {"MR2CT": ("MR_CHAOS_T2_train", "CT_BTCV_train"), "CT2MR": ("CT_BTCV_train", "MR_CHAOS_T2_train")}

ap = argparse.ArgumentParser()
ap.add_argument("bench", type=Path)
ap.add_argument("--seeds", type=int, nargs="+", required=True)
ap.add_argument("--out", type=Path, required=True)
args = ap.parse_args()
rows = []
for direction, (source, target) in DATA.items():
    for seed in args.seeds:
        cfg = resolve_config(args.bench / "bench_config.yaml", "lmisa", overrides={"train": {"seed": seed}})
        if not (cfg.uses_critic and cfg.loss.critic_window > 0 and cfg.loss.critic_window_when == "beyond_source"):
            raise SystemExit(f"{args.bench}: its bench_config.yaml does not set the gated window (critic_window > 0, "
                             "critic_window_when: beyond_source)")
        data = prepare_training_data(cfg, args.bench / "data" / source, args.bench / "data" / target, progress=False)
        rows.append({"direction": direction, "seed": seed, "window_on": not data.critic_window_off})
        print(f"{direction} seed {seed}: window {'on' if rows[-1]['window_on'] else 'off'}")
args.out.write_text(json.dumps(rows, indent=1))
