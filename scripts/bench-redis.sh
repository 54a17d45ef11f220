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
# CPU used while a bench runs, in cores: redis-server, the relay processes, the whole machine
# (what limits the scaling on a small machine).
hz=$(getconf CLK_TCK)
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo "$t"; }
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
bench() {
  local r0 l0 b0 t0 r1 l1 b1 t1
  r0=$(ticks "${pids[0]}"); l0=$(ticks "${pids[@]:1}"); b0=$(busy); t0=$(date +%s.%N)
  "$relay" bench --pairs "$pairs" --duration "$secs" "$@"
  r1=$(ticks "${pids[0]}"); l1=$(ticks "${pids[@]:1}"); b1=$(busy); t1=$(date +%s.%N)
  awk -v r=$((r1 - r0)) -v l=$((l1 - l0)) -v b=$((b1 - b0)) -v t0="$t0" -v t1="$t1" -v hz="$hz" \
    'BEGIN { s = t1 - t0; printf "cores busy: redis-server %.2f, relay processes %.2f, whole machine %.2f (of %d)\n", r/hz/s, l/hz/s, b/hz/s, '"$(nproc)"' }'
}

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
echo "== one Redis round trip on this machine (redis-benchmark: GET, one connection, no pipelining)"
if command -v redis-benchmark >/dev/null; then
  redis-benchmark -p "$port" -c 1 -n 20000 -t get --csv | tail -1
else
  echo "redis-benchmark is not installed"
fi
echo "== Redis memory per open mailbox"
redis-cli -p "$port" FLUSHALL >/dev/null
target/release/examples/redis_mailbox_memory "$store" 10000
for fsync in everysec always; do
  echo "== one process, Redis with appendonly yes, appendfsync $fsync (this machine's disk)"
  redis-cli -p "$port" FLUSHALL >/dev/null
  redis-cli -p "$port" CONFIG SET appendonly yes >/dev/null
  redis-cli -p "$port" CONFIG SET appendfsync "$fsync" >/dev/null
  for _ in $(seq 100); do
    redis-cli -p "$port" INFO persistence | grep -q '^aof_rewrite_in_progress:0' && break
    sleep 0.1
  done
  start_relay "$store"; bench --url "$url"; stop_relays
done
