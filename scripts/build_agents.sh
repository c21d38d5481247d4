#!/usr/bin/env bash
# Compile the Erlang agents (erl_agents/*.erl) into the Python package.
#
#   bash scripts/build_agents.sh           rebuild sidecar/agents/ebin/
#   bash scripts/build_agents.sh --check   rebuild into a temporary directory and
#                                          fail if the committed beams differ
#
# `erlc +deterministic` (no paths, no timestamps in the beams) with warnings
# as errors, on the oldest OTP we support (25): OTP 25 beams load on OTP 28.
# Besides the beams it writes ebin/manifest.json: the agent protocol version
# (read from the compiled beamside_agent:version/0, whose -define(VERSION)
# is the one source of truth), the OTP release and compiler version used, and
# the md5 of every module, as Module:module_info(md5) reports it on a node.
set -euo pipefail
cd "$(dirname "$0")/.."

SRC=erl_agents
DEST=sidecar/agents/ebin
ERLC=${ERLC:-erlc}
ERL=${ERL:-erl}

check=0
case "${1:-}" in
    --check) check=1 ;;
    "") ;;
    *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

command -v "$ERLC" >/dev/null || {
    echo "erlc not found: install Erlang/OTP 25 (apt-get install -y erlang-base erlang-dev)" >&2
    exit 1
}
# Beams must come from the oldest OTP we support: a newer compiler may emit
# instructions OTP 25 cannot load (and different bytes: --check would fail).
WANT_OTP=${BEAMSIDE_AGENT_OTP:-25}
otp=$("$ERL" -noshell -noinput -eval 'io:format("~s", [erlang:system_info(otp_release)]), halt().')
if [ "$otp" != "$WANT_OTP" ]; then
    echo "$ERL runs OTP $otp; the agents are built with OTP $WANT_OTP (set ERLC and ERL)" >&2
    exit 1
fi

build() {
    local out=$1
    mkdir -p "$out"
    rm -f "$out"/*.beam "$out"/manifest.json
    # The behaviour module first: the plugins name it in -behaviour().
    local srcs=("$SRC/beamside_plugin.erl")
    for f in "$SRC"/*.erl; do
        [ "$f" = "$SRC/beamside_plugin.erl" ] || srcs+=("$f")
    done
    for f in "${srcs[@]}"; do
        "$ERLC" +deterministic -Werror -Wall -pa "$out" -o "$out" "$f"
    done
    "$ERL" -noshell -noinput -pa "$out" -eval '
        [Out] = init:get_plain_arguments(),
        Beams = lists:sort(filelib:wildcard(filename:join(Out, "*.beam"))),
        Mods = [begin
                    {ok, {M, Md5}} = beam_lib:md5(B),
                    Hex = [io_lib:format("~2.16.0b", [X]) || <<X>> <= Md5],
                    io_lib:format("    \"~s\": \"~s\"", [M, Hex])
                end || B <- Beams],
        _ = application:load(compiler),
        {ok, Compiler} = application:get_key(compiler, vsn),
        Json = ["{\n  \"version\": ", integer_to_list(beamside_agent:version()),
                ",\n  \"otp_release\": \"", erlang:system_info(otp_release),
                "\",\n  \"compiler\": \"", Compiler,
                "\",\n  \"modules\": {\n", lists:join(",\n", Mods), "\n  }\n}\n"],
        ok = file:write_file(filename:join(Out, "manifest.json"), Json),
        halt(0).' -extra "$out"
}

if [ "$check" = 1 ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    build "$tmp"
    if ! diff -r -q "$tmp" "$DEST"; then
        echo "sidecar/agents/ebin is stale: run bash scripts/build_agents.sh and commit" >&2
        exit 1
    fi
    echo "agents are fresh ($(ls "$DEST"/*.beam | wc -l) beams)"
else
    build "$DEST"
    echo "built $(ls "$DEST"/*.beam | wc -l) beams into $DEST"
fi
