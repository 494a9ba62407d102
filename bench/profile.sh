#!/usr/bin/env bash
# Where flarum-ws spends its CPU while fanning out: runs the release server
# and one load-generator scenario, samples the server with perf during the
# trigger phase and prints the time per delivery by part of the hot path.
# Results and their reading: bench/PROFILE.md.
#
#   bash bench/profile.sh                    # full speed, 10 000 clients / 10 channels
#   EVENTS=400 bash bench/profile.sh --deliveries-per-second 20000   # fixed rate
#   BIN=/path/to/an/older/flarum-ws bash bench/profile.sh               # another build
set -euo pipefail
cd "$(dirname "$0")/.."
command -v perf >/dev/null || { echo "perf is needed (Debian: apt-get install linux-perf)" >&2; exit 1; }

source bench/common.sh
PORT=6202
DATA="${DATA:-target/profile.data}"
build_release loadgen

env "${FLARUM_WS_BENCH_ENV[@]}" FLARUM_WS_PORT=$PORT \
  "${BIN:-target/release/flarum-ws}" serve >/tmp/profile-server.log 2>&1 &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do (echo >/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done

# The clients connect and settle for 4 s; perf samples 8 s of the trigger phase.
target/release/loadgen --port $PORT --app-id $APP_ID --key $KEY --secret $SECRET \
  --pid $SERVER_PID --connections 10000 --channels 10 --events "${EVENTS:-3000}" --settle 4 \
  --after-disconnect 0 "$@" >target/profile-run.jsonl &
LOADGEN_PID=$!
sleep 6
perf record -q -e cpu-clock -g -p $SERVER_PID -o "$DATA" -- sleep 8 >/dev/null 2>&1
wait $LOADGEN_PID
python3 bench/profile_summary.py "$DATA" target/profile-run.jsonl
