#!/bin/bash
# docs/prereg/2026-12-07-self-training-on-default.md: for MR -> CT seeds 4-6, the new lmisa default's maps of the CT
# training cases (its runs: bench_out/wgate/gated, RESULTS 2ah), then a self-trained run on them (train and evaluate).
# Seeds 4 and 5 side by side, one core each (taskset: abdomen.py gives each one thread), then seed 6 on both cores.
# Resumable: maps already made are kept; abdomen.py resumes an unfinished run.
#   bash docs/prereg/2026-12-07-self-training-on-default-run.sh
set -u -o pipefail
cd "$(dirname "$0")/../.."
[ -f .venv/bin/activate ] && source .venv/bin/activate
OUT=bench_out/stdef
GATED=bench_out/wgate/gated
mkdir -p $OUT/logs
say() { echo "$* ($(date -u +%H:%M:%S))"; }
chain() {  # chain SEED CORES
  local S=$1 CORES=$2 MAPS=$OUT/maps/MR2CT_seed$1
  if [ ! -f $MAPS.DONE ]; then
    say "seed $S: maps"
    taskset -c $CORES lmisa predict -m $GATED/runs/MR2CT/lmisa/seed$S -i $GATED/data/CT_BTCV_train/imagesTr -o $MAPS \
      --device cpu > $OUT/logs/maps_seed$S.log 2>&1 || { say "STOPPED: seed $S maps failed"; return 1; }
    touch $MAPS.DONE
  fi
  say "seed $S: self-trained run (train, then evaluate)"
  taskset -c $CORES python benchmarks/abdomen.py --out $OUT/self_seed$S \
    --config docs/prereg/2026-12-07-self-training-on-default-seed$S.yaml --direction "MR->CT" --variants source_only \
    --seeds $S --parallel 1 > $OUT/logs/self_seed$S.log 2>&1 || { say "STOPPED: seed $S run failed"; return 1; }
  say "seed $S: done"
}
chain 4 0 & chain 5 1 & wait
chain 6 0,1
