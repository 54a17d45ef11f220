#!/usr/bin/env bash
# Installs redis-server from the distribution's packages when it is missing. The Redis tests
# start their own instances (loopback port, own data directory); nothing else uses it.
# Called by .ci/run, and by the tests themselves on a machine that lacks it.
set -euo pipefail
command -v redis-server >/dev/null 2>&1 && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing redis-server for the Redis tests" >&2
$SUDO apt-get update -q >/dev/null
$SUDO apt-get install -y -q redis-server >/dev/null
command -v redis-server >/dev/null
