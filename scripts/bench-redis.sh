#!/usr/bin/env bash
# Figures of relay processes on Redis, side by side in one run (release build):
#   exchanges/s and latency of one process in memory, one on Redis, two and three on one
#   Redis (each exchange's two sides on different processes), and Redis memory per open
#   mailbox. Starts its own redis-server on a free loopback port with its own directory.
# Usage: scripts/bench-redis.sh [SECONDS] [PAIRS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
pairs=${2:-20}
command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 1; }
cargo build -q --release --bin wormhole-relay --example redis_mailbox_memory --features redis
relay=target/release/wormhole-relay
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" >"$dir/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
store="redis://127.0.0.1:$port/0"

start_relay() { # STORE -> sets $url (not in a subshell, so that its pid is kept and stopped)
  local log="$dir/relay-$RANDOM.log"
  "$relay" --listen 127.0.0.1:0 --store "$1" >"$log" 2>&1 &
  pids+=($!)
  url=
  for _ in $(seq 100); do
    url=$(sed -n 's/^wormhole-relay listening on //p' "$log" 2>/dev/null || true)
    [ -n "$url" ] && return
    sleep 0.1
  done
  echo "relay did not start: $(cat "$log")" >&2; exit 1
}
stop_relays() { # keep redis-server (the first pid)
  for p in "${pids[@]:1}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=("${pids[0]}")
}
bench() { "$relay" bench --pairs "$pairs" --duration "$secs" "$@"; }

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); redis $(redis-server --version | grep -o 'v=[0-9.]*')"
echo "== one process, memory store"
start_relay memory; bench --url "$url"; stop_relays
echo "== one process, Redis store"
start_relay "$store"; bench --url "$url"; stop_relays
echo "== two processes, one Redis (each exchange spans both)"
start_relay "$store"; u1=$url; start_relay "$store"; u2=$url
bench --url "$u1" --also-url "$u2"; stop_relays
echo "== three processes, one Redis (each exchange spans two)"
start_relay "$store"; u1=$url; start_relay "$store"; u2=$url; start_relay "$store"; u3=$url
bench --url "$u1" --also-url "$u2" --also-url "$u3"; stop_relays
echo "== latency added by Redis: one pair at a time (no queueing), memory then Redis"
start_relay memory; "$relay" bench --pairs 1 --duration "$secs" --url "$url"; stop_relays
start_relay "$store"; "$relay" bench --pairs 1 --duration "$secs" --url "$url"; stop_relays
echo "== Redis memory per open mailbox"
redis-cli -p "$port" FLUSHALL >/dev/null
target/release/examples/redis_mailbox_memory "$store" 10000
