#!/usr/bin/env bash
# A handover without systemd under a forum's load (issue 36): flarum-ws A
# holds 10 000 tabs (packaging/tabs.py, each on a private channel,
# reconnecting at once on 4200 as pusher-js does) while the forum's PHP
# sends 200 signed triggers a second, each on a new connection
# (packaging/trigger-loop.py); then flarum-ws B is started on the same port
# and takes the socket over, and A closes its tabs over close_spread.
# Prints the triggers' JSON line (sent, failed, slowest) and the tabs' (all
# back, reconnections, the forum's authorization peak per second), and
# appends both to the raw run file. The same tools packaging/verify.sh runs
# inside a booted systemd for `systemctl restart` and a package upgrade.
#
#   bash bench/handover-load.sh [CLOSE_SPREAD_SECONDS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
SPREAD="${1:-5}"
PORT=6252
RUN="$(run_file handover-load)"
build_release
serve() {
  env "${FLARUM_WS_BENCH_ENV[@]}" FLARUM_WS_PORT=$PORT FLARUM_WS_CLOSE_SPREAD="$SPREAD" \
    target/release/flarum-ws serve >>"$RUN.log" 2>&1 &
}
serve
FIRST=$!
trap 'kill $FIRST $SECOND 2>/dev/null || true' EXIT
SECOND=
for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
python3 packaging/tabs.py $PORT $KEY $SECRET 10000 120 >"$RUN.tabs" &
TABS=$!
sleep 8
python3 packaging/trigger-loop.py $PORT $APP_ID $KEY $SECRET 200 14 >"$RUN.triggers" &
TRIGGERS=$!
sleep 3
serve
SECOND=$!
wait "$TRIGGERS"
wait "$FIRST" || true
kill -USR1 "$TABS"
wait "$TABS"
{
  echo "{\"close_spread\": $SPREAD, \"triggers\": $(cat "$RUN.triggers"), \"tabs\": $(cat "$RUN.tabs")}"
} | tee -a "$RUN"
rm -f "$RUN.tabs" "$RUN.triggers"
