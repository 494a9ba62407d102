#!/usr/bin/env bash
# Two builds of flarum-ws side by side, before and after a change, in
# alternating rounds: the full-speed and the forum-like fixed-rate (20 000
# deliveries/s) scenarios of compare.sh, 10 000 connections each. Writes
# OUT (default bench/AB.md) through bench/render.py and the raw JSON lines
# to target/bench/.
#
#   OLD=/path/to/old/flarum-ws bash bench/ab.sh bench/WRITE_PATH.md
#   (NEW defaults to target/release/flarum-ws, built here; REPEAT=3)
set -euo pipefail
cd "$(dirname "$0")/.."

OLD="${OLD:?name the build to compare with: OLD=/path/to/flarum-ws}"
NEW="${NEW:-target/release/flarum-ws}"
REPEAT="${REPEAT:-3}"
OUT="${1:-bench/AB.md}"
source bench/common.sh
PORT=6241
LOADGEN=target/release/loadgen
RUN="$(run_file ab)"
build_release loadgen

SCENARIOS=(
  "10k-conn-10-channels-full-speed|--connections 10000 --channels 10 --events 1000"
  "10k-conn-fixed-20k-per-s|--connections 10000 --channels 10 --events 400 --deliveries-per-second 20000"
)
SERVER_PID=
trap '[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true' EXIT
for round in $(seq 1 "$REPEAT"); do
  for scenario in "${SCENARIOS[@]}"; do
    name="${scenario%%|*}"
    args="${scenario#*|}"
    for side in before after; do
      binary="$OLD"; [ "$side" = after ] && binary="$NEW"
      env "${FLARUM_WS_BENCH_ENV[@]}" FLARUM_WS_PORT=$PORT "$binary" serve >/tmp/bench-ab.log 2>&1 &
      SERVER_PID=$!
      for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
      echo "== round $round/$REPEAT: $side $name" >&2
      # shellcheck disable=SC2086
      $LOADGEN --port $PORT --app-id $APP_ID --key $KEY --secret $SECRET --pid "$SERVER_PID" \
        --label "$side $name" $args | tee -a "$RUN"
      kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
      sleep 1
    done
  done
done

python3 bench/render.py "$RUN" "OLD=$OLD bash bench/ab.sh $OUT (before: OLD; after: $NEW)" >"$OUT"
echo "wrote $OUT" >&2
