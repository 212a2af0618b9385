#!/bin/bash
# docs/prereg/2026-12-06-critic-window-beyond-source.md, in order, from the repository root:
#   bash docs/prereg/2026-12-06-critic-window-beyond-source-run.sh
# Three MR->CT pairs (each pair's two runs at once, one thread each); finished runs are skipped, a stopped one resumes.
# A pair whose runs did not both finish stops the launcher (nothing is measured before all six are DONE). Then the
# gate check, label_free and the rule (kept in $OUT/decision.txt).
set -u -o pipefail
cd "$(dirname "$0")/../.."
[ -f .venv/bin/activate ] && source .venv/bin/activate
OUT=bench_out/wgate
mkdir -p $OUT/logs
say() { echo "$* ($(date -u +%H:%M:%S))"; }
for S in 4 5 6; do
  say "pair MR->CT seed $S"
  python benchmarks/abdomen.py --phase train --out $OUT/base --config docs/prereg/2026-12-05-critic-window-3x-base.yaml \
    --direction "MR->CT" --variants lmisa --seeds $S --parallel 2 > $OUT/logs/base_seed$S.log 2>&1 &
  python benchmarks/abdomen.py --phase train --out $OUT/gated --config docs/prereg/2026-12-06-critic-window-beyond-source.yaml \
    --direction "MR->CT" --variants lmisa --seeds $S --parallel 2 > $OUT/logs/gated_seed$S.log 2>&1 &
  wait
  for arm in base gated; do
    if [ ! -f $OUT/$arm/runs/MR2CT/lmisa/seed$S/DONE ]; then say "STOPPED: $arm seed $S did not finish (see $OUT/logs)"; exit 1; fi
  done
done
say "gate check"
python docs/prereg/2026-12-06-critic-window-beyond-source-gate.py $OUT/gated --seeds 4 5 6 --out $OUT/gate.json \
  > $OUT/logs/gate.log 2>&1 || { say "STOPPED: the gate check failed (see $OUT/logs/gate.log)"; exit 1; }
if [ ! -f $OUT/label_free.json ]; then
  say "label-free measures"
  python benchmarks/label_free.py $OUT/base $OUT/gated --variants lmisa --out $OUT/label_free.json --parallel 2 \
    > $OUT/logs/label_free.log 2>&1 || { say "STOPPED: label_free failed (see $OUT/logs/label_free.log)"; exit 1; }
fi
python docs/prereg/2026-12-06-critic-window-beyond-source-decide.py $OUT/label_free.json $OUT/gate.json \
  | tee $OUT/decision.txt || { say "STOPPED: the rule gave no decision"; exit 1; }
say "ALL PAIRS TRAINED AND DECIDED"
