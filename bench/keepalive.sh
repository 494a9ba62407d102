#!/usr/bin/env bash
# What keeping idle connections alive costs: 10 000 idle subscribed clients
# that answer pings (bench/tools/src/keepalive.rs), with the default
# activity_timeout of 30 s (10 000 tabs' real ping rate), with 6 s (the ping
# rate of 50 000 tabs at 30 s: this machine's 20 000-descriptor limit per
# process keeps one server from holding 50 000), and with 3600 s (no pings:
# the idle baseline). Writes bench/KEEPALIVE.md and the raw JSON lines to
# target/bench/.
#
#   bash bench/keepalive.sh
#   CONNECTIONS=2000 WINDOW=30 bash bench/keepalive.sh   # smaller
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS="${CONNECTIONS:-10000}"
WINDOW="${WINDOW:-60}"
source bench/common.sh
PORT=6231
RUN="$(run_file keepalive)"
build_release keepalive

SERVER_PID=
trap '[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true' EXIT
for activity in 30 6 3600; do
  env "${FLARUM_WS_BENCH_ENV[@]}" FLARUM_WS_PORT=$PORT FLARUM_WS_ACTIVITY_TIMEOUT=$activity \
    FLARUM_WS_MAX_CONNECTIONS=100000 target/release/flarum-ws serve >/tmp/bench-keepalive.log 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
  # Warm up past one activity timeout (at most 35 s), so the window sees
  # pings at their steady rate.
  warmup=$(( activity < 35 ? activity + 5 : 5 ))
  echo "== activity_timeout $activity s" >&2
  target/release/keepalive --port $PORT --app-id $APP_ID --key $KEY --secret $SECRET \
    --pid "$SERVER_PID" --connections "$CONNECTIONS" --warmup "$warmup" --window "$WINDOW" \
    --label "activity_timeout=$activity" | tee -a "$RUN"
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
  sleep 1
done

python3 - "$RUN" "$CONNECTIONS" "$WINDOW" >bench/KEEPALIVE.md <<'PY'
import platform, sys
import report
rows = report.runs(sys.argv[1])
connections, window = sys.argv[2], sys.argv[3]
base = next(r for r in rows if r["label"].endswith("=3600"))
print("# Keepalive: what idle connections cost\n")
print(f"Command: `bash bench/keepalive.sh` ({connections} idle subscribed clients answering pings, "
      f"server CPU from /proc over a {window} s window after a warm-up; raw runs in target/bench/).\n")
print("| activity_timeout | stands for | pings/s | server CPU, % of one core | above the idle baseline | CPU µs per ping (ping and pong) | failed |")
print("|---|---|---|---|---|---|---|")
stands = {"30": f"{int(connections):,} tabs".replace(",", " "),
          "6": f"{int(connections) * 5:,} tabs at 30 s".replace(",", " "),
          "3600": "no pings (baseline)"}
for r in rows:
    activity = r["label"].split("=")[1]
    extra = r["server_core_percent"] - base["server_core_percent"]
    per_ping = (extra / 100 * r["window_s"] * 1e6 / r["pings"]) if r["pings"] else None
    print(f"| {activity} s | {stands[activity]} | {r['pings_per_second']:.0f} | {r['server_core_percent']:.2f} | "
          f"{extra:.2f} | {'—' if per_ping is None else f'{per_ping:.1f}'} | {r['failed']} |")
print(f"\n{report.machine()}, {platform.release()}; "
      "the clients run on the same machine.")
PY
cat bench/KEEPALIVE.md
