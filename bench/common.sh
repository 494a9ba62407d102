# Sourced by every bench script: the app and the settings every side-by-side
# benchmark gives flarum-ws, and the steps every script starts with. One load generator on one
# address opens thousands of connections and triggers as fast as the server
# accepts, so the per-address connection limit and the HTTP API rate limit
# are lifted (the scripts lift sockudo's likewise); statistics rows are off
# because there is no forum database.
APP_ID=1
KEY=bench-key
SECRET=bench-secret
FLARUM_WS_BENCH_ENV=(
  FLARUM_WS_APP_ID=$APP_ID FLARUM_WS_APP_KEY=$KEY FLARUM_WS_APP_SECRET=$SECRET
  FLARUM_WS_HOST=127.0.0.1 FLARUM_WS_STATISTICS=false
  FLARUM_WS_MAX_PRESENCE_MEMBERS=10000 FLARUM_WS_MAX_CONNECTIONS_PER_IP=100000
  FLARUM_WS_API_REQUESTS_PER_SECOND=1000000
)

# Builds flarum-ws and the named bench tools (bench/tools) in release mode.
build_release() {
  cargo build --release --quiet --locked -p flarum-ws --bin flarum-ws
  local tool
  for tool in "$@"; do
    cargo build --release --quiet --locked -p flarum-ws-bench --bin "$tool"
  done
}

# The file for this run's raw JSON lines: target/bench/NAME-TIMESTAMP.jsonl
# (not kept in git).
run_file() {
  mkdir -p target/bench
  echo "target/bench/$1-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
}

# The reports' Python helpers (bench/report.py) for `python3 - <<'PY'`.
export PYTHONPATH="$PWD/bench${PYTHONPATH:+:$PYTHONPATH}"
