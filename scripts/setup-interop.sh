#!/usr/bin/env bash
# Installs the real Python magic-wormhole packages, pinned, into .venv/ for the interop tests.
# Idempotent: a venv that already has the pinned versions is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${WORMHOLE_INTEROP_VENV:-.venv}
PINS=(magic-wormhole==0.24.0 magic-wormhole-mailbox-server==0.8.0)
if [ -x "$VENV/bin/wormhole" ] && [ -x "$VENV/bin/twist" ] \
  && "$VENV/bin/python" -m pip freeze 2>/dev/null | grep -qx 'magic-wormhole==0.24.0' \
  && "$VENV/bin/python" -m pip freeze 2>/dev/null | grep -qx 'magic-wormhole-mailbox-server==0.8.0'; then
  echo "interop venv ready: $VENV"
  exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}"
"$VENV/bin/wormhole" --version
echo "interop venv ready: $VENV"
