"""The hidden node against real OTP 25, OTP 28 and Elixir nodes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sidecar.erldist.errors import (
    CookieRefused,
    DistTimeout,
    NodeDown,
    NodeNotRegistered,
    RpcError,
)
from sidecar.erldist.limits import DistLimits
from sidecar.erldist.node import Down, LocalNode, charlist
from sidecar.erldist.term import Atom, Charlist, Pid
from tests.conftest import NodeFactory
from tests.support.nodes import ErlangNode, epmd_names

A = Atom


@pytest.fixture
async def local(cookie: str, epmd_port: int) -> AsyncIterator[LocalNode]:
    node = LocalNode("beamside-test@127.0.0.1", cookie, epmd_port=epmd_port)
    yield node
    await node.close()


async def test_rpc_on_every_runtime(any_node: ErlangNode, local: LocalNode) -> None:
    memory = await local.rpc(any_node.name, "erlang", "memory", [])
    kinds = dict(memory)
    assert {"total", "processes", "system", "atom", "binary", "code", "ets"} <= set(kinds)
    assert all(type(v) is int and v >= 0 for v in kinds.values())
    assert kinds["total"] == kinds["processes"] + kinds["system"]
    release = charlist(await local.rpc(any_node.name, "erlang", "system_info", [A("otp_release")]))
    assert release == any_node.eval("erlang:system_info(otp_release).").strip('"')


async def test_hidden_node(any_node: ErlangNode, local: LocalNode, epmd_port: int) -> None:
    assert await local.rpc(any_node.name, "erlang", "node", []) == A(any_node.name)
    # Seen from the node, through its own control channel, not through us.
    assert any_node.eval("nodes().") == "[]"
    assert any_node.eval("nodes(hidden).") == f"['{local.name}']"
    assert local.name.alive not in epmd_names(epmd_port)


async def test_processes_with_50000_extra(otp25_node: ErlangNode, local: LocalNode) -> None:
    otp25_node.eval(
        "Parent = self(), "
        "spawn(fun() -> [spawn(fun() -> receive stop -> ok end end) "
        "|| _ <- lists:seq(1, 50000)], receive never -> ok end end), ok."
    )
    deadline = time.monotonic() + 30
    count = 0
    while time.monotonic() < deadline:
        count = await local.rpc(otp25_node.name, "erlang", "system_info", [A("process_count")])
        if count > 50000:
            break
        await asyncio.sleep(0.2)
    pids = await local.rpc(otp25_node.name, "erlang", "processes", [], timeout=30)
    assert len(pids) > 50000
    assert all(type(p) is Pid and p.node == otp25_node.name for p in pids)
    assert len(set(pids)) == len(pids)


def compile_fixture_module(tmp_path: Path) -> bytes:
    src = tmp_path / "beamside_fixture_mod.erl"
    src.write_text(
        "-module(beamside_fixture_mod).\n"
        "-export([hello/1]).\n"
        "hello(X) -> {hello, X, erlang:system_info(otp_release)}.\n"
    )
    subprocess.run(["erlc", "-o", str(tmp_path), str(src)], check=True)
    return (tmp_path / "beamside_fixture_mod.beam").read_bytes()


async def test_load_binary_and_call(any_node: ErlangNode, local: LocalNode, tmp_path: Path) -> None:
    beam = compile_fixture_module(tmp_path)  # compiled by OTP 25, loaded everywhere
    mod = A("beamside_fixture_mod")
    loaded = await local.rpc(
        any_node.name, "code", "load_binary", [mod, Charlist("beamside_fixture_mod.erl"), beam]
    )
    assert loaded == (A("module"), mod)
    reply = await local.rpc(any_node.name, "beamside_fixture_mod", "hello", [42])
    assert reply[:2] == (A("hello"), 42)
    assert "beamside_fixture_mod" in any_node.eval("code:all_loaded().")


async def test_send_receive_registered(any_node: ErlangNode, local: LocalNode) -> None:
    any_node.eval(
        "register(echo, spawn(fun Loop() -> receive "
        "{From, stop} -> From ! {echo, stopping}; "
        "{From, Msg} -> From ! {echo, Msg}, Loop() end end)), ok."
    )
    box = local.mailbox()
    await local.send_to_name(any_node.name, "echo", (box.pid, {A("k"): [1, 2, b"bin"]}))
    assert await box.receive(timeout=5) == (A("echo"), {A("k"): [1, 2, b"bin"]})
    # Send to the pid directly, found through the node's registry.
    echo = await local.rpc(any_node.name, "erlang", "whereis", [A("echo")])
    assert type(echo) is Pid
    await local.send(echo, (box.pid, A("direct")))
    assert await box.receive(timeout=5) == (A("echo"), A("direct"))


async def test_monitor_and_down(any_node: ErlangNode, local: LocalNode) -> None:
    any_node.eval("register(victim, spawn(fun() -> receive die -> exit(boom) end end)), ok.")
    victim = await local.rpc(any_node.name, "erlang", "whereis", [A("victim")])
    box = local.mailbox()
    ref = await local.monitor(box, victim)
    await local.send(victim, A("die"))
    down = await box.receive(timeout=5)
    assert down == Down(ref, victim, A("boom"))
    # Monitoring a dead pid answers at once with noproc.
    ref2 = await local.monitor(box, victim)
    assert await box.receive(timeout=5) == Down(ref2, victim, A("noproc"))
    # By registered name.
    any_node.eval("register(named, spawn(fun() -> receive die -> ok end end)), ok.")
    ref3 = await local.monitor(box, ("named", any_node.name))
    await local.send_to_name(any_node.name, "named", A("die"))
    got = await box.receive(timeout=5)
    assert isinstance(got, Down) and got.ref == ref3 and got.reason == A("normal")


async def test_node_killed_noticed_fast(node_factory: NodeFactory, local: LocalNode) -> None:
    node = node_factory("otp25")
    down_at: list[float] = []
    local.on_node_down(lambda peer, _exc: down_at.append(time.monotonic()))
    box = local.mailbox()
    await local.rpc(node.name, "erlang", "node", [])
    pid = await local.rpc(node.name, "erlang", "whereis", [A("init")])
    ref = await local.monitor(box, pid)
    killed_at = time.monotonic()
    node.kill()
    down = await box.receive(timeout=5)
    assert down == Down(ref, pid, A("noconnection"))
    assert down_at and down_at[0] - killed_at < 2.0
    assert not local.is_connected(node.name)
    # It is gone from EPMD too, so a reconnect fails with a clear error.
    with pytest.raises(NodeNotRegistered):
        await local.rpc(node.name, "erlang", "node", [], timeout=3)


async def test_pending_rpc_fails_when_node_dies(
    node_factory: NodeFactory, local: LocalNode
) -> None:
    node = node_factory("otp25")
    call = asyncio.create_task(local.rpc(node.name, "timer", "sleep", [30000], timeout=20))
    await asyncio.sleep(0.5)
    started = time.monotonic()
    node.kill()
    with pytest.raises(NodeDown):
        await call
    assert time.monotonic() - started < 2.0


async def test_wrong_cookie(otp25_node: ErlangNode, epmd_port: int) -> None:
    node = LocalNode("beamside-bad@127.0.0.1", "not-the-cookie", epmd_port=epmd_port)
    try:
        with pytest.raises(CookieRefused):
            await node.rpc(otp25_node.name, "erlang", "node", [])
    finally:
        await node.close()
    # The node is unharmed and still accepts the right cookie.
    assert otp25_node.eval("nodes(hidden).") == "[]"


async def test_idle_connection_survives_ticks(node_factory: NodeFactory, local: LocalNode) -> None:
    # The node's net_ticktime (2 s) is much shorter than ours (60 s): we must
    # tick in time for it, and it for us.
    node = node_factory("otp28", extra_args=["-kernel", "net_ticktime", "2"])
    await local.rpc(node.name, "erlang", "node", [])
    conn = local.connection(node.name)
    await asyncio.sleep(5)  # 2.5 x net_ticktime with no traffic
    assert local.connection(node.name) is conn
    assert node.eval("nodes(hidden).") == f"['{local.name}']"
    assert await local.rpc(node.name, "erlang", "node", []) == A(node.name)


async def test_silent_peer_detected_by_our_ticktime(
    node_factory: NodeFactory, cookie: str, epmd_port: int
) -> None:
    node = node_factory("otp25")
    local = LocalNode("beamside-tick@127.0.0.1", cookie, net_ticktime=2, epmd_port=epmd_port)
    lost: list[BaseException | None] = []
    local.on_node_down(lambda _peer, exc: lost.append(exc))
    try:
        await local.rpc(node.name, "erlang", "node", [])
        # SIGSTOP: the socket stays open but the node says nothing any more.
        os.kill(node.os_pid, signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 6
            while not lost and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        finally:
            os.kill(node.os_pid, signal.SIGCONT)
        assert lost and isinstance(lost[0], NodeDown) and "silent" in str(lost[0])
    finally:
        await local.close()


async def test_large_replies_intact(any_node: ErlangNode, cookie: str, epmd_port: int) -> None:
    # 10.5 MB is over the 8 MiB default max_frame: configured up (issue 14).
    limits = DistLimits(max_frame=16 << 20, max_buffered_per_peer=32 << 20)
    local = LocalNode("beamside-large@127.0.0.1", cookie, epmd_port=epmd_port, limits=limits)
    try:
        blob = await local.rpc(any_node.name, "binary", "copy", [b"\x01\x02\xff", 3_500_000])
        assert len(blob) == 10_500_000 and blob[:6] == b"\x01\x02\xff\x01\x02\xff"
        seq = await local.rpc(any_node.name, "lists", "seq", [1, 1_000_000], timeout=30)
        assert len(seq) == 1_000_000 and seq[0] == 1 and seq[-1] == 1_000_000
        assert sum(seq) == 1_000_000 * 1_000_001 // 2
    finally:
        await local.close()


async def test_rpc_errors_and_timeouts(otp25_node: ErlangNode, local: LocalNode) -> None:
    with pytest.raises(RpcError) as info:
        await local.rpc(otp25_node.name, "no_such_module", "f", [])
    assert info.value.reason[0] == A("EXIT")
    with pytest.raises(DistTimeout):
        await local.rpc(otp25_node.name, "timer", "sleep", [3000], timeout=0.3)
    # The connection is still good after a timeout.
    assert await local.rpc(otp25_node.name, "erlang", "node", []) == A(otp25_node.name)


async def test_group_leader_answers_io(any_node: ErlangNode, local: LocalNode) -> None:
    output: list[tuple[str, str]] = []
    local.on_output(lambda peer, text: output.append((peer, text)))
    assert await local.rpc(any_node.name, "io", "put_chars", [b"hello from the node\n"]) == "ok"
    assert (any_node.name, "hello from the node\n") in output
    assert await local.rpc(any_node.name, "io", "format", [b"~p~n", [[1, 2]]]) == "ok"
    assert await local.rpc(any_node.name, "io", "get_line", [b"prompt> "]) == "eof"


async def test_concurrent_callers_share_one_connection(
    otp25_node: ErlangNode, local: LocalNode
) -> None:
    results = await asyncio.gather(
        *(local.rpc(otp25_node.name, "erlang", "abs", [-i]) for i in range(200))
    )
    assert results == list(range(200))
    assert local.peers == [otp25_node.name]
    assert otp25_node.eval("length(nodes(hidden)).") == "1"


async def test_close_is_graceful(otp25_node: ErlangNode, local: LocalNode) -> None:
    await local.rpc(otp25_node.name, "erlang", "node", [])
    await local.close()
    deadline = time.monotonic() + 5
    while otp25_node.eval("nodes(hidden).") != "[]" and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert otp25_node.eval("nodes(hidden).") == "[]"


async def test_short_names(node_factory: NodeFactory, cookie: str, epmd_port: int) -> None:
    node = node_factory("otp25", longnames=False)
    assert "@" in node.name and "." not in node.name.split("@")[1]
    local = LocalNode(f"beamside-short@{node.name.split('@')[1]}", cookie, epmd_port=epmd_port)
    try:
        assert await local.rpc(node.name, "erlang", "node", []) == A(node.name)
    finally:
        await local.close()


async def test_node_sends_to_our_registered_name(any_node: ErlangNode, local: LocalNode) -> None:
    got: list[object] = []
    arrived = asyncio.Event()

    def on_message(message: object) -> None:
        got.append(message)
        arrived.set()

    local.mailbox("beamside_inbox", callback=on_message)
    await local.rpc(any_node.name, "erlang", "node", [])
    # The node sends to {Name, OurNode} on its own, as an agent would.
    any_node.eval(f"{{beamside_inbox, '{local.name}'}} ! {{hello, self(), <<\"payload\">>}}, ok.")
    await asyncio.wait_for(arrived.wait(), timeout=5)
    tag, sender, payload = got[0]  # type: ignore[misc]
    assert tag == A("hello") and type(sender) is Pid and payload == b"payload"
