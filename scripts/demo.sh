#!/usr/bin/env bash
# The main job, embedded: no server to install. Restores the sample night photos (or the folders
# given) with SQLite, a local object folder and the worker running in this process.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh worker
inputs=("$@")
[ ${#inputs[@]} -gt 0 ] || inputs=(samples)
exec .venv/bin/darkroom submit "${inputs[@]}" --out darkroom-results
