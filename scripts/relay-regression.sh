#!/usr/bin/env bash
# Compares two relay binaries side by side in one run, with one load generator:
# system calls per exchange (strace -c -f during bench --pairs 10), exchanges/s at 100 pairs
# (three alternating runs) and memory per idle connection (--idle 10000).
# Usage: scripts/relay-regression.sh OLD_RELAY NEW_RELAY   (both release builds)
set -u
OLD=$1
NEW=$2
BENCH=$NEW
# Starts a relay on a free port: sets pid and port.
start() {
  local f
  f=$(mktemp); "$1" --listen 127.0.0.1:0 >"$f" 2>/dev/null & pid=$!
  for _ in $(seq 50); do grep -q listening "$f" && break; sleep 0.1; done
  port=$(sed -n 's|.*ws://127.0.0.1:\([0-9]*\)/v1|\1|p' "$f"); rm -f "$f"
}
bin_of() { if [ "$1" = old ]; then echo "$OLD"; else echo "$NEW"; fi; }
echo "== system calls per exchange (strace -c -f on the relay, bench --pairs 10 --duration 5) =="
for which in old new; do
  start "$(bin_of $which)"
  trace=$(mktemp)
  strace -c -f -p "$pid" -o "$trace" & spid=$!
  sleep 1
  n=$("$BENCH" bench --url "ws://127.0.0.1:$port/v1" --pairs 10 --duration 5 --json \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["exchanges"])')
  sleep 0.5; kill -INT $spid; wait $spid; kill "$pid"; wait "$pid" 2>/dev/null
  echo "$which: $n exchanges"
  python3 - "$n" "$trace" <<'PY'
import sys
n = int(sys.argv[1]); calls = {}
for line in open(sys.argv[2]):
    f = line.split()
    if len(f) >= 5 and f[0][0].isdigit():
        try: calls[f[-1]] = int(f[3])
        except ValueError: pass
for k in ('sendto', 'recvfrom', 'writev', 'write', 'read', 'epoll_wait'):
    if k in calls: print(f"  {k:12} {calls[k]:8d} calls, {calls[k]/n:6.2f} per exchange")
PY
  rm -f "$trace"
done
echo "== exchanges/s at 100 pairs (bench --pairs 100 --duration 10), alternating =="
for _ in 1 2 3; do
  for which in old new; do
    start "$(bin_of $which)"
    echo -n "$which: "; "$BENCH" bench --url "ws://127.0.0.1:$port/v1" --pairs 100 --duration 10
    kill "$pid"; wait "$pid" 2>/dev/null
  done
done
echo "== memory per idle connection (bench --idle 10000 --duration 5 --relay-pid) =="
for which in old new; do
  start "$(bin_of $which)"
  echo -n "$which: "; "$BENCH" bench --url "ws://127.0.0.1:$port/v1" --idle 10000 --duration 5 \
    --relay-pid "$pid" | tail -1
  kill "$pid"; wait "$pid" 2>/dev/null
done
