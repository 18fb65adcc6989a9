#!/usr/bin/env bash
# The one GPU check (issue #15): every CUDA path and each defect found by reading them, in one
# run (at most 8 minutes on one GPU), one report file. Runs on a CPU too:
#   scripts/gpu-check.sh --device cpu --quick --out /tmp/gpu-check.json   (the test suite's run)
#   scripts/gpu-check.sh --out gpu-check.json                              (on a GPU machine)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
exec "$PYTHON" -m benchmarks.gpu_check "$@"
