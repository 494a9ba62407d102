#!/usr/bin/env bash
# Side-by-side benchmark of flarum-ws and sockudo on loopback, one server at
# a time, with the same load generator (examples/loadgen.rs) and the same
# scenarios, in rounds. Writes bench/RESULTS.md (medians of the rounds,
# ratios, machine, commands); the raw JSON lines go to target/bench/ (kept
# out of git: every run would change the tree).
#
#   bash bench/compare.sh            # both servers (installs sockudo if missing)
#   SERVERS=flarum-ws bash bench/compare.sh   # flarum-ws only
#   REPEAT=1 bash bench/compare.sh             # one round instead of three
set -euo pipefail
cd "$(dirname "$0")/.."

SERVERS="${SERVERS:-flarum-ws sockudo}"
REPEAT="${REPEAT:-3}"
source bench/flarum-ws-settings.sh
PORT=6201
LOADGEN=target/release/examples/loadgen
mkdir -p target/bench
RAW=target/bench/results.jsonl
RUN="target/bench/run-$(date -u +%Y%m%dT%H%M%SZ).jsonl"

cargo build --release --bin flarum-ws --example loadgen

if [[ " $SERVERS " == *" sockudo "* ]] && ! command -v sockudo >/dev/null; then
  command -v protoc >/dev/null || apt-get install -y -qq protobuf-compiler
  cargo install --locked sockudo
fi

start_server() {
  if (echo >/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then
    echo "port $PORT is already in use; stop whatever listens there first" >&2
    exit 1
  fi
  case "$1" in
    flarum-ws)
      env "${FLARUM_WS_BENCH_ENV[@]}" FLARUM_WS_PORT=$PORT \
        target/release/flarum-ws serve >/tmp/bench-server.log 2>&1 &
      ;;
    sockudo)
      PORT=$PORT HOST=127.0.0.1 ADAPTER_DRIVER=local RATE_LIMITER_ENABLED=false \
        SOCKUDO_DEFAULT_APP_ID=$APP_ID SOCKUDO_DEFAULT_APP_KEY=$KEY SOCKUDO_DEFAULT_APP_SECRET=$SECRET \
        SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND=100000000 \
        SOCKUDO_DEFAULT_APP_MAX_PRESENCE_MEMBERS_PER_CHANNEL=10000 \
        SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS=100000 \
        sockudo >/tmp/bench-server.log 2>&1 &
      ;;
  esac
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    if (echo >/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && kill -0 "$SERVER_PID" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "$1 did not start:" >&2
  cat /tmp/bench-server.log >&2
  exit 1
}

stop_server() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  sleep 1
}

# name | loadgen arguments
SCENARIOS=(
  "10k-conn-10-channels-full-speed|--connections 10000 --channels 10 --events 1000"
  "10k-conn-fixed-20k-per-s|--connections 10000 --channels 10 --events 400 --deliveries-per-second 20000"
  "1k-conn-1-channel-10KB|--connections 1000 --channels 1 --events 200 --payload 10240"
  "15k-idle-subscribed|--connections 15000 --channels 10 --events 0 --settle 5"
)

# Each round runs every scenario on each server in turn, so a machine that
# slows down or speeds up during the run affects both alike; RESULTS.md shows
# the median of the rounds.
for round in $(seq 1 "$REPEAT"); do
  for scenario in "${SCENARIOS[@]}"; do
    name="${scenario%%|*}"
    args="${scenario#*|}"
    for server in $SERVERS; do
      start_server "$server"
      echo "== round $round/$REPEAT: $server $name" >&2
      # shellcheck disable=SC2086
      $LOADGEN --port $PORT --app-id $APP_ID --key $KEY --secret $SECRET --pid "$SERVER_PID" \
        --label "$server $name" $args | tee -a "$RUN" >>"$RAW"
      stop_server
    done
  done
done

python3 bench/render.py "$RUN" >bench/RESULTS.md
echo "wrote bench/RESULTS.md" >&2
