#!/usr/bin/env bash
# Memory of idle subscribed connections with TLS in the server (wss://)
# against plain ws://, for flarum-ws and sockudo, one server at a time, in
# alternating rounds; writes bench/TLS.md (medians) and the raw JSON lines
# to target/bench/. The certificate is a self-signed P-256 one made here;
# the load generator does not verify it (it measures the encryption, not the
# trust chain). CPU per delivery over TLS is not measured here: the load
# generator triggers over plain HTTP, which a TLS port does not answer.
#
#   bash bench/tls.sh                  # both servers, 3 rounds
#   SERVERS=flarum-ws REPEAT=1 bash bench/tls.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SERVERS="${SERVERS:-flarum-ws sockudo}"
REPEAT="${REPEAT:-3}"
CONNECTIONS="${CONNECTIONS:-10000}"
source bench/flarum-ws-settings.sh
PORT=6202
LOADGEN=target/release/loadgen
mkdir -p target/bench
RUN="target/bench/tls-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
CERTS="$(mktemp -d)"
trap 'rm -rf "$CERTS"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -keyout "$CERTS/key.pem" -out "$CERTS/cert.pem" -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost 2>/dev/null

cargo build --release --locked -p flarum-ws --bin flarum-ws
cargo build --release --locked -p flarum-ws-bench --bin loadgen
EXTRA_ENV=()
source bench/server.sh

tls_env() {
  case "$1" in
    flarum-ws) EXTRA_ENV=(FLARUM_WS_TLS_CERT="$CERTS/cert.pem" FLARUM_WS_TLS_KEY="$CERTS/key.pem") ;;
    sockudo) EXTRA_ENV=(SSL_ENABLED=true SSL_CERT_PATH="$CERTS/cert.pem" SSL_KEY_PATH="$CERTS/key.pem") ;;
  esac
}

for round in $(seq 1 "$REPEAT"); do
  for mode in plain tls; do
    for server in $SERVERS; do
      EXTRA_ENV=()
      flag=""
      if [ "$mode" = tls ]; then
        tls_env "$server"
        flag="--tls"
      fi
      start_server "$server"
      echo "== round $round/$REPEAT: $server $mode" >&2
      # shellcheck disable=SC2086
      $LOADGEN --port $PORT --app-id $APP_ID --key $KEY --secret $SECRET --pid "$SERVER_PID" \
        --connections "$CONNECTIONS" --channels 10 --events 0 --settle 5 $flag \
        --label "$server $mode" | tee -a "$RUN"
      stop_server
    done
  done
done

python3 - "$RUN" "$CONNECTIONS" >bench/TLS.md <<'PY'
import json, statistics, subprocess, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
by = {}
for row in rows:
    by.setdefault(row["label"], []).append(row)
def median(label, key):
    values = [r[key] for r in by.get(label, []) if r.get(key) is not None]
    return round(statistics.median(values), 2) if values else None
print("# Idle connections with TLS in the server\n")
print(f"Command: `bash bench/tls.sh` ({sys.argv[2]} subscribed idle connections, 10 channels, "
      f"median of {max(len(v) for v in by.values())} rounds; raw runs in target/bench/).\n")
print("| server | mode | KiB per connection | subscribed |")
print("|---|---|---|---|")
for label in sorted(by):
    server, mode = label.rsplit(" ", 1)
    print(f"| {server} | {mode} | {median(label, 'kib_per_connection')} | {int(median(label, 'subscribed'))} |")
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
print(f"\nMachine: {cpu}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores; "
      "the load generator runs on the same machine.")
PY
echo "wrote bench/TLS.md" >&2
