#!/usr/bin/env bash
# Runs every hostile flood of `wormhole-relay bench --flood` against a fresh release relay on
# loopback (default settings, so the figures are those of the limits as shipped; a fresh
# relay per flood, so memory one flood left with the allocator does not hide the next one's
# growth) and prints the reports. Usage: scripts/floods.sh [SECONDS_PER_FLOOD] [RELAY_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
relay=${2:-target/release/wormhole-relay}
[ -x "$relay" ] || cargo build --release --bin wormhole-relay
for kind in listeners mailboxes connections allocate oversized slowdrip; do
  log=$(mktemp)
  "$relay" --listen 127.0.0.1:0 >"$log" 2>/dev/null &
  pid=$!
  for _ in $(seq 50); do grep -q listening "$log" && break; sleep 0.1; done
  port=$(sed -n 's|.*ws://127.0.0.1:\([0-9]*\)/v1|\1|p' "$log")
  rm -f "$log"
  # Normal exchanges at an open-loop 100/s from 127.0.0.1 while the flood runs from 127.0.0.2,
  # and the same just before without it.
  timeout $((secs * 4 + 90)) "$relay" bench --url "ws://127.0.0.1:$port/v1" --flood "$kind" \
    --relay-pid "$pid" --pairs 10 --rate 100 --duration "$secs" | grep -v '^normal exchanges: 10 pairs'
  kill -0 "$pid" || { echo "the relay exited during the $kind flood" >&2; exit 1; }
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
echo "the relay survived every flood"
