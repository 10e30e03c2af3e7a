#!/usr/bin/env bash
# The main job: the executor (with its dashboard) on :8288 and the example app on :8000.
# Uses an embedded Redis: a redis-server child with AOF if one is installed, else in-memory.
# Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
$PY -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -e .

export INNGEST_DEV=1 INNGEST_BASE_URL=http://127.0.0.1:8288
$PY -m uvicorn examples.fastapi_app.main:app --host 127.0.0.1 --port 8000 --log-level warning &
app=$!
trap 'kill $app 2>/dev/null || true' EXIT INT TERM
echo "example app: http://127.0.0.1:8000/api/inngest"
echo "send an event: curl -X POST http://127.0.0.1:8288/e/dev -H \"Content-Type: application/json\" -d '{\"name\":\"research/requested\",\"data\":{\"topic\":\"durable agents\"}}'"
$PY -m executor dev -u http://127.0.0.1:8000/api/inngest "$@"
