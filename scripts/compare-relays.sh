#!/usr/bin/env bash
# Measures our relay and the Python mailbox server 0.8 side by side, in one run, on loopback:
# exchanges/s and latency at 1, 100 and 1000 concurrent pairs (closed loop), 1000 pairs at a
# fixed offered rate (open loop), and relay memory with 10,000 idle connections. Prints a Markdown table. Needs the interop venv (scripts/setup-interop.sh).
#   scripts/compare-relays.sh [DURATION_SECS]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
scripts/setup-interop.sh >/dev/null
cargo build --release --bin wormhole-relay >/dev/null 2>&1
BIN=target/release/wormhole-relay
TMP=$(mktemp -d)
cleanup() { kill "${OURS:-}" "${PY:-}" 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" || true

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

OUR_PORT=$(free_port)
RUST_LOG=warn $BIN --listen "127.0.0.1:$OUR_PORT" >/dev/null 2>&1 & OURS=$!
PY_PORT=$(free_port)
(cd "$TMP" && exec "$OLDPWD/.venv/bin/twist" wormhole-mailbox "--port=tcp:$PY_PORT:interface=127.0.0.1" >/dev/null 2>&1) & PY=$!
wait_port "$OUR_PORT"; wait_port "$PY_PORT"
sleep 1

echo "| relay | pairs | exchanges/s | p50 ms | p99 ms | failed |"
echo "|---|---|---|---|---|---|"
# row NAME LEADING-CELLS BENCH-ARGS...: one table row from a `bench --json` run.
row() {
  local name=$1 cells=$2; shift 2
  local port=$OUR_PORT; [ "$name" = python ] && port=$PY_PORT
  local out
  out=$($BIN bench --url "ws://127.0.0.1:$port/v1" --duration "$DURATION" --json "$@")
  python3 - "$name" "$cells" "$out" <<'PYEOF'
import json, sys
name, cells, out = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
print(f"| {name} | {cells} | {out['exchanges_per_s']:.0f} | {out['p50_ms']:.1f} | {out['p99_ms']:.1f} | {out['failed']} |")
PYEOF
  sleep 2
}

for pairs in 1 100 1000; do
  for name in ours python; do
    row "$name" "$pairs" --pairs "$pairs"
  done
done
echo
echo "Open loop: 1000 pairs, exchanges started at a fixed total rate; latency from each scheduled start."
echo
echo "| relay | pairs | offered/s | exchanges/s | p50 ms | p99 ms | failed |"
echo "|---|---|---|---|---|---|---|"
for spec in "ours 1000" "ours 3000" "python 50" "python 1000"; do
  set -- $spec
  row "$1" "1000 | $2" --pairs 1000 --rate "$2"
done
echo
echo "| relay | idle connections | answering | KiB per connection |"
echo "|---|---|---|---|"
for name in ours python; do
  port=$OUR_PORT; pid=$OURS; [ "$name" = python ] && { port=$PY_PORT; pid=$(pgrep -P "$PY" || echo "$PY"); }
  out=$($BIN bench --url "ws://127.0.0.1:$port/v1" --idle 10000 --duration 5 --relay-pid "$pid" --json)
  python3 - "$name" "$out" <<'PYEOF'
import json, sys
name, out = sys.argv[1], json.loads(sys.argv[2])
per = out.get("relay_kib_per_connection")
per = f"{per:.2f}" if per is not None else "n/a"
print(f"| {name} | {out['connected']} | {out['answering']} | {per} |")
PYEOF
  sleep 2
done
