#!/usr/bin/env bash
# The test command: set up .venv, lint (ruff), check the import contracts (lint-imports) and the
# types (mypy), make sure Redis and PostgreSQL run and the test tools (Chromium, kubectl, KEDA's
# schemas) are installed, run the suite. The suite starts its own S3
# endpoint (moto_server) and Celery workers.
#
#   scripts/test.sh [pytest args]          everything
#   scripts/test.sh --fast [pytest args]   only the tests that need no service (under a minute)
set -euo pipefail
cd "$(dirname "$0")/.."
fast=()
if [ "${1:-}" = "--fast" ]; then
  fast=(--fast)
  shift
fi
scripts/setup.sh api,worker,eval,dev
.venv/bin/ruff check .
.venv/bin/lint-imports
.venv/bin/mypy
if [ ${#fast[@]} -eq 0 ]; then
  scripts/services.sh
  scripts/browser.sh
fi
scripts/k8s-tools.sh
.venv/bin/python -m pytest "${fast[@]}" "$@"
