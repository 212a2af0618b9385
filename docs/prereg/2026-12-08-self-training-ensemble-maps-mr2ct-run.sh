#!/bin/bash
# docs/prereg/2026-12-08-self-training-ensemble-maps-mr2ct.md, all steps, resumable (finished runs and maps are kept):
#   bash docs/prereg/2026-12-08-self-training-ensemble-maps-mr2ct-run.sh
# (amended before any run finished) 1. the source_only bases of seeds 4-6 are 2am's, kept in bench_out/sost; 2. the
# ensemble's maps of the CT training cases; 3. students of training seeds 4 and 5 on those maps, one core each, then 6.
set -u -o pipefail
cd "$(dirname "$0")/../.."
[ -f .venv/bin/activate ] && source .venv/bin/activate
OUT=bench_out/ensm
P=docs/prereg/2026-12-08-self-training-ensemble-maps-mr2ct
SOST=bench_out/sost
MAPS=$OUT/maps/ensemble_seeds4-6
mkdir -p $OUT/logs
say() { echo "$* ($(date -u +%H:%M:%S))"; }
for S in 4 5 6; do [ -f $SOST/runs/MR2CT/source_only/seed$S/DONE ] || { say "STOPPED: no base seed $S"; exit 1; }; done
if [ ! -f $MAPS.DONE ]; then
  say "2. the ensemble's maps"
  M=$SOST/runs/MR2CT/source_only
  lmisa predict -m $M/seed4 -m $M/seed5 -m $M/seed6 -i $SOST/data/CT_BTCV_train/imagesTr -o $MAPS --device cpu \
    > $OUT/logs/maps_ensemble.log 2>&1 || { say "STOPPED: maps"; exit 1; }
  touch $MAPS.DONE
fi
student() {  # student SEED CORES
  taskset -c $2 python benchmarks/abdomen.py --out $OUT/self_seed$1 --config $P.yaml --direction "MR->CT" \
    --variants source_only --seeds $1 --parallel 1 > $OUT/logs/self_seed$1.log 2>&1 \
    || { say "STOPPED: student seed $1"; return 1; }
  say "student seed $1 done"
}
say "3. students"; student 4 0 & student 5 1 & wait; student 6 0,1
say "ALL DONE"
