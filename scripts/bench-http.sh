#!/usr/bin/env bash
# HTTP polling against WebSocket on our relay, side by side in one run, on loopback (release
# build, the load generator on the same machine): exchanges/s, message delivery latency, the
# HTTP requests an idle client makes per minute as the relay counts them, and relay memory per
# idle WebSocket connection / HTTP session. Prints Markdown tables.
#   scripts/bench-http.sh [DURATION_SECS] [IDLE_COUNT] [IDLE_CLIENT_SECS]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
IDLE=${2:-10000}
IDLE_CLIENT=${3:-60}
cargo build --release --bin wormhole-relay >/dev/null 2>&1
BIN=target/release/wormhole-relay
RELAY=""
cleanup() { [ -n "$RELAY" ] && kill "$RELAY" 2>/dev/null || true; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" || true
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
start_relay() {
  cleanup
  PORT=$(free_port)
  RUST_LOG=warn $BIN --listen "127.0.0.1:$PORT" >/dev/null 2>&1 & RELAY=$!
  wait_port "$PORT"; sleep 0.5
}
field() { python3 -c 'import json,sys; v=json.loads(sys.argv[1])[sys.argv[2]]; print(f"{v:.{sys.argv[3]}f}" if isinstance(v,float) else v)' "$@"; }

start_relay
echo "| transport | pairs | exchanges/s | p50 ms | p99 ms | failed |"
echo "|---|---|---|---|---|---|"
for pairs in 1 10 100; do
  for t in ws http; do
    out=$($BIN bench --url "$t://127.0.0.1:$PORT/v1" --pairs "$pairs" --duration "$DURATION" --json)
    echo "| $t | $pairs | $(field "$out" exchanges_per_s 0) | $(field "$out" p50_ms 2) | $(field "$out" p99_ms 2) | $(field "$out" failed 0) |"
    sleep 1
  done
done
echo
echo "| transport | messages | delivery p50 ms | p90 ms | p99 ms |"
echo "|---|---|---|---|---|"
for t in ws http; do
  out=$($BIN bench --url "$t://127.0.0.1:$PORT/v1" --latency 2000 --json)
  echo "| $t | $(field "$out" messages 0) | $(field "$out" p50_ms 3) | $(field "$out" p90_ms 3) | $(field "$out" p99_ms 3) |"
done
echo
echo "| idle client, schedule | seconds | HTTP requests | per minute |"
echo "|---|---|---|---|"
for s in face-to-face long-lived; do
  out=$($BIN bench --url "http://127.0.0.1:$PORT/v1" --idle-client "$IDLE_CLIENT" --schedule "$s" --json)
  echo "| $s | $(field "$out" seconds 0) | $(field "$out" requests 0) | $(field "$out" requests_per_minute 2) |"
done
echo
echo "| idle clients | count | answering at the end | relay KiB each |"
echo "|---|---|---|---|"
for mode in "ws" "http" "http --long-poll"; do
  set -- $mode
  start_relay
  out=$($BIN bench --url "$1://127.0.0.1:$PORT/v1" --idle "$IDLE" --duration 5 --relay-pid "$RELAY" --json ${2:-})
  sleep 2 # let the clients' sockets go before the next relay binds
  echo "| $mode | $(field "$out" connected 0) | $(field "$out" answering 0) | $(field "$out" relay_kib_per_connection 2) |"
done
