"""Trace/Start against real nodes: limits stop the trace and leave no trace
flags, a cluster trace keeps its global budget, the tracer's backlog and
mailbox bounds, message traces, bad match specs, the lines in Loki, and no
tracer left after a sidecar SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
import pytest
import yaml
from grpc import aio

from sidecar.control.gen.beamside.v1 import nodes_pb2, trace_pb2, trace_pb2_grpc
from sidecar.erldist.node import LocalNode
from sidecar.erldist.term import Atom
from tests.conftest import NodeFactory
from tests.control.conftest import ControlFactory, ControlPlane
from tests.support.daemon_proc import BeamsideProcess
from tests.support.loki_double import LokiDouble
from tests.support.nodes import ErlangNode, Runtime, free_port
from tests.support.waiting import wait_for

LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{6} <\d+\.\d+\.\d+> ")
# trace_busy:f/1 (compiled here by OTP 25's erlc: the bundled OTP 28 has no
# compiler) and a process calling it about a thousand times a second.
BUSY_SRC = "-module(trace_busy).\n-export([f/1]).\nf(X) -> X + 1.\n"
BUSY = (
    'begin {{module, trace_busy}} = code:load_abs("{beam}"),'
    " L = fun Loop(N) -> _ = trace_busy:f(N), receive after 1 -> ok end, Loop(N + 1) end,"
    " pid_to_list(spawn(fun() -> L(0) end)) end."
)
TRACED = "{trace_busy, f, 1}"
# beamside_ops_trace:start/2's spec of every call to trace_busy:f/1, and
# limits wide enough that only the one a test is about stops the trace
BUSY_CALLS = {
    Atom("type"): Atom("calls"),
    Atom("module"): b"trace_busy",
    Atom("function"): b"f",
    Atom("arity"): 1,
    Atom("match_spec"): b"",
    Atom("return_trace"): False,
}
WIDE_LIMITS = {
    Atom("count"): 100_000,
    Atom("rate"): (100_000, 1000),
    Atom("duration_ms"): 30_000,
}


@pytest.fixture(scope="module")
def busy_beam(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The path (without .beam) of trace_busy, for code:load_abs/1."""
    out = tmp_path_factory.mktemp("busy")
    (out / "trace_busy.erl").write_text(BUSY_SRC)
    subprocess.run(["erlc", "-o", str(out), str(out / "trace_busy.erl")], check=True)
    return str(out / "trace_busy")


async def start_busy(node: ErlangNode, beam: str) -> str:
    return (await node.aeval(BUSY.format(beam=beam))).strip('"')


async def run(plane: ControlPlane, **fields: object) -> list[trace_pb2.TraceMessage]:
    request = trace_pb2.StartTraceRequest(**fields)  # type: ignore[arg-type]
    stream = trace_pb2_grpc.TraceStub(plane.channel).Start(request, timeout=60)
    return [message async for message in stream]


def events(messages: Sequence[trace_pb2.TraceMessage]) -> list[trace_pb2.TraceEvent]:
    return [m.event for m in messages if m.WhichOneof("item") == "event"]


async def ops_trace(
    local: LocalNode, node: str, function: str, *args: object, timeout: float = 10
) -> dict[Atom, object]:
    """``beamside_ops_trace:Function(Args...)``'s ``V`` of ``{ok, V}``, a map."""
    ok, reply = await local.rpc(node, "beamside_ops_trace", function, list(args), timeout=timeout)
    assert ok == Atom("ok"), reply
    assert isinstance(reply, dict)
    return reply


async def no_residue(
    node: ErlangNode, tracers: Sequence[str], traced: str | None, pid: str
) -> None:
    """Nothing of the trace left (within 15 s: a cancelled call's trace is
    stopped in the background): the pattern, the process's flags, the tracer."""
    alive = " orelse ".join(f'is_process_alive(list_to_pid("{t}"))' for t in tracers)
    pattern = f"erlang:trace_info({traced}, traced)" if traced is not None else "{traced,false}"
    check = f'{{{pattern}, erlang:trace_info(list_to_pid("{pid}"), flags), {alive}}}.'
    for _ in range(150):
        left = await node.aeval(check)
        if left == "{{traced,false},{flags,[]},false}":
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"left on {node.name}: {left}")


@pytest.mark.parametrize("runtime", ["otp25", "otp28", "elixir"])
async def test_busy_function_tiny_rate_stops_by_itself(
    runtime: Runtime,
    node_factory: NodeFactory,
    control_factory: ControlFactory,
    busy_beam: str,
) -> None:
    node = node_factory(runtime)
    plane = await control_factory([node])
    busy = await start_busy(node, busy_beam)
    # another tool's trace of another process: left as it was
    other = await node.aeval(
        "begin T = spawn(fun() -> receive stop -> ok end end),"
        " V = spawn(fun() -> receive stop -> ok end end),"
        " erlang:trace(V, true, [call, send, {tracer, T}]), pid_to_list(V) end."
    )
    other_flags = f"erlang:trace_info(list_to_pid({other}), flags)."
    messages = await run(
        plane,
        node=node.name,
        module="trace_busy",
        function="f",
        arity=1,
        return_trace=True,
        rate_events=5,
        rate_ms=1000,
        max_events_per_node=1000,
    )
    started = messages[0].started
    assert started.node == node.name and started.matched == 1 and started.tracer
    lines = events(messages)
    # recon_trace's {5, 1000}: the sixth event within the second stops it
    assert len(lines) == 5, messages
    assert [e.type for e in lines] == ["call", "return_from"] * 2 + ["call"], lines
    assert re.match(LINE.pattern + r"trace_busy:f\(\d+\)$", lines[0].text), lines[0]
    assert re.match(LINE.pattern + r"trace_busy:f/1 --> \d+$", lines[1].text), lines[1]
    assert lines[0].pid == busy and lines[0].node == node.name and lines[0].time_unix_nano > 0
    (ended,) = messages[-1].end.nodes
    assert (ended.node, ended.reason, ended.events) == (node.name, "rate", 5)
    assert messages[-1].end.events == 5 and not messages[-1].end.budget_reached
    await no_residue(node, [started.tracer], TRACED, busy)
    assert await node.aeval(other_flags) == "{flags,[call,send]}"
    (start, stop) = [a for a in plane.audits if a.action.startswith("Trace/")]
    assert (start.action, start.ok, start.details["nodes"]) == ("Trace/Start", True, [node.name])
    assert stop.action == "Trace/Stop" and stop.details["nodes"] == {node.name: "rate"}


async def test_family_trace_keeps_the_global_budget(
    node_factory: NodeFactory, control_factory: ControlFactory, busy_beam: str
) -> None:
    members = node_factory.many(3, "otp25")
    plane = await control_factory(members, family="web")
    busy = {n.name: await start_busy(n, busy_beam) for n in members}
    messages = await run(
        plane,
        family="web",
        module="trace_busy",
        function="f",
        rate_events=10000,
        max_events_per_node=100,
        budget=150,
    )
    started = {m.started.node: m.started.tracer for m in messages if m.started.node}
    assert set(started) == set(busy)
    end = messages[-1].end
    streamed = events(messages)
    assert len(streamed) == end.events == 150 and end.budget_reached
    assert sum(n.events for n in end.nodes) == 150
    assert {n.node for n in end.nodes} == set(busy)
    # each node counted min(per node, budget) = 100 at most: two nodes at least
    assert len({e.node for e in streamed}) >= 2
    assert all(n.reason in ("count", "budget") for n in end.nodes), end
    # every node, a budget of 10
    every = await run(plane, all_nodes=True, module="trace_busy", rate_events=10000, budget=10)
    assert len(events(every)) == every[-1].end.events == 10 and every[-1].end.budget_reached
    for member in members:
        await no_residue(member, [started[member.name]], TRACED, busy[member.name])


async def test_caller_going_or_a_detach_ends_the_trace(
    otp25_node: ErlangNode, control_factory: ControlFactory, busy_beam: str
) -> None:
    """A cancelled call stops the trace on the node at once; so does removing
    the node (the detach ends beamside_sysmon, which the tracer watches)."""
    plane = await control_factory([otp25_node])
    busy = await start_busy(otp25_node, busy_beam)
    long = trace_pb2.StartTraceRequest(
        node=otp25_node.name,
        module="trace_busy",
        rate_events=100000,
        max_events_per_node=100000,
        budget=100000,
        max_duration_ms=600000,
    )
    call = trace_pb2_grpc.TraceStub(plane.channel).Start(long, timeout=60)
    tracer = (await call.read()).started.tracer
    assert (await call.read()).event.text  # running
    call.cancel()
    await no_residue(otp25_node, [tracer], TRACED, busy)

    call = trace_pb2_grpc.TraceStub(plane.channel).Start(long, timeout=60)
    tracer = (await call.read()).started.tracer
    assert await otp25_node.aeval(f"erlang:trace_info({TRACED}, traced).") == "{traced,local}"
    await plane.call(plane.nodes.RemoveNode, nodes_pb2.RemoveNodeRequest(node=otp25_node.name))
    await no_residue(otp25_node, [tracer], TRACED, busy)
    last = await call.read()
    while last.WhichOneof("item") != "end":
        last = await call.read()
    (ended,) = last.end.nodes
    assert ended.reason in ("node_down", "detached", "caller_gone"), ended


async def test_messages_of_a_registered_process(
    otp28_node: ErlangNode, control_factory: ControlFactory
) -> None:
    plane = await control_factory([otp28_node])
    echo = await otp28_node.aeval(
        "begin E = spawn(fun Loop() -> receive {From, M} -> From ! {echo, M}, Loop() end end),"
        " register(trace_echo, E), spawn(fun Ping() -> trace_echo ! {self(), ping},"
        " receive _ -> ok end, timer:sleep(20), Ping() end), pid_to_list(E) end."
    )
    messages = await run(
        plane,
        node=otp28_node.name,
        process="trace_echo",
        send=True,
        receive=True,
        max_events_per_node=4,
    )
    lines = events(messages)
    assert len(lines) == 4 and {e.type for e in lines} == {"send", "receive"}
    received = next(e for e in lines if e.type == "receive")
    sent = next(e for e in lines if e.type == "send")
    assert re.match(LINE.pattern + r"< \{<\d+\.\d+\.\d+>,ping\}$", received.text), received
    assert re.match(LINE.pattern + r"> <\d+\.\d+\.\d+>: \{echo,ping\}$", sent.text), sent
    assert messages[-1].end.nodes[0].reason == "count"
    tracer = messages[0].started.tracer
    await no_residue(otp28_node, [tracer], None, echo.strip('"'))
    # a quiet process: the trace ends at its maximum duration
    quiet = await otp28_node.aeval(
        "begin Q = spawn(fun() -> receive stop -> ok end end),"
        " register(trace_quiet, Q), pid_to_list(Q) end."
    )
    started = time.monotonic()
    messages = await run(
        plane, node=otp28_node.name, process="trace_quiet", receive=True, max_duration_ms=500
    )
    assert 0.5 <= time.monotonic() - started < 5
    assert not events(messages) and messages[-1].end.nodes[0].reason == "duration"
    await no_residue(otp28_node, [messages[0].started.tracer], None, quiet.strip('"'))


async def test_backlog_and_mailbox_stop_the_trace(
    otp25_node: ErlangNode, control_factory: ControlFactory, busy_beam: str
) -> None:
    """The tracer's own bounds, through the agent's API: events nobody polls
    stop the trace at ``buffer`` (backlog) instead of queueing, and a
    mailbox past ``max_queue`` (the tracer suspended while the calls go on)
    stops it (mailbox); each time the events it kept are polled, and nothing
    is left once the last poll took them."""
    node = otp25_node
    plane = await control_factory([node])
    busy = await start_busy(node, busy_beam)
    local = plane.manager.local

    async def agent(function: str, *args: object) -> dict[Atom, object]:
        return await ops_trace(local, node.name, function, *args)

    async def stopped(tracer: bytes) -> dict[Atom, object]:
        """The first poll after the trace stopped (the calls go on: ~1 a ms)."""
        for _ in range(50):
            await asyncio.sleep(0.1)
            state = await agent("poll", tracer, 10_000)
            if state[Atom("state")] != Atom("running"):
                return state
        raise AssertionError(f"the trace is still running: {state}")

    # backlog: 10 events kept, the 11th stops the trace
    started = await agent("start", BUSY_CALLS, {**WIDE_LIMITS, Atom("buffer"): 10})
    tracer = started[Atom("tracer")]
    assert isinstance(tracer, bytes)
    await asyncio.sleep(0.5)
    state = await agent("poll", tracer, 10_000)
    assert state[Atom("state")] == Atom("backlog"), state
    assert len(state[Atom("events")]) == 10 == state[Atom("total")]  # type: ignore[arg-type]
    await no_residue(node, [tracer.decode()], TRACED, busy)

    # mailbox: the tracer suspended, the trace messages pile up past 10
    started = await agent("start", BUSY_CALLS, {**WIDE_LIMITS, Atom("max_queue"): 10})
    tracer = started[Atom("tracer")]
    assert isinstance(tracer, bytes)
    pid = f'list_to_pid("{tracer.decode()}")'
    # one eval: a suspension ends with the process that asked for it
    queued = await node.aeval(
        f"begin P = {pid}, true = erlang:suspend_process(P), timer:sleep(300),"
        " {message_queue_len, Q} = process_info(P, message_queue_len),"
        " true = erlang:resume_process(P), Q end."
    )
    assert int(queued) > 10
    state = await stopped(tracer)
    assert state[Atom("state")] == Atom("mailbox"), state
    await no_residue(node, [tracer.decode()], TRACED, busy)


async def test_a_busy_connection_to_beamside_stops_the_trace(
    otp25_node: ErlangNode, control_factory: ControlFactory, busy_beam: str
) -> None:
    """``dist_busy``: when a poll finds the node's connection to beamside with
    ``dist_buf_busy_limit`` queued, the tracer stops and drops what it kept
    rather than add it to that queue. Here beamside stops reading from the
    node while the node sends it megabytes until the connection stays busy
    (sends with ``nosuspend`` refused for half a second: the kernel's
    buffers are full and the port's queue holds the rest); the poll sent
    meanwhile is answered once beamside reads again."""
    node = otp25_node
    plane = await control_factory([node])
    busy = await start_busy(node, busy_beam)
    local = plane.manager.local
    limits = {**WIDE_LIMITS, Atom("buffer"): 10_000}
    tracer = (await ops_trace(local, node.name, "start", BUSY_CALLS, limits))[Atom("tracer")]
    assert isinstance(tracer, bytes)
    connection = local.connection(node.name)
    assert connection is not None
    transport = connection._writer.transport
    transport.pause_reading()
    try:
        # megabytes to a name nobody has on beamside's node until the
        # connection stays busy (the kernel's buffers full): refused for 0.5 s
        sent = await node.aeval(
            f"begin B = binary:copy(<<0>>, 1048576), Dest = {{nobody_here, '{local.name}'}},"
            " F = fun Loop(N, _) when N >= 256 -> N;"
            "          Loop(N, 10) -> N;"
            "          Loop(N, Refused) -> case erlang:send(Dest, B, [nosuspend]) of"
            "                               nosuspend -> timer:sleep(50), Loop(N, Refused + 1);"
            "                               _ -> Loop(N + 1, 0) end end,"
            " F(0, 0) end."
        )
        assert 0 < int(sent) < 256, sent  # busy before 256 MB
        poll = asyncio.ensure_future(
            ops_trace(local, node.name, "poll", tracer, 10_000, timeout=60)
        )
        await asyncio.sleep(1.0)  # the poll reaches the tracer (our writes still go out)
    finally:
        transport.resume_reading()
    state = await poll
    assert state[Atom("state")] == Atom("dist_busy"), state
    assert state[Atom("events")] == []  # what it kept was dropped, not sent
    await no_residue(node, [tracer.decode()], TRACED, busy)


async def test_bad_requests_are_refused_clearly(
    otp25_node: ErlangNode, control_factory: ControlFactory
) -> None:
    plane = await control_factory([otp25_node])
    node = otp25_node.name
    cases: list[tuple[dict[str, object], grpc.StatusCode, str]] = [
        (
            {"module": "lists", "match_spec": "[{'_', [], ["},
            grpc.StatusCode.INVALID_ARGUMENT,
            "match_spec: syntax error",
        ),
        (
            {"module": "lists", "match_spec": "[{'_', [{no_such_guard}], []}]"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "match_spec: ",
        ),
        (
            {"module": "lists", "match_spec": "{x}"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "a list of {Head, Guards, Body}",
        ),
        ({"module": "lists", "send": True}, grpc.StatusCode.INVALID_ARGUMENT, "send and receive"),
        ({"process": "code_server"}, grpc.StatusCode.INVALID_ARGUMENT, "send, receive or both"),
        ({"module": "lists", "rate_ms": 5}, grpc.StatusCode.INVALID_ARGUMENT, "rate_ms must be"),
        ({"module": "lists", "budget": 100001}, grpc.StatusCode.INVALID_ARGUMENT, "budget must"),
        ({"module": "no_such_module_here"}, grpc.StatusCode.NOT_FOUND, "no module"),
        (
            {"module": "lists", "function": "no_such_fun_x"},
            grpc.StatusCode.NOT_FOUND,
            "no function",
        ),
    ]
    for fields, code, words in cases:
        with pytest.raises(aio.AioRpcError) as raised:
            await run(plane, node=node, **fields)
        assert raised.value.code() == code and words in (raised.value.details() or ""), fields
    with pytest.raises(aio.AioRpcError) as raised:
        await run(plane, module="lists")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "exactly one target" in (raised.value.details() or "")
    # a refused start is audited, and nothing was left on the node
    assert all(not a.ok for a in plane.audits if a.action == "Trace/Start")
    assert await otp25_node.aeval("erlang:trace_info({lists, seq, 2}, traced).") == (
        "{traced,false}"
    )


def test_lines_reach_loki_and_sigkill_leaves_no_tracer(
    node_factory: NodeFactory,
    cookie: str,
    tmp_path: Path,
    loki: LokiDouble,
    beamside_procs: list[BeamsideProcess],
    busy_beam: str,
) -> None:
    node = node_factory("otp25")
    busy = node.eval(BUSY.format(beam=busy_beam)).strip('"')
    cookie_file = tmp_path / "cookie"
    cookie_file.write_text(cookie)
    cookie_file.chmod(0o600)
    port, grpc_port = free_port(), free_port()
    config = {
        "cluster": "e2e",
        "node_name": f"beamside-trace-{os.getpid()}@127.0.0.1",
        "targets": [{"nodes": [node.name], "cookie_file": str(cookie_file), "family": "app"}],
        "intervals": {"metrics": "1s"},
        "http": {"listen": f"127.0.0.1:{port}"},
        "grpc": {"listen": f"127.0.0.1:{grpc_port}"},
        "loki": {"url": loki.url, "batch_wait": "200ms"},
    }
    path = tmp_path / "beamside.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = BeamsideProcess(path, port, tmp_path)
    beamside_procs.append(proc)
    proc.start()
    proc.wait_until(lambda: proc.value("beamside_node_up", node=node.name) == 1, 30, "up")
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = trace_pb2_grpc.TraceStub(channel)
        request = trace_pb2.StartTraceRequest(
            node=node.name,
            module="trace_busy",
            function="f",
            max_events_per_node=20,
            rate_events=1000,
        )
        done = list(stub.Start(request, timeout=30))
        assert done[-1].end.events == 20
        streamed = {m.event.text for m in done if m.WhichOneof("item") == "event"}

        def in_loki() -> list[dict[str, object]]:
            found = loki.entries(f'{{kind="trace", node="{node.name}"}}')
            return found if len(found) == 20 else []

        entries = wait_for(in_loki, 15, "20 trace lines in Loki")
        labels = entries[0].label_dict
        assert (
            labels["family"] == "app" and labels["cluster"] == "e2e" and labels["level"] == "info"
        )
        lines = [json.loads(e.line) for e in entries]
        assert {line["message"] for line in lines} == streamed
        assert all(line["type"] == "call" and line["pid"] == busy for line in lines)

        # The audit trail has the start and the end.
        def audited() -> set[str]:
            actions = {json.loads(e.line).get("action") for e in loki.entries('{kind="audit"}')}
            return actions if {"Trace/Start", "Trace/Stop"} <= actions else set()

        wait_for(audited, 15, "the start and the end of the trace audited in Loki")

        # A trace that would run a minute: the sidecar dies under it.
        long_request = trace_pb2.StartTraceRequest(
            node=node.name,
            module="trace_busy",
            function="f",
            rate_events=100000,
            max_events_per_node=100000,
            budget=100000,
            max_duration_ms=60000,
        )
        stream = stub.Start(long_request, timeout=60)
        tracer = next(stream).started.tracer
        assert tracer and node.eval(f'is_process_alive(list_to_pid("{tracer}")).') == "true"
        assert node.eval(f"erlang:trace_info({TRACED}, traced).") == "{traced,local}"
        proc.kill()
        wait_for(
            lambda: node.eval(f'is_process_alive(list_to_pid("{tracer}")).') == "false",
            15,
            "the tracer gone after SIGKILL",
        )
        assert node.eval(f"erlang:trace_info({TRACED}, traced).") == "{traced,false}"
        assert node.eval(f'erlang:trace_info(list_to_pid("{busy}"), flags).') == "{flags,[]}"
