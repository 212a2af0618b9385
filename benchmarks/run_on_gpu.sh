#!/usr/bin/env bash
# The GPU part of the abdomen benchmark, as run on a lent H100 (see docs/RESULTS.md):
# unpack the compact training data, train every run of the table in parallel on the one GPU
# (bounded by TRAIN_SECONDS), pack the runs for evaluation on another machine, measure throughput.
#   carry: .devdata (compact_data.py pack-data output) and .whl (monai, nibabel wheels)
#   then here: compact_data.py unpack-runs OUT_FILES bench_out/abdomen/runs; abdomen.py --phase evaluate
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
timeout "$TRAIN_SECONDS" python3 benchmarks/abdomen.py --phase train --out "$B" --device "${DEVICE:-cuda}" \
  --parallel "${PARALLEL:-15}" ${CONFIG:+--config $CONFIG} ${VARIANTS:+--variants $VARIANTS} 2>&1 | grep -v "━" | tee -a "$LOG"
echo "train phase wall: $(( $(date +%s) - t0 )) s" | tee -a "$LOG"
python3 benchmarks/compact_data.py pack-runs "$B/runs" "$OUT" --max-mb 15 | tee -a "$LOG"
tail -n 2 "$B"/runs/*/*/seed*.stdout >> "$LOG" 2>/dev/null
[ "${BENCH:-1}" = 1 ] && timeout 45 python3 benchmarks/bench_train.py --device "${DEVICE:-cuda}" --size 160 --steps 20 --warmup 3 2>&1 | tee -a "$LOG"
exit 0
