#!/usr/bin/env bash
# Cross-node benchmark: two nodes of the same server on one Debian
# redis-server, clients subscribed on node B, events triggered through node
# A; compared with one node (clients and triggers on the same node, no
# Redis). Runs flarum-ws and, when installed, sockudo with its Redis
# adapter. Writes bench/CLUSTER.md and appends raw JSON lines to
# target/bench/results.jsonl (raw lines stay out of git).
#
#   bash bench/cluster.sh
#   SERVERS=flarum-ws bash bench/cluster.sh
#   FLARUM_WS=/path/to/older/flarum-ws COMMIT=abc1234 OUT=/tmp/old.md SERVERS=flarum-ws bash bench/cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SERVERS="${SERVERS:-flarum-ws sockudo}"
# sockudo needs its `redis` cargo feature for the cross-node runs:
#   cargo install --locked sockudo --features redis --root /opt/sockudo-redis
#   SOCKUDO=/opt/sockudo-redis/bin/sockudo bash bench/cluster.sh
SOCKUDO="${SOCKUDO:-sockudo}"
# Another flarum-ws build (an A/B against an older commit), and where the
# report goes.
FLARUM_WS="${FLARUM_WS:-target/release/flarum-ws}"
COMMIT="${COMMIT:-$(git rev-parse --short HEAD)}"
OUT="${OUT:-bench/CLUSTER.md}"
source bench/common.sh
PORT_A=6211 PORT_B=6212 REDIS_PORT=6219
LOADGEN=target/release/loadgen
RUN="$(run_file cluster)"
build_release loadgen
command -v "$SOCKUDO" >/dev/null || SERVERS="${SERVERS/sockudo/}"
SKIPPED="$(mktemp)"

redis-server --port $REDIS_PORT --bind 127.0.0.1 --save '' --appendonly no >/tmp/bench-redis.log 2>&1 &
REDIS_PID=$!
sleep 0.5

PIDS=()
start_node() { # server port redis(yes/no)
  local redis_url=""
  [ "$3" = yes ] && redis_url="redis://127.0.0.1:$REDIS_PORT"
  case "$1" in
    flarum-ws)
      env "${FLARUM_WS_BENCH_ENV[@]}" FLARUM_WS_PORT=$2 FLARUM_WS_REDIS_URL=$redis_url \
        "$FLARUM_WS" serve >>/tmp/bench-cluster-$2.log 2>&1 &
      ;;
    sockudo)
      local driver=local
      [ "$3" = yes ] && driver=redis
      local cache=memory
      [ "$3" = yes ] && cache=redis
      PORT=$2 HOST=127.0.0.1 ADAPTER_DRIVER=$driver CACHE_DRIVER=$cache REDIS_URL=$redis_url RATE_LIMITER_ENABLED=false \
        METRICS_ENABLED=false \
        SOCKUDO_DEFAULT_APP_ID=$APP_ID SOCKUDO_DEFAULT_APP_KEY=$KEY SOCKUDO_DEFAULT_APP_SECRET=$SECRET \
        SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND=100000000 \
        SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS=100000 \
        "$SOCKUDO" >>/tmp/bench-cluster-$2.log 2>&1 &
      ;;
  esac
  PIDS+=($!)
  for _ in $(seq 1 100); do
    (echo >/dev/tcp/127.0.0.1/"$2") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$1 did not start on $2:" >&2
  tail -3 /tmp/bench-cluster-"$2".log >&2
  return 1
}
stop_nodes() {
  for pid in "${PIDS[@]+"${PIDS[@]}"}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  PIDS=()
  sleep 1
}

trap 'stop_nodes; kill $REDIS_PID 2>/dev/null || true' EXIT

SCENARIOS=(
  "5k-conn-10-channels-full-speed|--connections 5000 --channels 10 --events 500"
  "5k-conn-fixed-10k-per-s|--connections 5000 --channels 10 --events 200 --deliveries-per-second 10000"
)
for server in $SERVERS; do
  for scenario in "${SCENARIOS[@]}"; do
    name="${scenario%%|*}" args="${scenario#*|}"
    start_node "$server" $PORT_A no || exit 1
    echo "== $server single node $name" >&2
    # shellcheck disable=SC2086
    $LOADGEN --port $PORT_A --app-id $APP_ID --key $KEY --secret $SECRET --pid "${PIDS[0]}" \
      --label "$server single-node $name" $args | tee -a "$RUN" >>target/bench/results.jsonl
    stop_nodes
    if ! { start_node "$server" $PORT_A yes && start_node "$server" $PORT_B yes; }; then
      echo "$server cross-node $name: did not start with Redis: $(grep -o 'Error: .*' /tmp/bench-cluster-$PORT_A.log | tail -1)" >>"$SKIPPED"
      stop_nodes
      continue
    fi
    sleep 2
    echo "== $server two nodes $name" >&2
    # shellcheck disable=SC2086
    $LOADGEN --port $PORT_B --publish-port $PORT_A --app-id $APP_ID --key $KEY --secret $SECRET --pid "${PIDS[1]}" \
      --label "$server cross-node $name" $args | tee -a "$RUN" >>target/bench/results.jsonl
    stop_nodes
  done
done

python3 - "$RUN" "$SKIPPED" "$("$SOCKUDO" --version 2>/dev/null | head -1) ($SOCKUDO)" "commit $COMMIT" >"$OUT" <<'PY'
import os, subprocess, sys
import report
rows = report.runs(sys.argv[1])
skipped = [line.strip() for line in open(sys.argv[2]) if line.strip()]
mem = subprocess.run(["free", "-g"], capture_output=True, text=True).stdout.split("\n")[1].split()[1]
print("# Cross-node benchmark\n")
print(f"Command: `bash bench/cluster.sh` on {os.cpu_count()} cores, {mem} GiB, everything on loopback")
print("(two nodes and Debian's redis-server on the same machine as the load generator).")
print("Clients subscribe on node B; events are triggered through node A's HTTP API.")
print("Single node: clients and triggers on one node, no Redis. CPU is node B's (the receiving node).")
print(f"flarum-ws: {sys.argv[4]}, release build. The load generator shares the two cores with")
print("both nodes and Redis, so full-speed rows are partly its limit; compare rows of one run only")
print("(runs on different days have differed by up to 2x, for both servers alike).\n")
print("| run | deliveries/s | p50 ms | p99 ms | max ms | lost | CPU µs/delivery (node B) |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    lat = r.get("latency_us") or {}
    ms = lambda key: f"{lat[key] / 1000:.1f}" if key in lat else "–"
    cpu = r.get("server_cpu_us_per_delivery")
    cpu = f"{cpu:.2f}" if isinstance(cpu, (int, float)) else "–"
    print(f"| {r['label']} | {r['deliveries_per_sec']:,.0f} | {ms('p50')} | {ms('p99')} | {ms('max')} | {r['lost']} | {cpu} |")
if skipped:
    print("\nNot run:\n")
    for line in skipped:
        print(f"- {line}")
if sys.argv[3].strip() != "()":
    print(f"\nsockudo: {sys.argv[3]}, built with `cargo install sockudo --features redis` (ADAPTER_DRIVER and CACHE_DRIVER redis for the cross-node runs).")
PY
echo "wrote $OUT" >&2
