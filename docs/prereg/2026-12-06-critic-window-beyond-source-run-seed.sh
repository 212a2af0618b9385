#!/bin/bash
# docs/prereg/2026-12-06-critic-window-beyond-source.md, one seed's pair in one session (note of 2026-12-06, second):
#   bash docs/prereg/2026-12-06-critic-window-beyond-source-run-seed.sh 4   # then 5, then 6, one session each
# The same commands as ...-run.sh for one seed: the pair (both runs at once), the gate check and the label-free
# measures of that seed, then the pair's target test (read after the decision only). What the decision needs is
# copied, unread, to docs/prereg/records/2026-12-06-critic-window-beyond-source/seed<S>/ to be committed, since this
# machine no longer keeps bench_out/ from one session to the next. Resumable within a session. Once seeds 4-6 are
# recorded, the decision:
#   R=docs/prereg/records/2026-12-06-critic-window-beyond-source
#   python -c 'import json,sys; print(json.dumps(sum((json.load(open(f)) for f in sys.argv[1:]), [])))' $R/seed*/label_free.json > /tmp/lf.json
#   python -c 'import json,sys; print(json.dumps(sum((json.load(open(f)) for f in sys.argv[1:]), [])))' $R/seed*/gate.json > /tmp/gate.json
#   python docs/prereg/2026-12-06-critic-window-beyond-source-decide.py /tmp/lf.json /tmp/gate.json
set -u -o pipefail
cd "$(dirname "$0")/../.."
[ -f .venv/bin/activate ] && source .venv/bin/activate
S=${1:?seed: 4, 5 or 6}
OUT=bench_out/wgate
RECORDS=docs/prereg/records/2026-12-06-critic-window-beyond-source/seed$S
mkdir -p $OUT/logs $RECORDS
say() { echo "$* ($(date -u +%H:%M:%S))"; }
declare -A YAML=([base]=docs/prereg/2026-12-05-critic-window-3x-base.yaml [gated]=docs/prereg/2026-12-06-critic-window-beyond-source.yaml)
say "pair MR->CT seed $S"
for arm in base gated; do
  python benchmarks/abdomen.py --phase train --out $OUT/$arm --config ${YAML[$arm]} \
    --direction "MR->CT" --variants lmisa --seeds $S --parallel 2 > $OUT/logs/${arm}_seed$S.log 2>&1 &
done
wait
for arm in base gated; do
  [ -f $OUT/$arm/runs/MR2CT/lmisa/seed$S/DONE ] || { say "STOPPED: $arm seed $S did not finish (see $OUT/logs)"; exit 1; }
done
say "gate check"
python docs/prereg/2026-12-06-critic-window-beyond-source-gate.py $OUT/gated --seeds $S --out $RECORDS/gate.json \
  > $OUT/logs/gate_seed$S.log 2>&1 || { say "STOPPED: the gate check failed (see $OUT/logs/gate_seed$S.log)"; exit 1; }
if [ ! -f $RECORDS/label_free.json ]; then
  say "label-free measures"
  python benchmarks/label_free.py $OUT/base $OUT/gated --variants lmisa --out $OUT/label_free_seed$S.json --parallel 2 \
    > $OUT/logs/label_free_seed$S.log 2>&1 || { say "STOPPED: label_free failed (see $OUT/logs/label_free_seed$S.log)"; exit 1; }
  cp $OUT/label_free_seed$S.json $RECORDS/label_free.json
fi
say "target test (read after the decision only)"
for arm in base gated; do
  python benchmarks/abdomen.py --phase evaluate --out $OUT/$arm --config ${YAML[$arm]} --direction "MR->CT" \
    --variants lmisa --seeds $S > $OUT/logs/eval_${arm}_seed$S.log 2>&1 || { say "STOPPED: evaluate $arm"; exit 1; }
  cp $OUT/$arm/results.json $RECORDS/target_$arm.json
done
say "SEED $S DONE"
