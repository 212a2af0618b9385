#!/bin/bash
# docs/prereg/2026-12-06-self-training-held-out.md, one direction's one seed in one session (note of 2026-12-06,
# third): the base run, its maps, the self-trained run (each alone, with both threads), the label-free measures of the
# pair, its target test (read after the decision only), then the fit-case measures (reported only):
#   bash docs/prereg/2026-12-06-self-training-held-out-run-seed.sh MR2CT 0   # MR2CT 1, CT2MR 0, CT2MR 1: one each
# Records go, unread, to docs/prereg/records/2026-12-06-self-training-held-out/<slug>_seed<S>/ to be committed.
# The decision, once the four are recorded (the decide script unchanged):
#   R=docs/prereg/records/2026-12-06-self-training-held-out
#   python -c 'import json,sys; print(json.dumps(sum((json.load(open(f)) for f in sys.argv[1:]), [])))' \
#     $R/*_seed*/label_free_held.json > /tmp/held.json
#   python docs/prereg/2026-12-06-self-training-held-out-decide.py /tmp/held.json
set -u -o pipefail
cd "$(dirname "$0")/../.."
[ -f .venv/bin/activate ] && source .venv/bin/activate
SLUG=${1:?MR2CT or CT2MR}; S=${2:?seed 0 or 1}
case $SLUG in MR2CT) D="MR->CT"; TARGET=CT_BTCV ;; CT2MR) D="CT->MR"; TARGET=MR_CHAOS_T2 ;; *) echo "MR2CT or CT2MR"; exit 2 ;; esac
OUT=bench_out/sthold
BASE_YAML=docs/prereg/2026-12-05-critic-window-3x-base.yaml
SELF_YAML=docs/prereg/2026-12-06-self-training-held-out-${SLUG}_seed$S.yaml
RECORDS=docs/prereg/records/2026-12-06-self-training-held-out/${SLUG}_seed$S
mkdir -p $OUT/logs $RECORDS
say() { echo "$* ($(date -u +%H:%M:%S))"; }
COMMON=(--hold-out-target 0.34 --direction "$D" --variants source_only --seeds $S --parallel 1)
BASE_RUN=$OUT/base/runs/$SLUG/source_only/seed$S
SELF_RUN=$OUT/self_${SLUG}_seed$S/runs/$SLUG/source_only/seed$S

say "1. base $D seed $S"
python benchmarks/abdomen.py --phase train --out $OUT/base --config $BASE_YAML "${COMMON[@]}" > $OUT/logs/base_${SLUG}_seed$S.log 2>&1
[ -f $BASE_RUN/DONE ] || { say "STOPPED: $BASE_RUN did not finish"; exit 1; }
MAPS=$OUT/maps/${SLUG}_seed$S
if [ ! -f $MAPS.DONE ]; then
  say "2. maps"
  lmisa predict -m $BASE_RUN -i $OUT/base/data/${TARGET}_train_fit/imagesTr -o $MAPS --device cpu \
    > $OUT/logs/maps_${SLUG}_seed$S.log 2>&1 || { say "STOPPED: maps failed"; exit 1; }
  touch $MAPS.DONE
fi
say "3. self-trained"
python benchmarks/abdomen.py --phase train --out $OUT/self_${SLUG}_seed$S --config $SELF_YAML "${COMMON[@]}" \
  > $OUT/logs/self_${SLUG}_seed$S.log 2>&1
[ -f $SELF_RUN/DONE ] || { say "STOPPED: $SELF_RUN did not finish"; exit 1; }

# label_free.py measures every finished run of a bench folder: a folder holding this seed's base run alone
VIEW=$OUT/base_${SLUG}_seed$S
mkdir -p $VIEW/runs/$SLUG/source_only
ln -sfn "$(realpath $BASE_RUN)" $VIEW/runs/$SLUG/source_only/seed$S
ln -sfn "$(realpath $OUT/base/data)" $VIEW/data
measure() {  # measure NAME [--held-out]
  local name=$1; shift
  [ -f $RECORDS/$name.json ] && return
  say "4. label-free measures: $name"
  python benchmarks/label_free.py $VIEW $OUT/self_${SLUG}_seed$S --variants source_only "$@" \
    --keep $OUT/${name}_${SLUG}_seed${S}_pred --out $OUT/${name}_${SLUG}_seed$S.json --parallel 2 \
    > $OUT/logs/${name}_${SLUG}_seed$S.log 2>&1 || { say "STOPPED: label_free $name failed"; exit 1; }
  cp $OUT/${name}_${SLUG}_seed$S.json $RECORDS/$name.json
}
measure label_free_held --held-out
say "5. target test (read after the decision only)"
python benchmarks/abdomen.py --phase evaluate --out $OUT/base --config $BASE_YAML "${COMMON[@]}" \
  > $OUT/logs/eval_base_${SLUG}_seed$S.log 2>&1 || { say "STOPPED: evaluate base"; exit 1; }
cp $OUT/base/results.json $RECORDS/target_base.json
python benchmarks/abdomen.py --phase evaluate --out $OUT/self_${SLUG}_seed$S --config $SELF_YAML "${COMMON[@]}" \
  > $OUT/logs/eval_self_${SLUG}_seed$S.log 2>&1 || { say "STOPPED: evaluate self"; exit 1; }
cp $OUT/self_${SLUG}_seed$S/results.json $RECORDS/target_self.json
measure label_free_fit  # reported only
say "ALL STEPS DONE for $SLUG seed $S"
