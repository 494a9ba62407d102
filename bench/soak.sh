#!/usr/bin/env bash
# Soak test: starts a release flarum-ws on loopback, churns clients,
# subscriptions, presence joins and HTTP triggers against it for a bounded
# time (bench/tools/src/soak.rs), then checks that nothing published to a live
# subscriber was lost, that memory came back near its starting point, and
# that the server logged no error or panic. Appends the result to
# bench/SOAK.md.
#
#   bash bench/soak.sh            # 120 s, 300 clients at once
#   SOAK_SECONDS=600 SOAK_CLIENTS=1000 bash bench/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${SOAK_SECONDS:-120}"
CLIENTS="${SOAK_CLIENTS:-300}"
EVENTS_PER_SECOND="${SOAK_EVENTS_PER_SECOND:-200}"
# Memory may end this much above where it started (allocator slack).
RSS_SLACK_KIB="${SOAK_RSS_SLACK_KIB:-8192}"

source bench/common.sh
build_release soak
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
LOG="$(mktemp)"
FLARUM_WS_APP_ID=1 FLARUM_WS_APP_KEY=soak-key FLARUM_WS_APP_SECRET=soak-secret \
  FLARUM_WS_API_REQUESTS_PER_SECOND=100000 \
  target/release/flarum-ws serve --host 127.0.0.1 --port "$PORT" 2>"$LOG" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; rm -f "$LOG"' EXIT
for _ in $(seq 1 50); do grep -q "Listening on" "$LOG" && break; sleep 0.1; done
sleep 1

set +e
REPORT="$(target/release/soak --port "$PORT" --app-id 1 --key soak-key --secret soak-secret \
  --pid "$SERVER" --seconds "$SECONDS_TO_RUN" --clients "$CLIENTS" --events-per-second "$EVENTS_PER_SECOND" 2>soak-stderr.tmp)"
SOAK_EXIT=$?
set -e
tail -1 soak-stderr.tmp
kill -TERM "$SERVER"; wait "$SERVER" || true

PROBLEMS="$(grep -E '"?(ERROR|error)"?|panicked' "$LOG" | grep -v 'level":"INFO' || true)"
START="$(echo "$REPORT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["rss_start_kib"])')"
END="$(echo "$REPORT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["rss_end_kib"])')"
VERDICT=passed
[ "$SOAK_EXIT" -eq 0 ] || VERDICT="FAILED (lost, out-of-order or failed clients)"
[ -z "$PROBLEMS" ] || VERDICT="FAILED (error lines in the server log)"
[ "$END" -le $((START + RSS_SLACK_KIB)) ] || VERDICT="FAILED (memory did not come back: $START → $END KiB)"

{
  echo
  echo "## $(date -u +%Y-%m-%dT%H:%MZ): $VERDICT"
  echo
  echo "Command: \`SOAK_SECONDS=$SECONDS_TO_RUN SOAK_CLIENTS=$CLIENTS SOAK_EVENTS_PER_SECOND=$EVENTS_PER_SECOND bash bench/soak.sh\`"
  echo "on $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB."
  echo
  echo '```'
  tail -1 soak-stderr.tmp
  echo "$REPORT"
  echo "server log: $(wc -l <"$LOG") lines, error or panic lines: $(printf '%s' "$PROBLEMS" | grep -c . || true)"
  echo '```'
} >>bench/SOAK.md
rm -f soak-stderr.tmp
echo "soak $VERDICT"
[ "$VERDICT" = passed ]
