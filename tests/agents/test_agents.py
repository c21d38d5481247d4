"""Agent loading, attach/detach lifecycle and residue, against real nodes."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

from sidecar import agents
from sidecar.agents import AGENT_MODULES, AGENT_VERSION
from sidecar.agents.config import BUILTIN_PLUGINS
from sidecar.erldist.node import LocalNode
from sidecar.erldist.term import Atom, Charlist, Pid
from sidecar.model import EXPORTER_SECTIONS, NodeSnapshot
from tests.agents.conftest import (
    NO_RESIDUE,
    RESIDUE_EXPR,
    collect_reply,
    family_names,
    section_errors,
    snapshot,
    wait_for,
)
from tests.support.golden import exposition
from tests.support.nodes import ErlangNode
from tests.support.prometheus import promtool_check_metrics

A = Atom
# Sections every runtime must answer (plugins is empty without os_mon/mnesia).
CORE = {
    "versions", "memory", "allocators", "allocated_areas", "limits", "system", "run_queues",
    "statistics", "scheduler_utilization", "msacc", "processes", "ports", "ets", "kernel",
    "dist", "sysmon", "plugins", "alarms", "time", "dist_nodes",
}  # fmt: skip
# Computed only when asked for.
OPT_IN = {"startup_files", "modules", "env"}


def test_package_carries_the_beams() -> None:
    beams = agents.beams()
    assert {b.module for b in beams} == set(AGENT_MODULES)
    assert all(b.module.startswith("beamside_") for b in beams)
    assert all(b.data[:4] == b"FOR1" for b in beams)
    assert AGENT_VERSION >= 1


def test_committed_beams_are_fresh() -> None:
    """The beams in the package are what erl_agents/*.erl compile to (CI check)."""
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        ["bash", str(root / "scripts" / "build_agents.sh"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


async def test_lifecycle_on_every_runtime(any_node: ErlangNode, local: LocalNode) -> None:
    """Load, attach (asking for scheduler_wall_time and msacc), collect, render,
    detach: and nothing of ours is left on the node."""
    node = any_node
    info = await agents.ensure_loaded(local, node.name)
    assert info.action == "loaded"
    assert info.agent_version == AGENT_VERSION
    # The OTP 25 beams run everywhere and report the md5 the manifest has.
    assert dict(info.modules) == dict(AGENT_MODULES)
    assert info.otp_release == node.eval("erlang:system_info(otp_release).").strip('"')
    assert info.family_hint == "erlang" and info.family_source == "default"
    assert "kernel" in info.applications and "stdlib" in info.applications
    assert dict(info.plugins) == dict.fromkeys(BUILTIN_PLUGINS, False)  # the one list
    assert not info.attached

    again = await agents.ensure_loaded(local, node.name)
    assert again.action == "kept"

    pid = await agents.attach(local, node.name, {"scheduler_wall_time": True, "msacc": True})
    assert isinstance(pid, Pid)
    assert await agents.attach(local, node.name) == pid  # idempotent
    assert node.eval("element(1, erlang:system_monitor()) =:= whereis(beamside_sysmon).") == "true"

    await snapshot(local, node)  # first window for scheduler utilisation
    await asyncio.sleep(0.2)
    snap, data = await collect_reply(local, node)
    assert set(data) >= CORE
    assert not set(data) & OPT_IN
    assert section_errors(dict(data)) == {}
    assert section_errors(data["alarms"]) == {}
    assert data["agent_version"] == AGENT_VERSION
    # the exporter's sections come packed: the snapshot keeps the bytes
    assert isinstance(data["packed"], bytes) and snap.packed == data["packed"] and not snap.trees
    assert snap.exporter_trees() == ({k: data[k] for k in EXPORTER_SECTIONS}, {})
    assert data["node"] == node.name
    assert data["memory"]["total"] == data["memory"]["processes"] + data["memory"]["system"]
    assert data["versions"]["otp_release"].decode() == info.otp_release
    assert data["limits"]["process_count"] > 10
    assert data["processes"]["walked"] >= data["limits"]["process_count"] - 5
    assert data["processes"]["truncated"] is False
    assert data["sysmon"]["state"] == "owner"
    assert data["scheduler_utilization"]["enabled"] is True
    assert data["scheduler_utilization"]["window"] == "since_previous"
    assert data["msacc"]["enabled"] is True
    dist = data["dist"]  # the default: an aggregate, no per-peer list (issue 15)
    assert dist["per_peer"] is False and "peers" not in dist
    assert dist["peer_counts"]["up"] == {"visible": 0, "hidden": 1}  # us
    assert dist["sockets"]["count"] == 1 and dist["sockets"]["recv_bytes"] > 0
    assert data["plugins"] == {}
    # The alarm data: no sasl, no mnesia on these nodes.
    alarms = data["alarms"]
    assert alarms["sasl"] == "not_running" and alarms["mnesia"] == "not_running"
    assert alarms["old_code"] == {"count": 0, "modules": [], "ages_ms": {}}
    assert alarms["shell_history"] == "disabled"
    assert alarms["memory_view"]["total_bytes"] >= alarms["memory_view"]["available_bytes"] > 0
    assert data["versions"]["applications"].keys() >= {"kernel", "stdlib"}
    assert data["time"]["utc_offset_s"] == time.localtime().tm_gmtoff  # same TZ as ours
    assert abs(data["time"]["system_time_us"] / 1e6 - time.time()) < 60
    assert data["dist_nodes"] == []  # the sidecar is hidden
    procs = data["processes"]
    assert procs["max_memory"] == procs["top_memory"][0]["memory"] > 0
    assert procs["memory_covered"] == procs["walked"] and procs["memory_partial"] is False
    # The costlier parts, on request.
    extra = await agents.collect(
        local,
        node.name,
        {"startup_files": True, "modules_md5": True, "env_keys": [("kernel", "logger_level")]},
    )
    assert extra["startup_files"]["errors"] == [] and extra["startup_files"]["checked"] >= 2
    assert extra["startup_files"]["truncated"] is False
    md5 = node.eval("<<N:128>> = lists:module_info(md5), N.")
    assert extra["modules"]["lists"] == f"{int(md5):032x}".encode()
    assert not [m for m in extra["modules"] if str(m).startswith("beamside_")]
    assert extra["env"][(A("kernel"), A("logger_level"))]["text"] == b"notice"

    text = exposition([snap])
    lint = promtool_check_metrics(text)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    names = family_names([snap])
    assert {"erlang_vm_scheduler_utilization_ratio", "erlang_vm_msacc_sleep_seconds"} <= names

    keys = ["process_count", "memory", "run_queues", "alarms", "bogus"]
    live = await agents.live(local, node.name, keys)
    assert live["process_count"] > 10
    assert live["alarms"]["sasl"] == "not_running"
    assert live["memory"]["total"] > 0
    assert live["bogus"] == (A("error"), A("unknown_key"))

    unloaded = await agents.detach(local, node.name)
    assert set(unloaded) == set(AGENT_MODULES)
    assert await node.aeval(RESIDUE_EXPR) == NO_RESIDUE
    assert await agents.detach(local, node.name) == []  # nothing left: no-op


async def test_at_least_120_families_from_a_plain_otp25_node(
    otp25_node: ErlangNode, local: LocalNode
) -> None:
    await agents.ensure_loaded(local, otp25_node.name)
    await agents.attach(local, otp25_node.name)  # default options: nothing VM-wide asked for
    snap = await snapshot(local, otp25_node)
    apps = otp25_node.eval("[A || {A, _, _} <- application:which_applications()].")
    assert apps == "[stdlib,kernel]"
    names = family_names([snap])
    print(f"\nmetric families from a plain OTP 25 node (kernel+stdlib): {len(names)}")
    assert len(names) >= 120, sorted(names)
    for name in (
        "erlang_vm_memory_bytes",
        "erlang_vm_processes",
        "erlang_vm_process_limit",
        "erlang_vm_atoms",
        "erlang_vm_atom_limit",
        "erlang_vm_ets_limit",
        "erlang_vm_statistics_reductions",  # prometheus_client names counters without _total
        "erlang_vm_dist_recv_bytes",
        "erlang_vm_system_monitor_events",
        "erlang_vm_application",
    ):
        assert name in names
    lint = promtool_check_metrics(exposition([snap]))
    assert lint.returncode == 0, lint.stdout + lint.stderr


def _compile(tmp_path: Path, source: str) -> bytes:
    src = tmp_path / "beamside_agent.erl"
    src.write_text(source)
    subprocess.run(["erlc", "-o", str(tmp_path), str(src)], check=True)
    return (tmp_path / "beamside_agent.beam").read_bytes()


OLD_AGENT = """
-module(beamside_agent).
-export([version/0, info/0, detach/0, start/0, loop/0]).
version() -> {version}.
info() -> #{{agent_version => {version}, modules => #{{}}}}.
start() -> register(beamside_old_worker, spawn(fun ?MODULE:loop/0)), ok.
loop() -> receive stop -> ok; _ -> ?MODULE:loop() end.
detach() -> beamside_old_worker ! stop, ok.
"""


async def _load_old(local: LocalNode, node: ErlangNode, tmp_path: Path, version: int) -> None:
    beam = _compile(tmp_path, OLD_AGENT.format(version=version))
    mod = A("beamside_agent")
    loaded = await local.rpc(
        node.name, "code", "load_binary", [mod, Charlist("old/beamside_agent.beam"), beam]
    )
    assert loaded == (A("module"), mod)
    assert await local.rpc(node.name, "beamside_agent", "start", []) == A("ok")


async def test_newer_beamside_replaces_an_older_agent(
    otp25_node: ErlangNode, local: LocalNode, tmp_path: Path
) -> None:
    node = otp25_node
    node.eval("register(user_worker, spawn(fun() -> receive stop -> ok end end)), ok.")
    await _load_old(local, node, tmp_path, version=0)
    assert node.eval("beamside_agent:version().") == "0"

    info = await agents.ensure_loaded(local, node.name)
    assert info.action == "replaced"
    assert info.agent_version == AGENT_VERSION
    assert dict(info.modules) == dict(AGENT_MODULES)
    # The old agent's process was stopped through its own detach, no old code
    # is left behind, and the user's processes were not touched.
    assert node.eval("whereis(beamside_old_worker).") == "undefined"
    assert node.eval("erlang:check_old_code(beamside_agent).") == "false"
    assert node.eval("is_process_alive(whereis(user_worker)).") == "true"
    assert node.eval("code:which(beamside_agent).") == '"beamside_agent.beam"'


async def test_no_downgrade_when_asked(
    otp25_node: ErlangNode, local: LocalNode, tmp_path: Path
) -> None:
    """Without downgrades, a newer agent nobody uses is still replaced (one
    in use by another beamside is not: tests/agents/test_lifecycle.py)."""
    await _load_old(local, otp25_node, tmp_path, version=AGENT_VERSION + 1000)
    info = await agents.ensure_loaded(local, otp25_node.name, allow_downgrade=False)
    assert info.action == "replaced" and info.agent_version == AGENT_VERSION
    assert otp25_node.eval("whereis(beamside_old_worker).") == "undefined"


async def test_connection_dropped_releases_everything(
    otp28_node: ErlangNode, cookie: str, epmd_port: int
) -> None:
    node = otp28_node
    local = LocalNode("beamside-dropped@127.0.0.1", cookie, epmd_port=epmd_port)
    try:
        await agents.ensure_loaded(local, node.name)
        await agents.attach(local, node.name, {"scheduler_wall_time": True, "msacc": True})
        assert node.eval("whereis(beamside_sysmon) =/= undefined.") == "true"
        assert node.eval("element(1, erlang:system_monitor()) =:= whereis(beamside_sysmon).") == (
            "true"
        )
        assert node.eval("erlang:statistics(scheduler_wall_time) =/= undefined.") == "true"
    finally:
        await local.close()
    t0 = time.monotonic()
    state = "{whereis(beamside_sysmon), erlang:system_monitor(), " \
        "erlang:statistics(scheduler_wall_time)}."  # fmt: skip
    assert await wait_for(node, state, "{undefined,undefined,undefined}") == (
        "{undefined,undefined,undefined}"
    )
    print(f"\nagent process gone and system monitor released {time.monotonic() - t0:.2f}s "
          "after the connection closed")  # fmt: skip
    # msacc was off before we asked: the agent turned it off again.
    assert node.eval("erlang:system_flag(microstate_accounting, false).") == "false"
    assert node.eval("[N || N <- ets:all(), N =:= beamside_sysmon].") == "[]"


async def test_users_system_monitor_is_left_alone(
    elixir_node: ErlangNode, local: LocalNode
) -> None:
    node = elixir_node
    node.eval(
        "P = spawn(fun() -> receive stop -> ok end end), register(user_sysmon, P), "
        "erlang:system_monitor(P, [busy_port, {long_gc, 500}]), ok."
    )
    theirs = node.eval("erlang:system_monitor().")
    await agents.ensure_loaded(local, node.name)
    await agents.attach(local, node.name)
    snap = await snapshot(local, node)
    assert snap.sysmon is not None and snap.sysmon.state == "taken_by_other"
    assert node.eval("erlang:system_monitor().") == theirs
    await agents.detach(local, node.name)
    assert node.eval("erlang:system_monitor().") == theirs
    assert node.eval("element(1, erlang:system_monitor()) =:= whereis(user_sysmon).") == "true"


async def test_system_monitor_events_are_counted(otp25_node: ErlangNode, local: LocalNode) -> None:
    node = otp25_node
    await agents.ensure_loaded(local, node.name)
    await agents.attach(local, node.name, {"large_heap": 20000})
    before = _large_heap(await snapshot(local, node))
    node.eval(
        "[spawn(fun() -> L = lists:seq(1, 100000), erlang:garbage_collect(), length(L) end)"
        " || _ <- lists:seq(1, 3)], ok."
    )
    deadline = time.monotonic() + 5
    while True:
        snap = await snapshot(local, node)
        if _large_heap(snap) > before or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert _large_heap(snap) > before
    text = exposition([snap]).decode()
    assert "erlang_vm_system_monitor_events_total{" in text
    assert 'event="large_heap"' in text


def _large_heap(snap: NodeSnapshot) -> float:
    assert snap.sysmon is not None and snap.sysmon.large_heap is not None, snap.errors
    return snap.sysmon.large_heap
