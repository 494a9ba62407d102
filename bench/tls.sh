#!/usr/bin/env bash
# TLS in the server (wss://, the API over HTTPS) against plain ws://, for
# flarum-ws and sockudo, one server at a time, in alternating rounds: the
# memory of idle subscribed connections, and server CPU per delivery at a
# steady 20 000 deliveries/s. Writes bench/TLS.md (medians) and the raw JSON
# lines to target/bench/. The certificate is a self-signed P-256 one made
# here; the load generator does not verify it (it measures the encryption,
# not the trust chain), and triggers over kept-alive HTTPS connections.
#
#   bash bench/tls.sh                  # both servers, 3 rounds
#   SERVERS=flarum-ws REPEAT=1 bash bench/tls.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SERVERS="${SERVERS:-flarum-ws sockudo}"
REPEAT="${REPEAT:-3}"
CONNECTIONS="${CONNECTIONS:-10000}"
source bench/common.sh
PORT=6202
LOADGEN=target/release/loadgen
RUN="$(run_file tls)"
CERTS="$(mktemp -d)"
trap 'rm -rf "$CERTS"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -keyout "$CERTS/key.pem" -out "$CERTS/cert.pem" -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost 2>/dev/null

build_release loadgen
EXTRA_ENV=()
source bench/server.sh

tls_env() {
  case "$1" in
    flarum-ws) EXTRA_ENV=(FLARUM_WS_TLS_CERT="$CERTS/cert.pem" FLARUM_WS_TLS_KEY="$CERTS/key.pem") ;;
    sockudo) EXTRA_ENV=(SSL_ENABLED=true SSL_CERT_PATH="$CERTS/cert.pem" SSL_KEY_PATH="$CERTS/key.pem") ;;
  esac
}

# name | load generator arguments
SCENARIOS=(
  "idle|--events 0 --settle 5"
  "20k-per-s|--events 400 --deliveries-per-second 20000"
)
for round in $(seq 1 "$REPEAT"); do
  for scenario in "${SCENARIOS[@]}"; do
    name="${scenario%%|*}" args="${scenario#*|}"
    for mode in plain tls; do
      for server in $SERVERS; do
        EXTRA_ENV=()
        flag=""
        if [ "$mode" = tls ]; then
          tls_env "$server"
          flag="--tls"
        fi
        start_server "$server"
        echo "== round $round/$REPEAT: $server $mode $name" >&2
        # shellcheck disable=SC2086
        $LOADGEN --port $PORT --app-id $APP_ID --key $KEY --secret $SECRET --pid "$SERVER_PID" \
          --connections "$CONNECTIONS" --channels 10 $args $flag \
          --label "$server $mode $name" | tee -a "$RUN"
        stop_server
      done
    done
  done
done

python3 - "$RUN" "$CONNECTIONS" >bench/TLS.md <<'PY'
import sys
import report
rows = report.runs(sys.argv[1])
by = report.by_label(rows, lambda row: tuple(row["label"].split(" ")))
def median(key, field):
    value = report.median(r.get(field) for r in by.get(key, []))
    return None if value is None else round(value, 2)
servers = sorted({k[0] for k in by})
rounds = max(len(v) for v in by.values())
print("# TLS in the server\n")
print(f"Command: `bash bench/tls.sh` ({sys.argv[2]} subscribed connections on 10 channels, median of {rounds} "
      "alternating rounds; raw runs in target/bench/). TLS: wss:// and the HTTP API over kept-alive HTTPS, "
      "a self-signed P-256 certificate, TLS 1.3.\n")
print("## Idle connections\n")
print("| server | plain KiB/connection | TLS KiB/connection |")
print("|---|---|---|")
for server in servers:
    print(f"| {server} | {median((server, 'plain', 'idle'), 'kib_per_connection')} | {median((server, 'tls', 'idle'), 'kib_per_connection')} |")
print("\n## A steady 20 000 deliveries/s\n")
print("| server | mode | deliveries/s | server CPU µs/delivery | p99 ms | lost |")
print("|---|---|---|---|---|---|")
for server in servers:
    for mode in ["plain", "tls"]:
        key = (server, mode, "20k-per-s")
        if key not in by:
            continue
        p99 = report.median(r["latency_us"]["p99"] for r in by[key]) / 1000
        print(f"| {server} | {mode} | {median(key, 'deliveries_per_sec'):.0f} | {median(key, 'server_cpu_us_per_delivery')} "
              f"| {p99:.1f} | {sum(r['lost'] for r in by[key])} |")
if len(servers) == 2:
    a, b = servers
    for label, key, field in [("idle TLS memory", "idle", "kib_per_connection"), ("CPU per delivery over TLS", "20k-per-s", "server_cpu_us_per_delivery")]:
        x, y = median((a, "tls", key), field), median((b, "tls", key), field)
        if x and y:
            print(f"\n{label}: {a} {x / y:.2f}× {b}.", end="")
    print()
print(f"\n{report.machine()}; "
      "the load generator runs on the same machine.")
PY
echo "wrote bench/TLS.md" >&2
