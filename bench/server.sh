# Sourced by compare.sh and presence.sh: starting and stopping the server
# under test on $PORT, one at a time, with the settings of
# bench/common.sh (source that first). `start_server NAME` sets
# SERVER_PID and returns once the port answers; the server's log is
# /tmp/bench-server.log. SOCKUDO names sockudo's binary (default: on PATH).
# EXTRA_ENV (an array, may be empty) adds variables to the server's
# environment, e.g. its TLS settings.

SOCKUDO="${SOCKUDO:-$(command -v sockudo || echo sockudo)}"
EXTRA_ENV=("${EXTRA_ENV[@]}")

start_server() {
  if (echo >/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then
    echo "port $PORT is already in use; stop whatever listens there first" >&2
    exit 1
  fi
  case "$1" in
    flarum-ws)
      env "${FLARUM_WS_BENCH_ENV[@]}" "${EXTRA_ENV[@]}" FLARUM_WS_PORT=$PORT \
        target/release/flarum-ws serve >/tmp/bench-server.log 2>&1 &
      ;;
    sockudo)
      env "${EXTRA_ENV[@]}" PORT=$PORT HOST=127.0.0.1 ADAPTER_DRIVER=local RATE_LIMITER_ENABLED=false \
        SOCKUDO_DEFAULT_APP_ID=$APP_ID SOCKUDO_DEFAULT_APP_KEY=$KEY SOCKUDO_DEFAULT_APP_SECRET=$SECRET \
        SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND=100000000 \
        SOCKUDO_DEFAULT_APP_MAX_PRESENCE_MEMBERS_PER_CHANNEL=10000 \
        SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS=100000 \
        "$SOCKUDO" >/tmp/bench-server.log 2>&1 &
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
