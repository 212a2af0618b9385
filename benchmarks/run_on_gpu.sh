#!/usr/bin/env bash
# The GPU part of the abdomen benchmark, as run on a lent GPU machine (see docs/RESULTS.md):
# unpack the compact data, train every run of the table in parallel on the one GPU (the train phase
# stops after TRAIN_SECONDS; unfinished runs are evaluated at their best checkpoint), then evaluate
# there on the held-out test cases, PARALLEL runs at a time, so that no weights need to come back
# (SIFA's alone exceed the 64 MiB that can).
#   carry: .devdata (compact_data.py pack-data + pack-test output) and .whl (monai, nibabel wheels)
# What comes back in $OUT (at most 8 files, none in subfolders): log.txt, gpu.csv (utilisation every
# 5 s), runs.tgz (every run's log.csv, train.log, params, stdout: written after training, again at the
# end), results.{json,md}, cost_vs_dice.png and the example pictures. Every file is written as soon as
# it exists, so a command cut at its limit still returns what it got to.
#   MPS=0 turns off the CUDA multi-process service (on by default where it starts; see below and RESULTS.md 2j).
#   PACK_RUNS=1 also packs the runs' weights (float16) for evaluation elsewhere (compact_data.py
#   unpack-runs); that adds files, so leave out the pictures then.
#   CONFIG_B: a second arm, VARIANTS_B (default: VARIANTS) and SEEDS under another config (an option beside the defaults),
#   trained at the same time as the first (PARALLEL runs each) in ${B}_b on the same data. Its results come
#   back as results_b.{json,md}, its logs in runs.tgz under b/, and the pictures stay behind (8 files at most).
#   LABEL_FREE=1: after evaluating, benchmarks/label_free.py measures every finished `lmisa` run of each arm on
#   the target's training images (no target label) into label_free.json, for a rule written before the runs.
#   ENSEMBLE=1: then, for each variant with two or more finished seeds, benchmarks/ensemble_check.py scores the seeds
#   alone and as one ensemble on the test cases (read afterwards), into log.txt.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
LOG="$OUT/log.txt"
TRAIN_SECONDS=${TRAIN_SECONDS:-320}
export PYTHONUNBUFFERED=1 LMISA_CACHE=/tmp/lmisa_cache LMISA_ABDOMEN=/nonexistent
if ! python3 -c "import monai, nibabel" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$LOG"
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 5 > "$OUT/gpu.csv" 2>&1 &
  SMI_PID=$!
fi
MPS_STARTED=0
stop_mps() { echo quit | timeout 10 nvidia-cuda-mps-control >/dev/null 2>&1; sleep 1; }
trap 'kill ${SMI_PID:-} 2>/dev/null; [ "$MPS_STARTED" = 1 ] && stop_mps' EXIT
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$LOG"
if [ "${MPS:-1}" = 1 ] && command -v nvidia-cuda-mps-control >/dev/null; then
  # The CUDA multi-process service lets the kernels of the parallel runs share the GPU at once rather
  # than taking turns (up to 48 client processes); it is checked with one client and left off if that
  # fails or hangs. A daemon left by an earlier call that was killed is stopped first.
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps_pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps_log
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  stop_mps
  if nvidia-cuda-mps-control -d && MPS_STARTED=1 \
     && timeout 60 python3 -c "import torch; torch.ones(1, device='cuda').sum().item()"; then
    echo "MPS: on" | tee -a "$LOG"
  else
    [ "$MPS_STARTED" = 1 ] && stop_mps
    MPS_STARTED=0; unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY; echo "MPS: failed, off" | tee -a "$LOG"
  fi
else
  echo "MPS: off" | tee -a "$LOG"
fi
B=/tmp/bench
ARMS="$B"
[ -n "${CONFIG_B:-}" ] && ARMS="$B ${B}_b"
arm_config() { [ "$1" = "$B" ] && echo "${CONFIG:-}" || echo "$CONFIG_B"; }
arm_variants() { [ "$1" = "$B" ] && echo "${VARIANTS:-}" || echo "${VARIANTS_B:-${VARIANTS:-}}"; }
pack_logs() {  # every run's small files, one archive (the way back takes files at most 2 folders down)
  [ -d "${B}_b/runs" ] && ln -sfn "${B}_b/runs" "$B/b"
  (cd "$B" && find -L runs b -maxdepth 4 \( -name log.csv -o -name train.log -o -name params.json \
    -o -name hardware.txt -o -name '*.stdout' -o -name config.yaml \) -print0 2>/dev/null \
    | tar --null -czf "$OUT/runs.tgz" -T - 2>/dev/null)
}
t0=$(date +%s)
# a second call on the same (warm) machine keeps the data and caches, if it carries the same packs
packs=$(ls -l .devdata/abdomen .devdata/abdomen_test 2>/dev/null | md5sum | cut -d' ' -f1)
if [ "$(cat "$B/data/.unpacked" 2>/dev/null)" != "$packs" ]; then
  rm -rf "$B/data" "$LMISA_CACHE"
  python3 benchmarks/compact_data.py unpack-data .devdata/abdomen "$B/data" > /dev/null || exit 1
  [ -d .devdata/abdomen_test ] && { python3 benchmarks/compact_data.py unpack-data .devdata/abdomen_test "$B/data" > /dev/null || exit 1; }
  echo "$packs" > "$B/data/.unpacked"
fi
echo "unpacked in $(( $(date +%s) - t0 )) s" | tee -a "$LOG"
[ -n "${CONFIG_B:-}" ] && { mkdir -p "${B}_b"; ln -sfn "$B/data" "${B}_b/data"; }
t1=$(date +%s); trains=""
for arm in $ARMS; do
  cfg=$(arm_config "$arm"); vars=$(arm_variants "$arm"); tag=$([ "$arm" = "$B" ] && echo "" || echo "[b] ")
  python3 benchmarks/abdomen.py --phase train --out "$arm" --device "${DEVICE:-cuda}" --time-limit "$TRAIN_SECONDS" \
    --parallel "${PARALLEL:-15}" ${cfg:+--config $cfg} ${vars:+--variants $vars} ${SEEDS:+--seeds $SEEDS} \
    2>&1 | grep --line-buffered -v "━" | sed -u "s/^/$tag/" | tee -a "$LOG" &
  trains="$trains $!"
done
wait $trains  # not a bare wait: nvidia-smi's logger runs until the end
echo "train phase wall (caches + training): $(( $(date +%s) - t1 )) s" | tee -a "$LOG"
pack_logs
if [ -d .devdata/abdomen_test ]; then  # lossless test cases (compact_data.py pack-test): evaluate here
  t2=$(date +%s)
  for arm in $ARMS; do
    cfg=$(arm_config "$arm"); vars=$(arm_variants "$arm")
    python3 benchmarks/abdomen.py --phase evaluate --out "$arm" --device "${DEVICE:-cuda}" --parallel "${EVAL_PARALLEL:-8}" \
      ${cfg:+--config $cfg} ${vars:+--variants $vars} ${SEEDS:+--seeds $SEEDS} \
      2>&1 | grep --line-buffered -v "━" | tee -a "$LOG"
  done
  echo "evaluate phase wall: $(( $(date +%s) - t2 )) s" | tee -a "$LOG"
  cp "$B"/results.json "$B"/results.md "$OUT"/ 2>/dev/null
  if [ -n "${CONFIG_B:-}" ]; then
    cp "${B}_b/results.json" "$OUT/results_b.json" 2>/dev/null; cp "${B}_b/results.md" "$OUT/results_b.md" 2>/dev/null
  else
    cp "$B"/*.png "$OUT"/ 2>/dev/null
  fi
  pack_logs
fi
if [ "${LABEL_FREE:-0}" = 1 ]; then  # label-free measures on the target's training images (docs/prereg/)
  t3=$(date +%s)
  python3 benchmarks/label_free.py $ARMS --variants lmisa --out "$OUT/label_free.json" --device "${DEVICE:-cuda}" \
    --parallel "${EVAL_PARALLEL:-8}" 2>&1 | tee -a "$LOG"
  echo "label-free phase wall: $(( $(date +%s) - t3 )) s" | tee -a "$LOG"
fi
if [ "${ENSEMBLE:-0}" = 1 ] && [ -d .devdata/abdomen_test ]; then  # each variant's finished seeds as one ensemble
  t4=$(date +%s)                                                      # (read afterwards: the test labels)
  for arm in $ARMS; do
    for pair in MR2CT:CT_BTCV_test CT2MR:MR_CHAOS_T2_test; do
      for vdir in "$arm/runs/${pair%%:*}"/*/; do
        seeds=(); for finished in "$vdir"seed*/DONE; do [ -e "$finished" ] && seeds+=("${finished%/DONE}"); done
        [ ${#seeds[@]} -ge 2 ] || continue
        echo "ensemble of ${#seeds[@]} seeds: $vdir" | tee -a "$LOG"
        python3 benchmarks/ensemble_check.py "${seeds[@]}" --test "$B/data/${pair#*:}" --device "${DEVICE:-cuda}" \
          --out /tmp/ensemble.json 2>&1 | tee -a "$LOG"
      done
    done
  done
  echo "ensemble phase wall: $(( $(date +%s) - t4 )) s" | tee -a "$LOG"
fi
[ "${PACK_RUNS:-0}" = 1 ] && python3 benchmarks/compact_data.py pack-runs "$B/runs" "$OUT" --max-mb 15 | tee -a "$LOG"
echo "total wall: $(( $(date +%s) - t0 )) s" | tee -a "$LOG"
exit 0
