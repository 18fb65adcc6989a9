#!/usr/bin/env bash
# The test command: set up .venv, make sure Redis and PostgreSQL run, lint, run the suite.
# The suite starts its own S3 endpoint (moto_server) and Celery worker.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh api,worker,eval,dev
scripts/services.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
