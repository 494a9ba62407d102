#!/usr/bin/env bash
# Runs every test of flarum-ws: the Rust unit and integration tests, including
# the ones `cargo test` alone skips because they need real services (MariaDB,
# PostgreSQL, Redis, nginx, PHP, Chromium, Node.js), then the conformance
# suites that drive the real binary with the real clients (pusher-js 5.1.1,
# 7.x and 8.x, the npm `pusher` SDK and the PyPI `pusher` SDK).
#
# On a fresh Debian machine, run it as root and it installs what is missing
# first; as another user it names the one `apt-get install` line to run and
# exits 2 before building anything.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: installs them as root, or says which to install and stops.
tests/services/packages.sh tests

if ! command -v cargo >/dev/null; then
  echo "cargo is not installed: install Rust 1.94 or newer with rustup (https://rustup.rs), then run this again" >&2
  exit 2
fi

# The conformance suites' own dependencies, from their committed lock files.
if [ ! -d tests/conformance/node_modules ]; then
  (cd tests/conformance && npm ci --no-audit --no-fund)
fi
# The PyPI packages go into a virtual environment under target/: Debian's
# own python3 refuses `pip install` into the system (PEP 668).
venv=target/conformance-venv
if ! "$venv/bin/python" -c 'import pusher, websocket, prometheus_client' 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q -r tests/conformance/python/requirements.txt
fi

# Real MariaDB and PostgreSQL servers for the forum tests, stopped on exit. A
# server that does not start ends the run here (set -e), with its log's end.
services="$(mktemp)"
trap 'tests/services/stop.sh; rm -f "$services"' EXIT
tests/services/start.sh >"$services"
# shellcheck disable=SC1090
source "$services"

cargo build --locked --workspace --all-targets
cargo test --locked --workspace -- --include-ignored

export TEST_FLARUM_WS_BIN="$PWD/target/debug/flarum-ws"
(cd tests/conformance && npm test)
"$venv/bin/python" -m unittest discover -s tests/conformance/python -v
echo "all tests passed"
