#!/bin/bash
# docs/prereg/2026-12-08-self-training-ensemble-maps-mr2ct.md, all steps, resumable (finished runs and maps are kept):
#   bash docs/prereg/2026-12-08-self-training-ensemble-maps-mr2ct-run.sh
# 1. the source_only bases of seeds 4-6 (2am's command and arrangement: 4 and 5 side by side, then 6); 2. the
# ensemble's maps of the CT training cases; 3. students of training seeds 4 and 5 on those maps, one core each.
set -u -o pipefail
cd "$(dirname "$0")/../.."
[ -f .venv/bin/activate ] && source .venv/bin/activate
OUT=bench_out/ensm
P=docs/prereg/2026-12-08-self-training-ensemble-maps-mr2ct
BASE=docs/prereg/2026-12-05-critic-window-3x-base.yaml
MAPS=$OUT/maps/ensemble_seeds4-6
mkdir -p $OUT/logs
say() { echo "$* ($(date -u +%H:%M:%S))"; }
bases() {  # bases SEEDS...
  python benchmarks/abdomen.py --out $OUT --config $BASE --direction "MR->CT" --variants source_only --seeds "$@" \
    --parallel 2 > $OUT/logs/bases_$(IFS=-; echo "$*").log 2>&1 || { say "STOPPED: bases $*"; exit 1; }
}
say "1. bases"; bases 4 5; bases 6
if [ ! -f $MAPS.DONE ]; then
  say "2. the ensemble's maps"
  M=$OUT/runs/MR2CT/source_only
  lmisa predict -m $M/seed4 -m $M/seed5 -m $M/seed6 -i $OUT/data/CT_BTCV_train/imagesTr -o $MAPS --device cpu \
    > $OUT/logs/maps_ensemble.log 2>&1 || { say "STOPPED: maps"; exit 1; }
  touch $MAPS.DONE
fi
student() {  # student SEED CORES
  taskset -c $2 python benchmarks/abdomen.py --out $OUT/self_seed$1 --config $P.yaml --direction "MR->CT" \
    --variants source_only --seeds $1 --parallel 1 > $OUT/logs/self_seed$1.log 2>&1 \
    || { say "STOPPED: student seed $1"; return 1; }
  say "student seed $1 done"
}
say "3. students"; student 4 0 & student 5 1 & wait
say "ALL DONE"
