#!/usr/bin/env bash
# Runs every hostile flood of `wormhole-relay bench --flood` against a fresh release relay on
# loopback (default settings, so the figures are those of the limits as shipped) and prints
# the report. Usage: scripts/floods.sh [SECONDS_PER_FLOOD] [RELAY_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
relay=${2:-target/release/wormhole-relay}
[ -x "$relay" ] || cargo build --release --bin wormhole-relay
port=$((47000 + RANDOM % 1000))
"$relay" --listen "127.0.0.1:$port" >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
sleep 1
# Normal exchanges at an open-loop 100/s from 127.0.0.1 while each flood runs from 127.0.0.2.
timeout $((secs * 20 + 120)) "$relay" bench --url "ws://127.0.0.1:$port/v1" --flood all \
  --relay-pid "$pid" --pairs 10 --rate 100 --duration "$secs"
kill -0 "$pid" && echo "relay still running after every flood"
