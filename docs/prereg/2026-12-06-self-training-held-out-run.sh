#!/bin/bash
# docs/prereg/2026-12-06-self-training-held-out.md, steps 1-4 in order, from the repository root:
#   bash docs/prereg/2026-12-06-self-training-held-out-run.sh
# Finished runs, maps and measures are skipped, a stopped run resumes. A step whose runs did not all finish (no DONE)
# stops the launcher: nothing is predicted from, or measured on, an unfinished run. The rule's output is kept in
# $OUT/decision.txt. (Checked end to end on a miniature schedule on 2026-12-06: about 1 CPU-hour of step 4 at that size,
# since predicting the held-out and fit cases and whole-case source val do not shrink with the schedule.)
set -u -o pipefail
cd "$(dirname "$0")/../.."
[ -f .venv/bin/activate ] && source .venv/bin/activate
OUT=bench_out/sthold
BASE_YAML=docs/prereg/2026-12-05-critic-window-3x-base.yaml
mkdir -p $OUT/logs
say() { echo "$* ($(date -u +%H:%M:%S))"; }
need_done() {  # need_done RUN_DIR...: every run finished, else stop
  for run in "$@"; do
    if [ ! -f "$run/DONE" ]; then say "STOPPED: $run did not finish (see $OUT/logs)"; exit 1; fi
  done
}
target_of() { [ "$1" = MR2CT ] && echo CT_BTCV || echo MR_CHAOS_T2; }

# 1. the base runs, both seeds of a direction at once
for D in "MR->CT" "CT->MR"; do
  SLUG=${D/->/2}
  say "base $D"
  python benchmarks/abdomen.py --phase train --out $OUT/base --hold-out-target 0.34 --config $BASE_YAML \
    --direction "$D" --variants source_only --seeds 0 1 --parallel 2 > $OUT/logs/base_$SLUG.log 2>&1
  need_done $OUT/base/runs/$SLUG/source_only/seed0 $OUT/base/runs/$SLUG/source_only/seed1
done

# 2. the base runs' maps of the fit cases
for SLUG in MR2CT CT2MR; do
  for S in 0 1; do
    MAPS=$OUT/maps/${SLUG}_seed$S
    if [ -f $MAPS.DONE ] && [ -d $MAPS ]; then continue; fi
    say "maps $SLUG seed $S"
    lmisa predict -m $OUT/base/runs/$SLUG/source_only/seed$S -i $OUT/base/data/$(target_of $SLUG)_train_fit/imagesTr \
      -o $MAPS --device cpu > $OUT/logs/maps_${SLUG}_seed$S.log 2>&1 || { say "STOPPED: maps $SLUG seed $S failed"; exit 1; }
    touch $MAPS.DONE
  done
done

# 3. the self-trained runs, both seeds of a direction at once (one bench folder per pair)
for D in "MR->CT" "CT->MR"; do
  SLUG=${D/->/2}
  say "self-trained $D"
  for S in 0 1; do
    python benchmarks/abdomen.py --phase train --out $OUT/self_${SLUG}_seed$S --hold-out-target 0.34 \
      --config docs/prereg/2026-12-06-self-training-held-out-${SLUG}_seed$S.yaml --direction "$D" \
      --variants source_only --seeds $S --parallel 2 > $OUT/logs/self_${SLUG}_seed$S.log 2>&1 &
  done
  wait
  need_done $OUT/self_${SLUG}_seed0/runs/$SLUG/source_only/seed0 $OUT/self_${SLUG}_seed1/runs/$SLUG/source_only/seed1
done

# 4. the measures on the held-out cases, the rule; then the measures on the fit cases (reported only)
measure() {  # measure NAME [--held-out]: label_free.py once (its JSON is written at its end only)
  local name=$1; shift
  if [ -f $OUT/$name.json ]; then return; fi
  say "label-free measures: $name"
  python benchmarks/label_free.py $OUT/base $OUT/self_* --variants source_only "$@" --keep $OUT/${name}_pred \
    --out $OUT/$name.json --parallel 2 || { say "STOPPED: label_free $name failed"; exit 1; }
}
measure label_free_held --held-out
python docs/prereg/2026-12-06-self-training-held-out-decide.py $OUT/label_free_held.json | tee $OUT/decision.txt \
  || { say "STOPPED: the rule gave no decision (see $OUT/decision.txt)"; exit 1; }
measure label_free_fit
say "ALL STEPS DONE"
