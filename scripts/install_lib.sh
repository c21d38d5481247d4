# shellcheck shell=bash
# Install steps shared by scripts/demo.sh and .ci/run (sourced, after
# `set -euo pipefail`). Every step prints one line with the time since the
# start, and long installs print a line per package, so nothing is silent for
# minutes.

_install_t0=$SECONDS

# step TEXT...: "== [1m05s] TEXT" on stderr.
step() {
    local t=$((SECONDS - _install_t0))
    printf '== [%dm%02ds] %s\n' $((t / 60)) $((t % 60)) "$*" >&2
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "need root (or sudo) for: $*" >&2
        return 1
    fi
}

# Lines of a pipe that start with one of the prefixes in $1 (an ERE), indented.
_progress() {
    { grep --line-buffered -E "^($1)" || true; } | sed -u 's/^/     /' >&2
}

_POLICY=/usr/sbin/policy-rc.d
_policy_placed=0

# A policy-rc.d that forbids every service action (exit 101), unless the host
# already has one that does (Debian's container images ship it).
_forbid_services() {
    local rc=0
    "$_POLICY" rabbitmq-server start >/dev/null 2>&1 || rc=$?
    [ "$rc" -eq 101 ] && return 0
    step "no service may start during the install: $_POLICY (exit 101) until it ends"
    if [ -e "$_POLICY" ]; then as_root mv "$_POLICY" "$_POLICY.beamside-saved"; fi
    printf '#!/bin/sh\n# beamside install: no service starts during apt-get install\nexit 101\n' |
        as_root tee "$_POLICY" >/dev/null
    as_root chmod 755 "$_POLICY"
    _policy_placed=1
}

_restore_services() {
    [ "$_policy_placed" -eq 1 ] || return 0
    as_root rm -f "$_POLICY"
    if [ -e "$_POLICY.beamside-saved" ]; then as_root mv "$_POLICY.beamside-saved" "$_POLICY"; fi
    _policy_placed=0
}

# beam.smp and epmd processes that a package's service would run: on the
# default EPMD port (test nodes and our own demo always name a private one,
# by flag or by ERL_EPMD_PORT in their environment).
_service_pids() {
    local pid port
    for pid in $(ps -eo pid=,user=,comm=,args= | awk '
        $3 == "beam.smp" && !/-epmd_port/ && /rabbit|ejabberd|yaws/ { print $1 }
        $3 == "epmd" && !/ -port / && $2 ~ /^(epmd|rabbitmq|ejabberd|yaws)$/ { print $1 }'); do
        port=$(tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | sed -n 's/^ERL_EPMD_PORT=//p')
        if [ -z "$port" ] || [ "$port" = 4369 ]; then echo "$pid"; fi
    done
}

# Stop, by pid, what an install started despite the policy (none expected).
_stop_started_services() {
    local before=" $1 " pid started=""
    for pid in $(_service_pids); do
        case $before in *" $pid "*) ;; *) started="$started $pid" ;; esac
    done
    [ -n "$started" ] || return 0
    step "stopping what the install started:$started"
    ps -o pid=,user=,args= -p "${started# }" | cut -c1-160 >&2 || true
    # shellcheck disable=SC2086
    as_root kill -TERM $started 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        # shellcheck disable=SC2086
        ps -p "$(echo $started | tr ' ' ,)" >/dev/null 2>&1 || return 0
        sleep 1
    done
    # shellcheck disable=SC2086
    as_root kill -KILL $started 2>/dev/null || true
}

_apt_updated=0

# apt_install [--no-services] PACKAGE...: without recommends, a line per
# package set up. --no-services: no package's service starts (policy-rc.d),
# and any that did anyway is stopped afterwards.
apt_install() {
    local no_services=0 status=0 before=""
    if [ "${1:-}" = --no-services ]; then
        no_services=1
        shift
    fi
    [ $# -gt 0 ] || return 0
    if [ "$_apt_updated" -eq 0 ]; then
        step "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        _apt_updated=1
    fi
    if [ "$no_services" -eq 1 ]; then
        before=$(_service_pids | tr '\n' ' ')
        _forbid_services
        trap _restore_services EXIT
    fi
    step "apt-get install: $*"
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q -o Dpkg::Use-Pty=0 --no-install-recommends "$@" |
        _progress 'Setting up ' || status=$?
    if [ "$no_services" -eq 1 ]; then
        _restore_services
        trap - EXIT
        _stop_started_services "$before"
    fi
    return "$status"
}

# True when python3 refuses `pip install` outside a venv (PEP 668, e.g.
# Debian 12's own python3).
python_is_managed() {
    python3 -c 'import os, sys, sysconfig
managed = os.path.isfile(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))
sys.exit(0 if managed and sys.prefix == sys.base_prefix else 1)'
}

# ensure_venv DIR: a venv with pip in DIR; python3-venv from Debian when
# `python3 -m venv` cannot make one.
ensure_venv() {
    local dir=$1
    "$dir/bin/python" -m pip --version >/dev/null 2>&1 && return 0
    command -v python3 >/dev/null 2>&1 || apt_install python3
    step "python3 -m venv $dir"
    rm -rf "$dir"
    if ! python3 -m venv "$dir" >/dev/null 2>&1; then
        rm -rf "$dir"
        apt_install python3-venv
        python3 -m venv "$dir"
    fi
}

# pip_install PYTHON ARG...: a line per package pip collects.
pip_install() {
    local python=$1
    shift
    step "pip install $*"
    "$python" -m pip install --disable-pip-version-check --progress-bar off "$@" |
        _progress 'Collecting |Processing |Successfully installed '
}
