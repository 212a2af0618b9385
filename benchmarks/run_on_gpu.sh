#!/usr/bin/env bash
# The GPU part of the abdomen benchmark, as run on a lent GPU machine (see docs/RESULTS.md):
# unpack the compact data, train every run of the table in parallel on the one GPU (the train phase
# stops after TRAIN_SECONDS; unfinished runs are evaluated at their best checkpoint), then evaluate
# there on the held-out test cases, so that no weights need to come back (SIFA's alone exceed the
# 64 MiB that can). Only the tables, the plot and the logs come back in $OUT.
#   carry: .devdata (compact_data.py pack-data + pack-test output) and .whl (monai, nibabel wheels)
#   PACK_RUNS=1 also packs the runs' weights (float16) for evaluation elsewhere (compact_data.py unpack-runs).
set -uo pipefail
OUT=${OUT:-/tmp/out}
LOG="$OUT/log.txt"
TRAIN_SECONDS=${TRAIN_SECONDS:-320}
export PYTHONUNBUFFERED=1 LMISA_CACHE=/tmp/lmisa_cache LMISA_ABDOMEN=/nonexistent
if ! python3 -c "import monai, nibabel" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$LOG"
B=/tmp/bench
python3 benchmarks/compact_data.py unpack-data .devdata/abdomen "$B/data" > /dev/null || exit 1
t0=$(date +%s)
python3 benchmarks/abdomen.py --phase train --out "$B" --device "${DEVICE:-cuda}" --time-limit "$TRAIN_SECONDS" \
  --parallel "${PARALLEL:-15}" ${CONFIG:+--config $CONFIG} ${VARIANTS:+--variants $VARIANTS} 2>&1 | grep -v "━" | tee -a "$LOG"
echo "train phase wall: $(( $(date +%s) - t0 )) s" | tee -a "$LOG"
tail -n 2 "$B"/runs/*/*/seed*.stdout >> "$LOG" 2>/dev/null
if [ -d .devdata/abdomen_test ]; then  # lossless test cases (compact_data.py pack-test): evaluate here
  python3 benchmarks/compact_data.py unpack-data .devdata/abdomen_test "$B/data" > /dev/null || exit 1
  python3 benchmarks/abdomen.py --phase evaluate --out "$B" --device "${DEVICE:-cuda}" \
    ${CONFIG:+--config $CONFIG} ${VARIANTS:+--variants $VARIANTS} 2>&1 | grep -v "━" | tail -n 60 >> "$LOG"
  cp "$B"/results.json "$B"/results.md "$B"/*.png "$OUT"/ 2>/dev/null
  for run in "$B"/runs/*/*/seed*; do  # the training curves and logs, small
    rel=${run#"$B"/runs/}; mkdir -p "$OUT/runs/$rel"
    cp "$run"/log.csv "$run"/train.log "$run"/params.json "$run"/hardware.txt "$OUT/runs/$rel"/ 2>/dev/null
  done
fi
[ "${PACK_RUNS:-0}" = 1 ] && python3 benchmarks/compact_data.py pack-runs "$B/runs" "$OUT" --max-mb 15 | tee -a "$LOG"
[ "${BENCH:-1}" = 1 ] && timeout 45 python3 benchmarks/bench_train.py --device "${DEVICE:-cuda}" --size 160 --steps 20 --warmup 3 2>&1 | tee -a "$LOG"
exit 0
