#!/bin/bash
# docs/prereg/2026-12-07-self-training-source-only-mr2ct.md, all steps, resumable (finished runs and maps are kept):
#   bash docs/prereg/2026-12-07-self-training-source-only-mr2ct-run.sh [SEEDS...]   (default: 4 5)
# 1. the source_only bases (2026-12-07-source-only-seeds-4-6.md's command, rerun), two at a time; 2. per base its
# maps of the CT training cases, then a self-trained run, two at a time on one core each (taskset: abdomen.py gives
# each the cores of its CPU affinity).
set -u -o pipefail
cd "$(dirname "$0")/../.."
[ -f .venv/bin/activate ] && source .venv/bin/activate
OUT=bench_out/sost
P=docs/prereg/2026-12-07-self-training-source-only-mr2ct
SEEDS=("${@:-4 5}"); SEEDS=(${SEEDS[*]})
mkdir -p $OUT/logs
say() { echo "$* ($(date -u +%H:%M:%S))"; }
say "1. bases, seeds ${SEEDS[*]}"
python benchmarks/abdomen.py --out $OUT --config docs/prereg/2026-12-05-critic-window-3x-base.yaml --direction "MR->CT" \
  --variants source_only --seeds ${SEEDS[*]} --parallel 2 > $OUT/logs/bases.log 2>&1 || { say "STOPPED: bases"; exit 1; }
self_train() {  # self_train SEED CORES
  local S=$1 CORES=$2 MAPS=$OUT/maps/source_only_seed$1
  if [ ! -f $MAPS.DONE ]; then
    taskset -c $CORES lmisa predict -m $OUT/runs/MR2CT/source_only/seed$S -i $OUT/data/CT_BTCV_train/imagesTr -o $MAPS \
      --device cpu > $OUT/logs/maps_seed$S.log 2>&1 || { say "STOPPED: maps seed $S"; return 1; }
    touch $MAPS.DONE
  fi
  taskset -c $CORES python benchmarks/abdomen.py --out $OUT/self_seed$S --config $P-seed$S.yaml \
    --direction "MR->CT" --variants source_only --seeds $S --parallel 1 > $OUT/logs/self_seed$S.log 2>&1 \
    || { say "STOPPED: self-trained seed $S"; return 1; }
  say "self-trained seed $S done"
}
say "2. self-trained runs"
for ((i = 0; i < ${#SEEDS[@]}; i += 2)); do
  if ((i + 1 < ${#SEEDS[@]})); then self_train ${SEEDS[i]} 0 & self_train ${SEEDS[i+1]} 1 & wait
  else self_train ${SEEDS[i]} 0,1; fi
done
say "ALL DONE"
