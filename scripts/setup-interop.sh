#!/usr/bin/env bash
# Installs the real Python magic-wormhole packages into .venv/ for the interop tests: the whole
# environment (magic-wormhole 0.24.0, magic-wormhole-mailbox-server 0.8.0 and every transitive
# dependency) pinned with hashes in scripts/interop-requirements.txt, so the peers never float.
# Idempotent: a venv whose `pip freeze` already equals the pins is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${WORMHOLE_INTEROP_VENV:-.venv}
REQS=scripts/interop-requirements.txt
want=$(grep -E '^[A-Za-z0-9_.-]+==' "$REQS" | sed 's/ .*//' | tr 'A-Z_' 'a-z-' | sort)
have() { "$VENV/bin/python" -m pip freeze --all 2>/dev/null | grep -vE '^(pip|setuptools|wheel)==' | tr 'A-Z_' 'a-z-' | sort; }
if [ -x "$VENV/bin/wormhole" ] && [ -x "$VENV/bin/twist" ] && [ "$(have)" = "$want" ]; then
  echo "interop venv ready: $VENV"
  exit 0
fi
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes -r "$REQS"
"$VENV/bin/python" -m pip check
"$VENV/bin/wormhole" --version
echo "interop venv ready: $VENV"
