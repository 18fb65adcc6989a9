#!/usr/bin/env bash
# The one GPU check (issue #15): every CUDA path and each defect found by reading them, in one
# run (at most 8 minutes on one GPU), one report file. Runs on a CPU too:
#   scripts/gpu-check.sh --device cpu --quick --out /tmp/gpu-check.json   (the test suite's run)
#   scripts/gpu-check.sh --out gpu-check.json                              (on a GPU machine)
# Without --quick it also runs benchmarks.quality_cost (a 12-MP job's measuring, on the GPU).
# On a GPU machine that also runs Redis and PostgreSQL, --throughput adds benchmarks.throughput
# (end to end against the raw model, per stage, GPU utilisation, TFLOP/s against the peak).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
args=()
throughput=0
for arg in "$@"; do
  if [[ "$arg" == "--throughput" ]]; then throughput=1; else args+=("$arg"); fi
done
status=0
"$PYTHON" -m benchmarks.gpu_check "${args[@]}" || status=$?
if [[ " ${args[*]} " != *" --quick "* ]]; then
  # Issue #16: what measuring a 12-MP job (signals, previews) adds to it where restoring is fast.
  "$PYTHON" -m benchmarks.quality_cost --repeat 3 || status=$?
fi
if [[ $throughput == 1 ]]; then
  if redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && pg_isready -h 127.0.0.1 >/dev/null 2>&1; then
    "$PYTHON" -m benchmarks.throughput --device cuda --photos 8 --concurrency 1,3 \
      --device-batch-tiles 12 || status=$?
  else
    echo "benchmarks.throughput not run: it needs Redis and PostgreSQL on 127.0.0.1"
  fi
fi
exit $status
