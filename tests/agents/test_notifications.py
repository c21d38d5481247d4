"""Notifications (agent beamside_events) against real nodes: expressions typed
in real `erl` shells (local and `-remsh`), module load/reload/purge/delete
events from the `code_events` collect section, system monitor events."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sidecar import agents
from sidecar.agents import EventOptions
from sidecar.agents.events import NodeEvent
from sidecar.erldist.node import LocalNode
from sidecar.erldist.term import Atom
from sidecar.notify import snapshot_notifications
from tests.agents.conftest import NO_RESIDUE, RESIDUE_EXPR
from tests.agents.events_helpers import Collected, attach_events
from tests.support.nodes import ErlangNode, Runtime, shell_node
from tests.support.snapshots import node_snapshot


def is_command(text: str) -> Callable[[NodeEvent], bool]:
    return lambda e: e.type == "shell_command" and e.message == text


# --------------------------------------------------------------------------- shells


@pytest.mark.parametrize(("runtime", "tty"), [("otp25", True), ("otp28", True), ("otp25", False)])
async def test_local_shell_expressions(
    runtime: Runtime, tty: bool, cookie: str, epmd_port: int, tmp_path: Path
) -> None:
    with shell_node(runtime, cookie, epmd_port, tmp_path, tty=tty) as sh:
        sh.type("Before = before_attach.")
        local = LocalNode("beamside-shell@127.0.0.1", cookie, epmd_port=epmd_port)
        try:
            await asyncio.sleep(0.5)
            box = local.mailbox("beamside_events")
            await agents.ensure_loaded(local, sh.name)
            await agents.attach(local, sh.name, EventOptions().to_attach_opts())
            got = Collected(box)
            sh.type("X = 1 + 2.")
            sh.type('Y = lists:reverse("abc"), {X, Y}.')
            first = (await got.until(lambda e: e.type == "shell_command", count=2))[:2]
            assert [e.message for e in first] == ["X = 1 + 2", 'Y = lists:reverse("abc"), {X, Y}']
            # The command before attach is the shell's history, not new.
            assert [e.fields["command"] for e in first] == [2, 3]
            ev = first[0]
            assert ev.kind == "notification" and ev.level == "notice"
            assert ev.fields["remote"] is False and ev.fields["shell_node"] == sh.name
            assert str(ev.fields["shell"]).startswith("<0.")
            assert ev.node == sh.name and abs(ev.time_ns - time.time_ns()) < 60e9
            await agents.detach(local, sh.name)
            remaining = await local.rpc(sh.name, "logger", "get_handler_ids", [])
            assert Atom("beamside") not in remaining
            if tty:
                assert '{3,"cba"}' in sh.output()
        finally:
            await local.close()


async def test_remote_shell_expressions(
    otp25_node: ErlangNode, local: LocalNode, cookie: str, epmd_port: int, tmp_path: Path
) -> None:
    node = otp25_node
    box = await attach_events(local, node)
    got = Collected(box)
    with shell_node("otp25", cookie, epmd_port, tmp_path, remsh=node.name) as sh:
        await sh.wait_output(f"({node.name})1> ")
        sh.type("node().")
        sh.type("Z = 40 + 2.")
        ev = (await got.until(is_command("Z = 40 + 2"), timeout=15))[0]
        assert ev.fields["remote"] is True and ev.fields["shell_node"] == sh.name
        assert ev.node == node.name
        assert ev.fields["command"] == 2
        earlier = [e for e in got.events if e.type == "shell_command" and e.message == "node()"]
        assert len(earlier) == 1  # a new shell: its first command is reported too
        assert node.name in sh.output()


# --------------------------------------------------------------------------- code


def compile_mod(tmp_path: Path, name: str, version: int) -> Path:
    out = tmp_path / f"v{version}"
    out.mkdir(exist_ok=True)
    src = out / f"{name}.erl"
    src.write_text(f"-module({name}).\n-export([v/0]).\nv() -> {version}.\n")
    subprocess.run(["erlc", "-o", str(out), str(src)], check=True)
    return out


async def _code(local: LocalNode, node: ErlangNode) -> tuple[dict[str, object], list[NodeEvent]]:
    data = await agents.collect(
        local, node.name, {"sections": ["time"], "code_events": True}, timeout=30
    )
    section = data["code_events"]
    snap = node_snapshot(node.name, "f", "c", time.time(), 0.0, data)
    return section, snapshot_notifications(snap)


def _types(events: list[NodeEvent], module: str) -> list[str]:
    return [e.type for e in events if e.fields.get("module") == module]


async def test_code_events(otp25_node: ErlangNode, local: LocalNode, tmp_path: Path) -> None:
    node = otp25_node
    await agents.ensure_loaded(local, node.name)
    before = await agents.collect(local, node.name, {"sections": [], "code_events": True})
    assert before["code_events"] == Atom("not_attached")
    await agents.attach(local, node.name)
    section, events = await _code(local, node)
    assert section["baseline"] is True and events == []
    assert isinstance(section["modules"], int) and section["modules"] > 50
    mod = "bstest_code_mod"
    v1 = compile_mod(tmp_path, mod, 1)
    node.eval(f'code:add_patha("{v1}"), c:l({mod}).')
    section, events = await _code(local, node)
    assert _types(events, mod) == ["module_loaded"]
    md5 = node.eval(f"beamside_agent:hex({mod}:module_info(md5)).").strip('"<>')
    loaded = next(e for e in events if e.fields.get("module") == mod)
    assert loaded.fields["md5"] == md5 and loaded.message == f"module {mod} loaded"
    # c:l a second time: the first version becomes old code: reloaded.
    node.eval(f"c:l({mod}).")
    section, events = await _code(local, node)
    assert _types(events, mod) == ["module_reloaded"]
    # A different version loaded after a purge (old code stays): the md5 moved.
    v2 = compile_mod(tmp_path, mod, 2)
    node.eval(f'code:del_path("{v1}"), code:add_patha("{v2}"), c:l({mod}), {mod}:v().')
    section, events = await _code(local, node)
    assert _types(events, mod) == ["module_reloaded"]
    node.eval(f"code:purge({mod}).")
    section, events = await _code(local, node)
    assert _types(events, mod) == ["module_purged"]
    node.eval(f"code:delete({mod}).")
    section, events = await _code(local, node)
    assert _types(events, mod) == ["module_deleted"]
    node.eval(f"code:purge({mod}).")
    section, events = await _code(local, node)
    assert _types(events, mod) == ["module_purged"]
    section, events = await _code(local, node)
    assert events == []
    await agents.detach(local, node.name)
    assert node.eval(RESIDUE_EXPR) == NO_RESIDUE


# --------------------------------------------------------------------------- sysmon


SYSMON_BURST = """
[spawn(fun() -> L = lists:seq(1, 200000), erlang:garbage_collect(), length(L) end)
 || _ <- lists:seq(1, 40)], ok.
"""


async def test_sysmon_events_off_by_default(otp25_node: ErlangNode, local: LocalNode) -> None:
    node = otp25_node
    box = await attach_events(local, node, long_gc=1, large_heap=100000)
    got = Collected(box)
    node.eval(SYSMON_BURST)
    await got.drain(1.5)
    snap = await agents.collect(local, node.name, {"sections": ["sysmon"]})
    assert snap["sysmon"]["large_heap"] > 0  # the events happened, counted
    assert [e for e in got.events if e.type == "sysmon"] == []


async def test_sysmon_events_forwarded_rate_limited(
    otp25_node: ErlangNode, local: LocalNode
) -> None:
    node = otp25_node
    box = await attach_events(
        local,
        node,
        EventOptions(sysmon_events=True, sysmon_events_rate=5),
        long_gc=1,
        large_heap=100000,
    )
    got = Collected(box)
    node.eval(SYSMON_BURST)
    node.eval(SYSMON_BURST)
    await got.until(lambda e: e.type == "sysmon", count=3)
    await got.drain(2.5)
    sysmon = [e for e in got.events if e.type == "sysmon"]
    snap = await agents.collect(local, node.name, {"sections": ["sysmon"]})
    counted = snap["sysmon"]["large_heap"] + snap["sysmon"]["long_gc"]
    assert counted > 20
    # the bucket holds at most 5 and refills 5/s: well under what happened
    assert 3 <= len(sysmon) <= 5 + 5 * 5
    assert got.dropped().get("sysmon_rate", 0) + len(sysmon) >= counted - 5
    ev = sysmon[0]
    assert ev.level == "warning" and ev.fields["event"] in ("large_heap", "long_gc")
    assert str(ev.fields["pid"]).startswith("<0.") and ev.fields["info"]
