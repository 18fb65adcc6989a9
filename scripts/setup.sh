#!/usr/bin/env bash
# Create .venv and install Darkroom with the given extras (default: everything).
# Re-running is cheap: the install is skipped while pyproject.toml and constraints.txt are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-api,worker,eval,dev}"
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=".venv/.darkroom-$(echo "$extras" | tr ',' '-')"
digest=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
  echo "installing darkroom[$extras] into .venv (torch is large: the first run takes minutes)"
  .venv/bin/python -m pip install --quiet -e ".[$extras]" -c constraints.txt
  echo "$digest" > "$stamp"
fi
