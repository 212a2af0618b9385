#!/bin/bash
# docs/prereg/2026-12-06-self-training-held-out.md, one direction in one session (note of 2026-12-06, second):
#   bash docs/prereg/2026-12-06-self-training-held-out-run-direction.sh MR2CT   # or CT2MR
# The same commands as docs/prereg/2026-12-06-self-training-held-out-run.sh, steps 1-4, for one direction; then the
# target test of its four runs (reported after the decision only), then the measures on the fit cases (reported
# only; last, as the longest). What a later session needs (the label-free JSONs and the target results) is copied,
# unread, to docs/prereg/records/2026-12-06-self-training-held-out/ to be committed, since this
# machine no longer keeps bench_out/ from one session to the next. Resumable within a session.
set -u -o pipefail
cd "$(dirname "$0")/../.."
[ -f .venv/bin/activate ] && source .venv/bin/activate
SLUG=${1:?MR2CT or CT2MR}
case $SLUG in MR2CT) D="MR->CT"; TARGET=CT_BTCV ;; CT2MR) D="CT->MR"; TARGET=MR_CHAOS_T2 ;; *) echo "MR2CT or CT2MR"; exit 2 ;; esac
OUT=bench_out/sthold
BASE_YAML=docs/prereg/2026-12-05-critic-window-3x-base.yaml
RECORDS=docs/prereg/records/2026-12-06-self-training-held-out/$SLUG
mkdir -p $OUT/logs $RECORDS
say() { echo "$* ($(date -u +%H:%M:%S))"; }
need_done() { for run in "$@"; do [ -f "$run/DONE" ] || { say "STOPPED: $run did not finish (see $OUT/logs)"; exit 1; }; done; }
COMMON=(--hold-out-target 0.34 --direction "$D" --variants source_only)

say "1. base $D"
python benchmarks/abdomen.py --phase train --out $OUT/base --config $BASE_YAML "${COMMON[@]}" --seeds 0 1 --parallel 2 \
  > $OUT/logs/base_$SLUG.log 2>&1
need_done $OUT/base/runs/$SLUG/source_only/seed0 $OUT/base/runs/$SLUG/source_only/seed1

for S in 0 1; do
  MAPS=$OUT/maps/${SLUG}_seed$S
  if [ -f $MAPS.DONE ] && [ -d $MAPS ]; then continue; fi
  say "2. maps $SLUG seed $S"
  lmisa predict -m $OUT/base/runs/$SLUG/source_only/seed$S -i $OUT/base/data/${TARGET}_train_fit/imagesTr \
    -o $MAPS --device cpu > $OUT/logs/maps_${SLUG}_seed$S.log 2>&1 || { say "STOPPED: maps $SLUG seed $S failed"; exit 1; }
  touch $MAPS.DONE
done

say "3. self-trained $D"
for S in 0 1; do
  python benchmarks/abdomen.py --phase train --out $OUT/self_${SLUG}_seed$S \
    --config docs/prereg/2026-12-06-self-training-held-out-${SLUG}_seed$S.yaml "${COMMON[@]}" --seeds $S --parallel 2 \
    > $OUT/logs/self_${SLUG}_seed$S.log 2>&1 &
done
wait
need_done $OUT/self_${SLUG}_seed0/runs/$SLUG/source_only/seed0 $OUT/self_${SLUG}_seed1/runs/$SLUG/source_only/seed1

BENCHES=($OUT/base $OUT/self_${SLUG}_seed0 $OUT/self_${SLUG}_seed1)
measure() {  # measure NAME [--held-out]
  local name=$1; shift
  [ -f $OUT/$name.json ] && return
  say "4. label-free measures: $name"
  python benchmarks/label_free.py "${BENCHES[@]}" --variants source_only "$@" --keep $OUT/${name}_pred \
    --out $OUT/$name.json --parallel 2 > $OUT/logs/$name.log 2>&1 || { say "STOPPED: label_free $name failed"; exit 1; }
  cp $OUT/$name.json $RECORDS/
}
measure label_free_held_$SLUG --held-out

say "5. target test (read after the decision only)"
python benchmarks/abdomen.py --phase evaluate --out $OUT/base --config $BASE_YAML "${COMMON[@]}" --seeds 0 1 \
  --parallel 2 > $OUT/logs/eval_base_$SLUG.log 2>&1 || { say "STOPPED: evaluate base"; exit 1; }
cp $OUT/base/results.json $RECORDS/target_base.json
for S in 0 1; do
  python benchmarks/abdomen.py --phase evaluate --out $OUT/self_${SLUG}_seed$S \
    --config docs/prereg/2026-12-06-self-training-held-out-${SLUG}_seed$S.yaml "${COMMON[@]}" --seeds $S \
    > $OUT/logs/eval_self_${SLUG}_seed$S.log 2>&1 || { say "STOPPED: evaluate self seed $S"; exit 1; }
  cp $OUT/self_${SLUG}_seed$S/results.json $RECORDS/target_self_seed$S.json
done
measure label_free_fit_$SLUG  # reported only: last, as the longest of the three
say "ALL STEPS DONE for $SLUG"
