#!/usr/bin/env bash
# Runs every test of flarum-ws: the Rust unit and integration tests (the
# forum tests against real MariaDB, PostgreSQL and SQLite), then the
# conformance suites that drive the real binary with the real clients
# (pusher-js 5.1.1, 7.x and 8.x, the npm `pusher` SDK and the PyPI `pusher` SDK).
set -euo pipefail
cd "$(dirname "$0")/.."

# The conformance suites' own dependencies, from their committed lock files.
if [ ! -d tests/conformance/node_modules ]; then
  (cd tests/conformance && npm ci --no-audit --no-fund)
fi
python3 -c 'import pusher, websocket, prometheus_client' 2>/dev/null \
  || python3 -m pip install -q -r tests/conformance/python/requirements.txt

# Real MariaDB and PostgreSQL servers for the forum tests, stopped on exit.
# shellcheck disable=SC1090
source <(tests/services/start.sh)
trap tests/services/stop.sh EXIT

cargo build --all-targets
cargo test

export TEST_FLARUM_WS_BIN="$PWD/target/debug/flarum-ws"
(cd tests/conformance && npm test)
python3 -m unittest discover -s tests/conformance/python -v
echo "all tests passed"
