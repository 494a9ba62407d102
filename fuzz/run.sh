#!/usr/bin/env bash
# Bounded fuzzing of the parsers that see untrusted input: websocket
# messages (client_message), signed HTTP API requests (request_signature)
# and config.php (config_php). Each target runs SECONDS (default 20) from the
# small named seed set in fuzz/seeds/<target> (committed) and what earlier
# runs found in fuzz/work/<target> (ignored by git, where new inputs go); a
# crash stops the run with the input saved in fuzz/artifacts/<target>.
#
#   bash fuzz/run.sh            # every target, 20 s each
#   bash fuzz/run.sh 600 config_php
#
# cargo-fuzz needs nightly-only compiler flags; RUSTC_BOOTSTRAP lets the
# stable toolchain accept them, and without a sanitizer (-s none) no nightly
# runtime is needed. An input worth keeping (a past crash, a new kind of
# message) goes into fuzz/seeds/<target> under a name that says what it is.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_PER_TARGET="${1:-20}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(client_message request_signature config_php)

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
for target in "${TARGETS[@]}"; do
  echo "== fuzzing $target for ${SECONDS_PER_TARGET} s"
  mkdir -p "work/$target"
  if ! cargo fuzz run "$target" "work/$target" "seeds/$target" -s none -- -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 >"$LOG" 2>&1; then
    tail -40 "$LOG" >&2
    echo "fuzzing $target failed (a crash is saved in fuzz/artifacts/$target)" >&2
    exit 1
  fi
  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$LOG"
done
echo "no crash"
