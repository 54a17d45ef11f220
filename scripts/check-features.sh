#!/usr/bin/env bash
# The build keeps the pure protocol pure, and every documented feature combination builds.
# 1. The library with no features (codes, crypto, wire, client core, relay core) has no tokio
#    and no transports to import, and clippy with .ci/pure/clippy.toml refuses clock reads,
#    ambient randomness, sockets, threads and sleeps in it.
# 2. `cargo check` of each feature set documented in the README.
# 3. A self-test: the same checks on a copy of the tree with a tokio import and a clock read
#    injected into src/core must fail, so the check cannot silently pass.
set -euo pipefail
cd "$(dirname "$0")/.."

pure_check() { # DIR: the purity check on the tree at DIR
  (cd "$1" && cargo check -q -p wormhole --no-default-features --lib \
    && CLIPPY_CONF_DIR=.ci/pure cargo clippy -q -p wormhole --no-default-features --lib -- -D warnings)
}

echo "purity: the pure protocol with no features"
pure_check .
if cargo tree -p wormhole --no-default-features -e normal --prefix none \
  | grep -E '^(tokio|clap|clap_complete|rustyline|qrcode|indicatif|tracing-subscriber|wormhole-transports|hyper|rusqlite|redis|surf) '; then
  echo "FAIL: the pure protocol pulls a runtime, a transport or a CLI dependency" >&2
  exit 1
fi

# Each documented combination (README, "Cargo features").
COMBOS=("async" "relay-server" "websocket" "tls" "async,tls")
for extra in http sqlite surf redis; do
  if grep -qE "^$extra = " Cargo.toml; then COMBOS+=("$extra"); fi
done
for f in "${COMBOS[@]}"; do
  echo "features: --no-default-features --features $f"
  cargo check -q -p wormhole --no-default-features --features "$f" --lib
done
echo "features: default (cli), all targets"
cargo check -q --workspace --all-targets
echo "features: wormhole-sim with fault-injection"
cargo check -q -p wormhole-sim --features fault-injection --all-targets

echo "purity self-test: an injected tokio import and clock read must fail the check"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
git ls-files -z | sort -zu | xargs -0 cp --parents -t "$tmp"
cp -r src transports .ci "$tmp"/ # the working tree's versions, committed or not
export CARGO_TARGET_DIR="$PWD/target/purity-selftest"
pure_check "$tmp" >/dev/null || { echo "FAIL: the copy used by the self-test does not pass as is" >&2; exit 1; }
for bad in 'use tokio as _injected;' 'pub fn _injected() -> std::time::Instant { std::time::Instant::now() }'; do
  cp src/core/schedule.rs "$tmp/src/core/schedule.rs"
  echo "$bad" >>"$tmp/src/core/schedule.rs"
  if pure_check "$tmp" >/dev/null 2>&1; then
    echo "FAIL: the purity check passed with '$bad' in src/core" >&2
    exit 1
  fi
done
echo "purity self-test: both injections were caught"
