#!/usr/bin/env bash
# The one entry point for checks, the same locally and in CI: installs what the tests need
# (pip packages; redis-server via apt-get when absent), then ruff, mypy and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# Debian packages the tests drive for real: redis-server, and chromium for the browser tests
# (Playwright uses it as it is; no browser is downloaded).
missing=""
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium fonts-dejavu-core"
if [ -n "$missing" ]; then
  echo "== installing$missing (apt-get)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

echo "== installing the project and its test dependencies"
$PY -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -e '.[test]'

echo "== ruff";   $PY -m ruff check .
echo "== mypy";   $PY -m mypy
echo "== pytest"; $PY -m pytest "$@"
