#!/bin/bash
# docs/prereg/2026-12-07-self-training-on-default-ct2mr.md, all steps, resumable (finished runs and maps are kept):
#   bash docs/prereg/2026-12-07-self-training-on-default-ct2mr-run.sh
# 1. the six base runs, two at a time; 2. per base run its maps of the MR training cases, then a self-trained run,
# two at a time on one core each (taskset: abdomen.py gives each the cores of its CPU affinity); 3. the ensembles.
set -u -o pipefail
cd "$(dirname "$0")/../.."
[ -f .venv/bin/activate ] && source .venv/bin/activate
OUT=bench_out/ct2mr3x
P=docs/prereg/2026-12-07-self-training-on-default-ct2mr
mkdir -p $OUT/logs $OUT/ens
say() { echo "$* ($(date -u +%H:%M:%S))"; }
say "1. bases"
python benchmarks/abdomen.py --out $OUT --config docs/prereg/2026-12-07-schedule-3x-default.yaml --direction "CT->MR" \
  --variants lmisa source_only --seeds 4 5 6 --parallel 2 > $OUT/logs/bases.log 2>&1 || { say "STOPPED: bases"; exit 1; }
self_train() {  # self_train VARIANT SEED CORES
  local V=$1 S=$2 CORES=$3 MAPS=$OUT/maps/$1_seed$2
  if [ ! -f $MAPS.DONE ]; then
    taskset -c $CORES lmisa predict -m $OUT/runs/CT2MR/$V/seed$S -i $OUT/data/MR_CHAOS_T2_train/imagesTr -o $MAPS \
      --device cpu > $OUT/logs/maps_${V}_seed$S.log 2>&1 || { say "STOPPED: maps $V seed $S"; return 1; }
    touch $MAPS.DONE
  fi
  taskset -c $CORES python benchmarks/abdomen.py --out $OUT/self_${V}_seed$S --config $P-$V-seed$S.yaml \
    --direction "CT->MR" --variants source_only --seeds $S --parallel 1 > $OUT/logs/self_${V}_seed$S.log 2>&1 \
    || { say "STOPPED: self-trained $V seed $S"; return 1; }
  say "self-trained $V seed $S done"
}
say "2. self-trained runs"
self_train lmisa 4 0 & self_train lmisa 5 1 & wait
self_train lmisa 6 0 & self_train source_only 4 1 & wait
self_train source_only 5 0 & self_train source_only 6 1 & wait
say "3. ensembles"
T=$OUT/data/MR_CHAOS_T2_test
for V in lmisa source_only; do
  python benchmarks/ensemble_check.py $OUT/runs/CT2MR/$V/seed4 $OUT/runs/CT2MR/$V/seed5 $OUT/runs/CT2MR/$V/seed6 \
    --test $T --out $OUT/ens/$V.json > $OUT/logs/ens_$V.log 2>&1
  python benchmarks/ensemble_check.py $OUT/self_${V}_seed4/runs/CT2MR/source_only/seed4 \
    $OUT/self_${V}_seed5/runs/CT2MR/source_only/seed5 $OUT/self_${V}_seed6/runs/CT2MR/source_only/seed6 \
    --test $T --out $OUT/ens/self_$V.json > $OUT/logs/ens_self_$V.log 2>&1
done
say "ALL DONE"
