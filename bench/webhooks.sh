#!/usr/bin/env bash
# flarum-ws at full speed with and without a webhook receiver, in
# alternating rounds: the load generator's full-speed scenario (10 000
# connections on 10 channels, 1 000 events), once plain and once with
# FLARUM_WS_WEBHOOK_URL naming a receiver on loopback (Python's http.server,
# answering 204 to every POST). Writes bench/WEBHOOKS.md (medians) and the
# raw JSON lines to target/bench/.
#
#   bash bench/webhooks.sh              # 3 rounds
#   REPEAT=1 bash bench/webhooks.sh
set -euo pipefail
cd "$(dirname "$0")/.."

REPEAT="${REPEAT:-3}"
source bench/common.sh
PORT=6203
RECEIVER_PORT=6204
LOADGEN=target/release/loadgen
RUN="$(run_file webhooks)"

build_release loadgen

python3 - "$RECEIVER_PORT" <<'PY' &
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
PY
RECEIVER_PID=$!
trap 'kill $RECEIVER_PID 2>/dev/null || true' EXIT

EXTRA_ENV=()
source bench/server.sh

for round in $(seq 1 "$REPEAT"); do
  for mode in ${MODES:-without with}; do
    EXTRA_ENV=()
    if [ "$mode" = with ]; then
      EXTRA_ENV=(FLARUM_WS_WEBHOOK_URL="http://127.0.0.1:$RECEIVER_PORT/hook")
    fi
    start_server flarum-ws
    echo "== round $round/$REPEAT: $mode webhooks" >&2
    $LOADGEN --port $PORT --app-id $APP_ID --key $KEY --secret $SECRET --pid "$SERVER_PID" \
      --connections 10000 --channels 10 --events 1000 \
      --label "$mode webhooks" | tee -a "$RUN"
    if [ "$mode" = with ]; then
      grep -c "Webhook to" /tmp/bench-server.log >/dev/null && grep "Webhook to" /tmp/bench-server.log | head -3 >&2 || true
    fi
    stop_server
  done
done

python3 - "$RUN" >bench/WEBHOOKS.md <<'PY'
import sys
import report
rows = report.runs(sys.argv[1])
by = report.by_label(rows)
def median(label, key):
    return report.median(r.get(key) for r in by[label])
print("# Full speed with and without webhooks\n")
print("Command: `bash bench/webhooks.sh` (10 000 connections on 10 channels, 1 000 events "
      f"at full speed; median of {len(by['without webhooks'])} alternating rounds; raw runs in target/bench/). "
      "With webhooks, a receiver on loopback gets `channel_occupied`, `subscription_count` and, "
      "as the load generator disconnects, `channel_vacated`.\n")
print("| run | deliveries/s | server CPU µs/delivery | p99 latency µs | lost |")
print("|---|---|---|---|---|")
for label in ["without webhooks", "with webhooks"]:
    print(f"| {label} | {median(label, 'deliveries_per_sec'):.0f} | {median(label, 'server_cpu_us_per_delivery')} "
          f"| {report.median(r['latency_us']['p99'] for r in by[label]):.0f} "
          f"| {sum(r['lost'] for r in by[label])} |")
ratio = median("with webhooks", "deliveries_per_sec") / median("without webhooks", "deliveries_per_sec")
print(f"\nWith webhooks: {ratio:.3f}× the deliveries/s without.")
print(f"\n{report.machine()}; "
      "load generator, server and receiver on the same machine.")
PY
echo "wrote bench/WEBHOOKS.md" >&2
