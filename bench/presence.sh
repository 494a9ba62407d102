#!/usr/bin/env bash
# Presence join storm, flarum-ws and sockudo side by side in the same run:
# MEMBERS users (default 2000) join one presence channel one after another,
# all reading (bench/tools/src/presence_storm.rs). Rounds alternate the servers.
# Raw lines go to target/bench/presence-<time>.jsonl; bench/PRESENCE.md gets
# the medians.
#
#   bash bench/presence.sh                  # both servers, 3 rounds
#   SERVERS=flarum-ws REPEAT=1 bash bench/presence.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SERVERS="${SERVERS:-flarum-ws sockudo}"
REPEAT="${REPEAT:-3}"
MEMBERS="${MEMBERS:-2000}"
source bench/common.sh
PORT=6203
RAW="$(run_file presence)"

build_release presence_storm
source bench/server.sh

for round in $(seq 1 "$REPEAT"); do
  for server in $SERVERS; do
    start_server "$server"
    sleep 1
    target/release/presence_storm --port $PORT --app-id $APP_ID --key $KEY \
      --secret $SECRET --pid "$SERVER_PID" --members "$MEMBERS" \
      --label "$server" | tee -a "$RAW"
    stop_server
  done
done

python3 - "$RAW" "$MEMBERS" "$REPEAT" <<'PY' >bench/PRESENCE.md
import sys
import report
raw, members, repeat = sys.argv[1], sys.argv[2], sys.argv[3]
runs = report.runs(raw)
servers = sorted({r["label"] for r in runs}, key=lambda s: s != "flarum-ws")
def median(server, key):
    return report.median(r[key] for r in runs if r["label"] == server)
print("# Presence join storm\n")
print(f"{members} users join one presence channel one after another, each")
print("reading (`member_added` for everyone after them), 100 bytes of user_info")
print(f"each. Median of {repeat} rounds, servers alternating, on this machine.\n")
print("Command: `bash bench/presence.sh` (bench/tools/src/presence_storm.rs).\n")
print("| server | seconds | server CPU s | RSS before MB | RSS peak MB | RSS after all left MB | frames received / member_added expected |")
print("|---|---|---|---|---|---|---|")
for s in servers:
    got = sum(r["member_added_received"] for r in runs if r["label"] == s)
    want = sum(r["member_added_expected"] for r in runs if r["label"] == s)
    print(f"| {s} | {median(s,'seconds'):.1f} | {median(s,'server_cpu_seconds'):.2f} | "
          f"{median(s,'rss_before_kib')/1024:.1f} | {median(s,'rss_peak_kib')/1024:.1f} | "
          f"{median(s,'rss_after_leave_kib')/1024:.1f} | {got} / {want} |")
if len(servers) == 2:
    a, b = servers
    print(f"\nCPU ratio {a}/{b}: {median(a,'server_cpu_seconds')/median(b,'server_cpu_seconds'):.2f}; "
          f"memory kept after all left: {a} {(median(a,'rss_after_leave_kib')-median(a,'rss_before_kib'))/1024:+.1f} MB, "
          f"{b} {(median(b,'rss_after_leave_kib')-median(b,'rss_before_kib'))/1024:+.1f} MB.")
PY
cat bench/PRESENCE.md
