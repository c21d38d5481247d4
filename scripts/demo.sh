#!/usr/bin/env bash
# The README's first set-up command: install what the demo needs on a fresh
# machine (Erlang/OTP from Debian, this package), then run `beamside demo`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v erl >/dev/null 2>&1 || ! command -v epmd >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends erlang-base erlang-os-mon erlang-mnesia
fi
python3 -m pip install -q --disable-pip-version-check -e .
exec python3 -m sidecar.cli demo "$@"
