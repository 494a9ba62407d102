#!/usr/bin/env bash
# More connections than one process may hold: three flarum-ws nodes on one
# Debian redis-server, 15 000 subscribed connections on each (45 000 in
# all, one load generator process per node, each on its own channels), every
# event triggered through node 1's HTTP API at a steady rate, so node 2 and
# node 3 deliver what came over Redis. Writes bench/CAPACITY.md and the raw
# JSON lines to target/bench/; docs/capacity.md reads from it.
#
#   bash bench/capacity.sh
#   PER_NODE=5000 RATE=5000 bash bench/capacity.sh   # smaller
set -euo pipefail
cd "$(dirname "$0")/.."

PER_NODE="${PER_NODE:-15000}"
# Deliveries per second each load generator asks for (three of them).
RATE="${RATE:-10000}"
EVENTS="${EVENTS:-300}"
source bench/common.sh
PORTS=(6221 6222 6223)
REDIS_PORT=6229
LOADGEN=target/release/loadgen
RUN="$(run_file capacity)"
build_release loadgen

redis-server --port $REDIS_PORT --bind 127.0.0.1 --save '' --appendonly no >/tmp/bench-redis.log 2>&1 &
REDIS_PID=$!
PIDS=()
trap 'kill "${PIDS[@]}" $REDIS_PID 2>/dev/null || true' EXIT
sleep 0.5
for port in "${PORTS[@]}"; do
  env "${FLARUM_WS_BENCH_ENV[@]}" FLARUM_WS_PORT=$port FLARUM_WS_REDIS_URL=redis://127.0.0.1:$REDIS_PORT \
    FLARUM_WS_MAX_CONNECTIONS=100000 target/release/flarum-ws serve >/tmp/bench-capacity-$port.log 2>&1 &
  PIDS+=($!)
done
for port in "${PORTS[@]}"; do
  for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
sleep 2
REDIS_RSS_BEFORE=$(grep VmRSS /proc/$REDIS_PID/status | awk '{print $2}')

# The three load generators run at once; each waits until its own clients
# are subscribed, so the publishing overlaps.
LOADGENS=()
for i in 0 1 2; do
  $LOADGEN --port "${PORTS[$i]}" --publish-port "${PORTS[0]}" --app-id $APP_ID --key $KEY --secret $SECRET \
    --pid "${PIDS[$i]}" --connections "$PER_NODE" --channels 10 --channel-prefix "node$((i + 1))-" \
    --events "$EVENTS" --deliveries-per-second "$RATE" --settle 5 \
    --label "node $((i + 1))" >"target/bench/capacity-node$((i + 1)).json" 2>"/tmp/bench-capacity-loadgen$i.log" &
  LOADGENS+=($!)
done
for pid in "${LOADGENS[@]}"; do wait "$pid"; done
cat target/bench/capacity-node{1,2,3}.json >>"$RUN"
REDIS_CPU=$(awk '{print ($14 + $15) / 100}' /proc/$REDIS_PID/stat)

python3 - "$RUN" "$PER_NODE" "$RATE" "$REDIS_CPU" "$REDIS_RSS_BEFORE" >bench/CAPACITY.md <<'PY'
import os, sys
import report
rows = report.runs(sys.argv[1])
per_node, rate, redis_cpu, redis_rss = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
print("# Three nodes, 45 000 connections\n")
print(f"Command: `bash bench/capacity.sh` ({per_node} subscribed connections per node on 10 channels of its own, "
      f"three flarum-ws nodes and Debian's redis-server on one machine with {os.cpu_count()} cores; one load generator "
      f"process per node asking for {rate} deliveries/s, every event triggered through node 1's HTTP API, "
      "so nodes 2 and 3 deliver events that came over Redis).\n")
print("| node | subscribed | delivered / expected | lost | deliveries/s | p50 ms | p99 ms | server CPU µs/delivery | KiB/connection | RSS subscribed MiB |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    lat = r["latency_us"]
    cpu = r.get("server_cpu_us_per_delivery")
    print(f"| {r['label']} | {r['subscribed']} | {r['delivered']} / {r['expected_deliveries']} | {r['lost']} "
          f"| {r['deliveries_per_sec']:.0f} | {lat['p50'] / 1000:.1f} | {lat['p99'] / 1000:.1f} "
          f"| {f'{cpu:.1f}' if cpu is not None else '–'} | {r['kib_per_connection']} | {r['rss_subscribed_kib'] / 1024:.0f} |")
total = sum(r["subscribed"] for r in rows)
print(f"\n{total} connections in all; Redis used {redis_cpu} CPU-seconds over the run "
      f"(it started at {int(redis_rss) // 1024} MiB). Node 1's CPU includes answering every trigger.")
print(f"\nMachine: {report.cpu_model()}; nodes, Redis and load generators share it.")
PY
echo "wrote bench/CAPACITY.md" >&2
