#!/usr/bin/env bash
# Reconnect storm, flarum-ws and sockudo side by side in alternating rounds:
# 15 000 forum tabs come back at once, each subscribing with auth to its
# private channel and to one of 100 presence channels
# (bench/tools/src/reconnect_storm.rs). Writes bench/RECONNECT.md (medians)
# and the raw JSON lines to target/bench/.
#
#   bash bench/reconnect.sh                     # both servers, 3 rounds
#   SERVERS=flarum-ws REPEAT=1 bash bench/reconnect.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SERVERS="${SERVERS:-flarum-ws sockudo}"
REPEAT="${REPEAT:-3}"
TABS="${TABS:-15000}"
source bench/common.sh
PORT=6205
STORM=target/release/reconnect_storm
RUN="$(run_file reconnect)"

build_release reconnect_storm
EXTRA_ENV=()
source bench/server.sh
if [[ " $SERVERS " == *" sockudo "* ]] && ! command -v "$SOCKUDO" >/dev/null; then
  echo "sockudo is not installed (cargo install --locked sockudo): running flarum-ws only" >&2
  SERVERS=flarum-ws
fi

for round in $(seq 1 "$REPEAT"); do
  for server in $SERVERS; do
    start_server "$server"
    sleep 1
    echo "== round $round/$REPEAT: $server" >&2
    $STORM --port $PORT --app-id $APP_ID --key $KEY --secret $SECRET --pid "$SERVER_PID" \
      --tabs "$TABS" --label "$server" | tee -a "$RUN"
    stop_server
  done
done

python3 - "$RUN" >bench/RECONNECT.md <<'PY'
import sys
import report
rows = report.runs(sys.argv[1])
by = report.by_label(rows)
def median(label, key):
    return report.median(r.get(key) for r in by[label])
first = rows[0]
print("# Reconnect storm\n")
print(f"Command: `bash bench/reconnect.sh` ({first['tabs']} tabs at once, each subscribing with auth "
      f"to its private channel and to one of {first['presence_channels']} presence channels; "
      f"median of {max(len(v) for v in by.values())} alternating rounds; raw runs in target/bench/).\n")
print("| server | all subscribed after s | reconnects/s | server CPU µs/reconnect | reconnects per CPU-second | failed | RSS before → peak → after (MiB) |")
print("|---|---|---|---|---|---|---|")
for label in by:
    mib = lambda key: f"{median(label, key) / 1024:.0f}"
    print(f"| {label} | {median(label, 'seconds'):.1f} | {median(label, 'reconnects_per_sec'):.0f} "
          f"| {median(label, 'server_cpu_us_per_reconnect'):.0f} | {median(label, 'reconnects_per_cpu_second'):.0f} "
          f"| {sum(r['failed'] for r in by[label])} | {mib('rss_before_kib')} → {mib('rss_peak_kib')} → {mib('rss_after_kib')} |")
if len(by) == 2 and "flarum-ws" in by and "sockudo" in by:
    ratio = median("flarum-ws", "reconnects_per_cpu_second") / median("sockudo", "reconnects_per_cpu_second")
    print(f"\nflarum-ws: {ratio:.2f}× sockudo's reconnects per server CPU-second.")
print(f"\n{report.machine()}; "
      "the storm and the server on the same machine.")
PY
echo "wrote bench/RECONNECT.md" >&2
