#!/usr/bin/env bash
# Every benchmark of the situations forums meet, one after the other, each
# running flarum-ws and sockudo in alternating rounds where sockudo applies:
# the load scenarios (full speed, the moderate 20 000 deliveries/s, large
# events, idle memory: bench/RESULTS.md), TLS in the server
# (bench/TLS.md), a reconnect storm (bench/RECONNECT.md) and three nodes
# holding 45 000 connections (bench/CAPACITY.md, flarum-ws only: sockudo's
# Redis adapter needs a build with its `redis` feature).
#
#   SOCKUDO=/path/to/sockudo bash bench/forum.sh
#   REPEAT=1 bash bench/forum.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export REPEAT="${REPEAT:-3}"
bash bench/compare.sh
bash bench/tls.sh
bash bench/reconnect.sh
bash bench/capacity.sh
