#!/usr/bin/env bash
# Measures our relay and the Python mailbox server 0.8 side by side, in one run, on loopback,
# like for like: ours in memory against Python with --channel-db=:memory:, and ours with
# --db FILE against Python on its SQLite file (its default). Rows: exchanges/s and latency at
# 1, 100 and 1000 concurrent pairs (closed loop), 1000 pairs at a fixed offered rate (open
# loop), and relay memory with 10,000 idle connections. Prints Markdown tables. Needs the
# interop venv (scripts/setup-interop.sh).
#   scripts/compare-relays.sh [DURATION_SECS]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
scripts/setup-interop.sh >/dev/null
cargo build --release --bin wormhole-relay >/dev/null 2>&1
BIN=target/release/wormhole-relay
TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" || true

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

declare -A PORT PID
# ours, in memory and on a SQLite file (WAL, synchronous=NORMAL: the --db default).
PORT[ours-memory]=$(free_port)
RUST_LOG=warn $BIN --listen "127.0.0.1:${PORT[ours-memory]}" >/dev/null 2>&1 & PID[ours-memory]=$!
PORT[ours-db]=$(free_port)
RUST_LOG=warn $BIN --listen "127.0.0.1:${PORT[ours-db]}" --db "$TMP/ours.sqlite" >/dev/null 2>&1 & PID[ours-db]=$!
# Python 0.8, in memory and on its SQLite file (its default --channel-db=relay.sqlite).
mkdir -p "$TMP/py-memory" "$TMP/py-db"
PORT[python-memory]=$(free_port)
(cd "$TMP/py-memory" && exec "$OLDPWD/.venv/bin/twist" wormhole-mailbox "--port=tcp:${PORT[python-memory]}:interface=127.0.0.1" --channel-db=:memory: >/dev/null 2>&1) & PID[python-memory]=$!
PORT[python-db]=$(free_port)
(cd "$TMP/py-db" && exec "$OLDPWD/.venv/bin/twist" wormhole-mailbox "--port=tcp:${PORT[python-db]}:interface=127.0.0.1" >/dev/null 2>&1) & PID[python-db]=$!
PIDS=("${PID[@]}")
for name in "${!PORT[@]}"; do wait_port "${PORT[$name]}"; done
sleep 1

# row NAME LEADING-CELLS BENCH-ARGS...: one table row from a `bench --json` run.
row() {
  local name=$1 cells=$2; shift 2
  local out
  out=$($BIN bench --url "ws://127.0.0.1:${PORT[$name]}/v1" --duration "$DURATION" --json "$@")
  python3 - "$name" "$cells" "$out" <<'PYEOF'
import json, sys
name, cells, out = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
print(f"| {name} | {cells} | {out['exchanges_per_s']:.0f} | {out['p50_ms']:.1f} | {out['p99_ms']:.1f} | {out['failed']} |")
PYEOF
  sleep 2
}

echo "| relay | pairs | exchanges/s | p50 ms | p99 ms | failed |"
echo "|---|---|---|---|---|---|"
for pairs in 1 100 1000; do
  for name in ours-memory python-memory ours-db python-db; do
    row "$name" "$pairs" --pairs "$pairs"
  done
done
echo
echo "Open loop: 1000 pairs, exchanges started at a fixed total rate; latency from each scheduled start."
echo
echo "| relay | pairs | offered/s | exchanges/s | p50 ms | p99 ms | failed |"
echo "|---|---|---|---|---|---|---|"
for spec in "ours-memory 1000" "ours-db 1000" "python-memory 50" "python-memory 200" "python-db 50" "python-db 200"; do
  set -- $spec
  row "$1" "1000 | $2" --pairs 1000 --rate "$2"
done
echo
echo "| relay | idle connections | answering | KiB per connection |"
echo "|---|---|---|---|"
for name in ours-memory python-memory; do
  pid=${PID[$name]}; [[ $name == python* ]] && pid=$(pgrep -P "$pid" || echo "$pid")
  out=$($BIN bench --url "ws://127.0.0.1:${PORT[$name]}/v1" --idle 10000 --duration 5 --relay-pid "$pid" --json)
  python3 - "$name" "$out" <<'PYEOF'
import json, sys
name, out = sys.argv[1], json.loads(sys.argv[2])
per = out.get("relay_kib_per_connection")
per = f"{per:.2f}" if per is not None else "n/a"
print(f"| {name} | {out['connected']} | {out['answering']} | {per} |")
PYEOF
  sleep 2
done
