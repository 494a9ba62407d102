#!/usr/bin/env bash
# Side-by-side benchmark of flarum-ws and sockudo on loopback, one server at
# a time, with the same load generator (bench/tools/src/loadgen.rs) and the same
# scenarios, in rounds. Writes bench/RESULTS.md (medians of the rounds,
# ratios, machine, commands); the raw JSON lines go to target/bench/ (kept
# out of git: every run would change the tree).
#
#   bash bench/compare.sh            # both servers (installs sockudo if missing)
#   SERVERS=flarum-ws bash bench/compare.sh   # flarum-ws only
#   REPEAT=1 bash bench/compare.sh             # one round instead of three
set -euo pipefail
cd "$(dirname "$0")/.."

SERVERS="${SERVERS:-flarum-ws sockudo}"
REPEAT="${REPEAT:-3}"
source bench/common.sh
PORT=6201
LOADGEN=target/release/loadgen
RAW=target/bench/results.jsonl
RUN="$(run_file run)"

build_release loadgen

if [[ " $SERVERS " == *" sockudo "* ]] && ! command -v sockudo >/dev/null; then
  command -v protoc >/dev/null || apt-get install -y -qq protobuf-compiler
  cargo install --locked sockudo
fi

source bench/server.sh

# name | loadgen arguments
SCENARIOS=(
  "10k-conn-10-channels-full-speed|--connections 10000 --channels 10 --events 1000"
  "10k-conn-fixed-20k-per-s|--connections 10000 --channels 10 --events 400 --deliveries-per-second 20000"
  "1k-conn-1-channel-10KB|--connections 1000 --channels 1 --events 200 --payload 10240"
  "15k-idle-subscribed|--connections 15000 --channels 10 --events 0 --settle 5"
)

# Each round runs every scenario on each server in turn, so a machine that
# slows down or speeds up during the run affects both alike; RESULTS.md shows
# the median of the rounds.
for round in $(seq 1 "$REPEAT"); do
  for scenario in "${SCENARIOS[@]}"; do
    name="${scenario%%|*}"
    args="${scenario#*|}"
    for server in $SERVERS; do
      start_server "$server"
      echo "== round $round/$REPEAT: $server $name" >&2
      # shellcheck disable=SC2086
      $LOADGEN --port $PORT --app-id $APP_ID --key $KEY --secret $SECRET --pid "$SERVER_PID" \
        --label "$server $name" $args | tee -a "$RUN" >>"$RAW"
      stop_server
    done
  done
done

python3 bench/render.py "$RUN" >bench/RESULTS.md
echo "wrote bench/RESULTS.md" >&2
