"""beamside.v1.Nodes, Alarms and Metrics against real nodes (OTP 25, OTP 28, Elixir)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from grpc import aio

from sidecar.alarms.engine import Finding
from sidecar.alarms.model import Severity
from sidecar.control.gen.beamside.v1 import (
    alarms_pb2,
    metrics_pb2,
    nodes_pb2,
    processes_pb2,
)
from sidecar.model import NodeState
from tests.conftest import NodeFactory
from tests.control.conftest import ControlFactory
from tests.support.nodes import ErlangNode
from tests.support.waiting import eventually


async def test_nodes_added_inspected_removed(
    control_factory: ControlFactory,
    otp25_node: ErlangNode,
    node_factory: NodeFactory,
    tmp_path: Path,
) -> None:
    plane = await control_factory([otp25_node], auth=True)
    listed = await plane.call(plane.nodes.ListNodes, nodes_pb2.ListNodesRequest())
    assert [n.name for n in listed.nodes] == [otp25_node.name]

    detail = await plane.call(plane.nodes.GetNode, nodes_pb2.GetNodeRequest(node=otp25_node.name))
    assert detail.node.up and detail.node.otp_release == "25"
    assert {"kernel", "stdlib"} <= {a.name for a in detail.applications}
    assert all(a.version for a in detail.applications)
    assert detail.system_info["otp_release"] == "25"
    assert int(detail.system_info["process_count"]) > 20
    assert detail.release_name == "erlang" and detail.release_source == "default"
    assert list(detail.releases) == []  # no release_handler without sasl
    otp25_node.eval("{ok, _} = application:ensure_all_started(sasl), ok.")

    deadline = time.monotonic() + 10
    while True:  # the release shows at the next collect
        got = await plane.call(plane.nodes.GetNode, nodes_pb2.GetNodeRequest(node=otp25_node.name))
        if got.releases or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert [(r.name, r.version, r.status) for r in got.releases] == [
        ("Erlang/OTP", "25", "permanent")
    ]

    elixir = node_factory("elixir")
    cookie_file = tmp_path / "cookie"
    cookie_file.write_text(elixir.cookie + "\n")
    cookie_file.chmod(0o600)  # erl refuses a cookie others can read
    added = await plane.call(
        plane.nodes.AddNode,
        nodes_pb2.AddNodeRequest(node=elixir.name, cookie_file=str(cookie_file), family="ex"),
        token="operator-token-1234",
    )
    assert added.node.name == elixir.name and added.node.family == "ex"
    await eventually(
        lambda: (s := plane.manager.status(elixir.name)) is not None and s.state is NodeState.UP,
        30,
        "elixir node attached",
    )
    top = await plane.call(
        plane.processes.ListProcesses,
        processes_pb2.ListProcessesRequest(node=elixir.name, sort_by="reductions", limit=5),
    )
    assert len(top.processes) == 5
    elixir_detail = await plane.call(
        plane.nodes.GetNode, nodes_pb2.GetNodeRequest(node=elixir.name)
    )
    assert "elixir" in {a.name for a in elixir_detail.applications}

    again = await plane.status_of(
        plane.nodes.AddNode,
        nodes_pb2.AddNodeRequest(node=elixir.name, cookie_file=str(cookie_file)),
    )
    assert again == grpc.StatusCode.ALREADY_EXISTS
    for bad in (
        nodes_pb2.AddNodeRequest(node="x@127.0.0.1"),  # no cookie source
        nodes_pb2.AddNodeRequest(node="x@127.0.0.1", cookie_file=str(tmp_path / "missing")),
        nodes_pb2.AddNodeRequest(node="x@127.0.0.1", cookie_env="BEAMSIDE_NO_SUCH_VARIABLE"),
        nodes_pb2.AddNodeRequest(node="no-at-sign", cookie_file=str(cookie_file)),
    ):
        assert await plane.status_of(plane.nodes.AddNode, bad) == grpc.StatusCode.INVALID_ARGUMENT

    removed = await plane.call(
        plane.nodes.RemoveNode, nodes_pb2.RemoveNodeRequest(node=elixir.name)
    )
    assert removed.removed and plane.manager.status(elixir.name) is None
    assert (
        await plane.status_of(plane.nodes.RemoveNode, nodes_pb2.RemoveNodeRequest(node=elixir.name))
        == grpc.StatusCode.NOT_FOUND
    )
    actions = [(a.action, a.ok) for a in plane.audits]
    assert ("Nodes/AddNode", True) in actions and ("Nodes/RemoveNode", True) in actions
    assert ("Nodes/AddNode", False) in actions


async def test_down_node_is_unavailable(
    control_factory: ControlFactory, node_factory: NodeFactory
) -> None:
    first, second = node_factory.many(2, "otp25")
    plane = await control_factory([first, second])
    second.kill()
    await eventually(
        lambda: (
            (s := plane.manager.status(second.name)) is not None and s.state is not NodeState.UP
        ),
        15,
        "node seen down",
    )
    status = await plane.status_of(
        plane.processes.ListProcesses, processes_pb2.ListProcessesRequest(node=second.name)
    )
    assert status == grpc.StatusCode.UNAVAILABLE
    ok = await plane.call(
        plane.processes.ListProcesses, processes_pb2.ListProcessesRequest(node=first.name)
    )
    assert ok.processes


async def test_alarms_acknowledge_comment_clear(
    control_factory: ControlFactory, otp25_node: ErlangNode
) -> None:
    plane = await control_factory([otp25_node], auth=True)
    plane.engine.update(
        otp25_node.name,
        node=otp25_node.name,
        family="erlang",
        evaluated=["process_message_queue"],
        findings=[
            Finding(
                "process_message_queue",
                Severity.MAJOR,
                "a queue of 50000 messages",
                "find the process",
                {"pid": "<0.1.0>"},
            )
        ],
    )
    listed = await plane.call(
        plane.alarms.ListAlarms, alarms_pb2.ListAlarmsRequest(min_severity="major")
    )
    (alarm,) = [a for a in listed.alarms if a.alarm == "process_message_queue"]
    assert alarm.severity == "major" and alarm.source == otp25_node.name and alarm.active
    assert alarm.info_json == '{"pid": "<0.1.0>"}'
    assert alarm.raised_at.seconds > time.time() - 60
    none = await plane.call(
        plane.alarms.ListAlarms, alarms_pb2.ListAlarmsRequest(min_severity="critical")
    )
    assert "process_message_queue" not in {a.alarm for a in none.alarms}

    # One name: a listed alarm's `alarm` and `source` are what the actions take.
    assert {f.name for f in alarms_pb2.Alarm.DESCRIPTOR.fields} >= {"alarm", "source"}
    assert "id" not in {f.name for f in alarms_pb2.Alarm.DESCRIPTOR.fields}
    key = alarms_pb2.AlarmActionRequest(alarm=alarm.alarm, source=alarm.source)
    viewer = await plane.status_of(plane.alarms.Acknowledge, key, token="viewer-token-1234")
    assert viewer == grpc.StatusCode.PERMISSION_DENIED
    acked = await plane.call(plane.alarms.Acknowledge, key, token="operator-token-1234")
    assert acked.acknowledged_by.startswith("token:")
    commented = await plane.call(
        plane.alarms.Comment,
        alarms_pb2.CommentRequest(
            alarm="process_message_queue", source=otp25_node.name, text="draining it"
        ),
    )
    assert [(c.who, c.text) for c in commented.comments] == [("alice", "draining it")]
    cleared = await plane.call(plane.alarms.Clear, key)
    assert not cleared.active
    assert all(a.id != "process_message_queue" for a in plane.engine.active())
    assert await plane.status_of(plane.alarms.Clear, key) == grpc.StatusCode.NOT_FOUND
    assert (
        await plane.status_of(
            plane.alarms.ListAlarms, alarms_pb2.ListAlarmsRequest(min_severity="loud")
        )
        == grpc.StatusCode.INVALID_ARGUMENT
    )


async def test_live_stream(control_factory: ControlFactory, otp28_node: ErlangNode) -> None:
    plane = await control_factory([otp28_node])
    started = time.monotonic()
    updates = []
    call = plane.metrics.Live(
        metrics_pb2.LiveRequest(
            node=otp28_node.name, metrics=["process_count", "io", "memory_total"], count=3
        ),
        timeout=30,
    )
    async for update in call:
        updates.append(update)
    took = time.monotonic() - started
    assert len(updates) == 3 and 1.5 < took < 6  # intervals.live is 1 s
    for update in updates:
        assert update.node == otp28_node.name
        assert update.values["process_count"] > 10
        assert update.values["io.input"] >= 0 and update.values["memory_total"] > 1e6
    assert updates[0].at.ToNanoseconds() < updates[2].at.ToNanoseconds()

    bad = plane.metrics.Live(metrics_pb2.LiveRequest(node=otp28_node.name, metrics=["processes"]))
    try:
        async for _ in bad:
            raise AssertionError("a stream of an unknown metric")
    except aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT and "processes" in exc.details()

    # A stream without count runs until the client cancels it.
    endless = plane.metrics.Live(metrics_pb2.LiveRequest(node=otp28_node.name))
    first = await asyncio.wait_for(endless.read(), 10)
    assert first.values["run_queue"] >= 0
    endless.cancel()


async def test_live_top(control_factory: ControlFactory, otp25_node: ErlangNode) -> None:
    """Processes/Top: the top processes again every interval, each update with
    what each one did since the previous one; ends after ``count``."""
    plane = await control_factory([otp25_node])
    otp25_node.eval(
        "register(bs_top_busy, spawn(fun F() -> lists:sum(lists:seq(1, 20000)),"
        " timer:sleep(5), F() end)), ok."
    )
    started = time.monotonic()
    call = plane.processes.Top(
        processes_pb2.TopRequest(
            node=otp25_node.name, sort_by="reductions", limit=10, interval_ms=1000, count=3
        ),
        timeout=60,
    )
    updates = [u async for u in call]
    took = time.monotonic() - started
    assert [u.seq for u in updates] == [1, 2, 3] and 1.5 < took < 20
    first, second = updates[0], updates[1]
    assert first.process_count > 10 and len(first.processes) == 10
    assert not any(e.new or e.reductions_change for e in first.processes)  # nothing before
    (busy,) = [e for e in second.processes if e.process.registered_name == "bs_top_busy"]
    assert busy.reductions_change > 10_000 and not busy.new
    assert busy.process.reductions >= busy.reductions_change
    otp25_node.eval("exit(whereis(bs_top_busy), kill), ok.")

    bad = plane.processes.Top(processes_pb2.TopRequest(node=otp25_node.name, interval_ms=10))
    try:
        async for _ in bad:
            raise AssertionError("an update every 10 ms")
    except aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT and "interval_ms" in exc.details()


async def test_application_tree(control_factory: ControlFactory, otp25_node: ErlangNode) -> None:
    """Nodes/ApplicationTree: applications with their supervision trees, as
    observer shows them: ids, types, strategies, registered names; bounded."""
    plane = await control_factory([otp25_node])

    async def tree(**kw: object) -> nodes_pb2.ApplicationTreeResponse:
        request = nodes_pb2.ApplicationTreeRequest(node=otp25_node.name, **kw)
        return await plane.call(plane.nodes.ApplicationTree, request)

    (kernel,) = (await tree(application="kernel")).applications
    assert kernel.name == "kernel" and kernel.version and kernel.master.startswith("<")
    top = kernel.tree
    assert top.registered_name == "kernel_sup" and top.strategy == "one_for_all"
    assert top.child_count == len(top.children) > 3 and not top.truncated
    children = {c.id: c for c in top.children}
    safe = children["kernel_safe_sup"]
    assert safe.type == "supervisor" and safe.strategy == "one_for_one"
    assert safe.registered_name == "kernel_safe_sup" and safe.pid.startswith("<")
    config = children["kernel_config"]
    assert config.type == "worker" and config.modules == ["kernel_config"]

    bounded = (await tree(application="kernel", max_children=2)).applications[0].tree
    assert bounded.truncated and not bounded.children and bounded.child_count > 2
    shallow = (await tree(application="kernel", max_depth=1)).applications[0].tree
    (safe_sup,) = [c for c in shallow.children if c.id == "kernel_safe_sup"]
    assert safe_sup.truncated and not safe_sup.children  # below the depth: counted only

    every = {a.name: a for a in (await tree()).applications}
    assert {"kernel", "stdlib"} <= set(every)
    assert every["stdlib"].master == "" and not every["stdlib"].HasField("tree")  # a library

    with pytest.raises(aio.AioRpcError) as raised:
        await tree(application="no_such_app")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
