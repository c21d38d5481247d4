"""The control plane driven by grpcurl (reflection only, no .proto files),
against beamside attached to a real OTP 25 node: the operator stories of the
README, the auth matrix and the status codes of bad input."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sidecar.alarms.engine import Finding
from sidecar.alarms.model import Severity
from sidecar.model import NodeState
from tests.conftest import NodeFactory
from tests.control.conftest import ControlFactory, ControlPlane
from tests.control.test_ports import hold_ports
from tests.support.nodes import ErlangNode
from tests.support.waiting import eventually

FLOOD = (
    "P = spawn(fun() -> receive stop -> ok end end),"
    " register(flooded, P),"
    " [P ! {msg, I} || I <- lists:seq(1, 100000)],"
    " pid_to_list(P)."
)


@pytest.fixture
async def plane(control_factory: ControlFactory, otp25_node: ErlangNode) -> ControlPlane:
    return await control_factory([otp25_node], family="shop", auth=True)


async def test_reflection_health_and_nodes(plane: ControlPlane, otp25_node: ErlangNode) -> None:
    listed = await plane.grpcurl("list")
    assert listed.status == "OK", listed.stderr
    services = set(listed.stdout.split())
    assert {
        "beamside.v1.Nodes",
        "beamside.v1.Processes",
        "beamside.v1.Tables",
        "beamside.v1.Code",
        "beamside.v1.Config",
        "beamside.v1.Eval",
        "beamside.v1.Alarms",
        "beamside.v1.Metrics",
        "beamside.v1.Ports",
        "grpc.health.v1.Health",
    } <= services

    described = await plane.grpcurl("describe beamside.v1.Processes")
    assert "rpc GarbageCollect" in described.stdout

    health = await plane.grpcurl("grpc.health.v1.Health/Check", {"service": ""}, token=None)
    assert health.json == {"status": "SERVING"}
    health = await plane.grpcurl(
        "grpc.health.v1.Health/Check", {"service": "beamside.v1.Processes"}, token=None
    )
    assert health.json == {"status": "SERVING"}

    nodes = await plane.grpcurl("beamside.v1.Nodes/ListNodes", {}, token="viewer-token-1234")
    assert nodes.status == "OK", nodes.stderr
    (node,) = nodes.json["nodes"]
    assert node["name"] == otp25_node.name
    assert node["family"] == "shop" and node["up"] is True
    assert node.get("otpRelease") == "25", node
    assert node.get("uptimeSeconds", 0) > 0, node


async def test_longest_queue_inspect_and_gc(plane: ControlPlane, otp25_node: ErlangNode) -> None:
    pid = (await otp25_node.aeval(FLOOD)).strip('"')
    found = await plane.grpcurl(
        "beamside.v1.Processes/ListProcesses",
        {"node": otp25_node.name, "sortBy": "message_queue_len", "limit": 5},
        token="viewer-token-1234",
    )
    assert found.status == "OK", found.stderr
    top = found.json["processes"]
    assert len(top) == 5
    assert top[0]["pid"] == pid and top[0]["registeredName"] == "flooded"
    assert top[0]["messageQueueLen"] == "100000"  # uint64: a JSON string
    assert int(top[1].get("messageQueueLen", "0")) < 100000

    detail = await plane.grpcurl(
        "beamside.v1.Processes/GetProcess",
        {"node": otp25_node.name, "pid": pid, "messages": 3},
        token="viewer-token-1234",
    )
    assert detail.status == "OK", detail.stderr
    info = detail.json
    assert info["messages"] == ["{msg,1}", "{msg,2}", "{msg,3}"]
    assert info["messageQueueLen"] == "100000"
    assert "not an OTP process" in info["stateError"]

    gc = await plane.grpcurl(
        "beamside.v1.Processes/GarbageCollect",
        {"node": otp25_node.name, "pid": "flooded"},
        token="operator-token-1234",
    )
    assert gc.status == "OK", gc.stderr
    assert gc.json["collected"] == "1"
    (audit,) = [a for a in plane.audits if a.action == "Processes/GarbageCollect"]
    assert audit.ok and audit.node == otp25_node.name and audit.role == "operator"
    assert audit.details["request"]["pid"] == "flooded"


async def test_which_process_holds_that_connection(
    plane: ControlPlane, otp25_node: ErlangNode
) -> None:
    """The README's ListPorts line, as a viewer: our own connection to a
    listener on the node, found by its peer (our address) with its owner."""
    listen, *_ = await hold_ports(otp25_node)
    _reader, writer = await asyncio.open_connection("127.0.0.1", listen)
    try:
        await otp25_node.aeval("beamside_port_holder ! accept, ok.")
        ours = f"127.0.0.1:{writer.get_extra_info('sockname')[1]}"
        found = await plane.grpcurl(
            "beamside.v1.Ports/ListPorts",
            {"node": otp25_node.name, "kind": "tcp", "sortBy": "output", "limit": 20},
            token="viewer-token-1234",
        )
        assert found.status == "OK", found.stderr
        (conn,) = [p for p in found.json["ports"] if p.get("remoteAddress") == ours]
        assert conn["ownerName"] == "beamside_port_holder" and conn["state"] == "connected"
        assert conn["localAddress"] == f"127.0.0.1:{listen}"
        assert {t["type"] for t in found.json["types"]} >= {"tcp_inet", "udp_inet", "socket"}
    finally:
        writer.close()
        await otp25_node.aeval("beamside_port_holder ! stop, ok.")


async def test_auth_matrix(plane: ControlPlane, otp25_node: ErlangNode) -> None:
    gc = {"node": otp25_node.name, "pid": "init"}
    no_token = await plane.grpcurl("beamside.v1.Processes/GarbageCollect", gc, token=None)
    assert no_token.status == "Unauthenticated"
    unknown = await plane.grpcurl("beamside.v1.Nodes/ListNodes", {}, token="not-a-token-at-all")
    assert unknown.status == "Unauthenticated"
    stream = await plane.grpcurl(
        "beamside.v1.Metrics/Live", {"node": otp25_node.name, "count": 1}, token=None
    )
    assert stream.status == "Unauthenticated"
    live = await plane.grpcurl(
        "beamside.v1.Metrics/Live",
        {"node": otp25_node.name, "count": 1, "metrics": ["process_count"]},
        token="viewer-token-1234",
    )
    assert live.status == "OK" and live.json["values"]["process_count"] > 10
    viewer = await plane.grpcurl(
        "beamside.v1.Processes/GarbageCollect", gc, token="viewer-token-1234"
    )
    assert viewer.status == "PermissionDenied"
    assert "operator role" in viewer.stderr
    expr = {"node": otp25_node.name, "expression": "1 + 1."}
    operator = await plane.grpcurl("beamside.v1.Eval/Evaluate", expr, token="operator-token-1234")
    assert operator.status == "PermissionDenied"
    # admin may, but eval is off unless configured
    admin = await plane.grpcurl("beamside.v1.Eval/Evaluate", expr, token="admin-token-1234")
    assert admin.status == "FailedPrecondition"
    assert "eval_enabled" in admin.stderr
    # Refusals of mutating calls are audited too, the expression included.
    refused = [a for a in plane.audits if not a.ok]
    assert [a.action for a in refused] == [
        "Processes/GarbageCollect",
        "Processes/GarbageCollect",
        "Eval/Evaluate",
        "Eval/Evaluate",
    ]
    assert refused[0].who == "unauthenticated"
    assert refused[1].who.startswith("token:") and refused[1].role == "viewer"
    assert refused[3].who == "alice" and refused[3].details["request"]["expression"] == "1 + 1."


async def test_bad_input_status_codes(plane: ControlPlane, otp25_node: ErlangNode) -> None:
    node = otp25_node.name
    cases = [
        ("beamside.v1.Processes/GetProcess", {"node": node, "pid": "<0.12"}, "InvalidArgument"),
        (
            "beamside.v1.Processes/GetProcess",
            {"node": node, "pid": "<0.99999.0>"},
            "InvalidArgument",
        ),
        (
            "beamside.v1.Processes/GetProcess",
            {"node": node, "pid": "Not An Atom"},
            "InvalidArgument",
        ),
        ("beamside.v1.Processes/GetProcess", {"node": node, "pid": "<0.32000.0>"}, "NotFound"),
        (
            "beamside.v1.Processes/ListProcesses",
            {"node": node, "limit": 4000000000},
            "InvalidArgument",
        ),
        ("beamside.v1.Processes/ListProcesses", {"node": node, "sortBy": "cpu"}, "InvalidArgument"),
        ("beamside.v1.Processes/ListProcesses", {"node": "nobody@127.0.0.1"}, "NotFound"),
        ("beamside.v1.Processes/ListProcesses", {"node": "not a node"}, "InvalidArgument"),
        ("beamside.v1.Processes/ListProcesses", {}, "InvalidArgument"),
        ("beamside.v1.Tables/ReadTable", {"node": node, "table": "no_such_table_xyz"}, "NotFound"),
        (
            "beamside.v1.Tables/ReadTable",
            {"node": node, "table": "ac_tab", "continuation": "%%%"},
            "InvalidArgument",
        ),
        (
            "beamside.v1.Processes/TerminateProcess",
            {"node": node, "pid": "code_server"},
            "FailedPrecondition",
        ),
    ]
    for method, data, expected in cases:
        result = await plane.grpcurl(method, data)
        assert result.status == expected, (method, data, result.stderr)
    # The node is unharmed and still answers.
    ok = await plane.grpcurl("beamside.v1.Processes/ListProcesses", {"node": node, "limit": 1})
    assert ok.status == "OK" and len(ok.json["processes"]) == 1


async def test_every_method_with_grpcurl(
    control_factory: ControlFactory,
    otp25_node: ErlangNode,
    node_factory: NodeFactory,
    tmp_path: Path,
) -> None:
    """Each of the 28 methods once through grpcurl, in its JSON form."""
    plane = await control_factory([otp25_node], family="shop", auth=True, eval_enabled=True)
    node = otp25_node.name
    late = node_factory("otp28")
    cookie_file = tmp_path / "cookie"
    cookie_file.write_text(late.cookie)
    cookie_file.chmod(0o600)  # erl refuses a cookie others can read
    await otp25_node.aeval(
        "register(ets_owner, spawn(fun() -> T = ets:new(grpcurl_tab, [named_table, public]),"
        " ets:insert(T, {k, v}), receive stop -> ok end end)), timer:sleep(50)."
    )
    plane.engine.update(
        node,
        node=node,
        family="shop",
        evaluated=["process_count"],
        findings=[Finding("process_count", Severity.MINOR, "many processes", "look", {})],
    )
    alarm = {"alarm": "process_count", "source": node}
    calls: list[tuple[str, dict[str, Any], Callable[[Any], bool]]] = [
        ("Nodes/ListNodes", {"family": "shop"}, lambda r: r["nodes"][0]["name"] == node),
        ("Nodes/GetNode", {"node": node}, lambda r: r["systemInfo"]["otp_release"] == "25"),
        (
            "Nodes/AddNode",
            {"node": late.name, "cookieFile": str(cookie_file)},
            lambda r: r["node"]["name"] == late.name,
        ),
        ("Nodes/RemoveNode", {"node": late.name}, lambda r: r["removed"] is True),
        (
            "Processes/ListProcesses",
            {"node": node, "sortBy": "reductions", "limit": 3},
            lambda r: len(r["processes"]) == 3,
        ),
        (
            "Processes/GetProcess",
            {"node": node, "pid": "ets_owner"},
            lambda r: r["registeredName"] == "ets_owner",
        ),
        ("Processes/TerminateShells", {"node": node}, lambda r: "terminated" not in r),
        (
            "Processes/GarbageCollect",
            {"node": node, "batchSize": 1000},
            lambda r: int(r["collected"]) > 20,
        ),
        (
            "Tables/ListTables",
            {"node": node, "orderBy": "name", "limit": 1000},
            lambda r: "grpcurl_tab" in {t["name"] for t in r["tables"]},
        ),
        (
            "Tables/ReadTable",
            {"node": node, "table": "grpcurl_tab"},
            lambda r: r["rows"] == ["{k,v}"],
        ),
        (
            "Code/ListModules",
            {"node": node, "prefix": "beamside_ops"},
            lambda r: r["modules"][0]["name"] == "beamside_ops",
        ),
        ("Code/SoftPurge", {"node": node}, lambda r: "inUse" not in r),
        ("Code/DiffModules", {"family": "shop"}, lambda r: r["nodes"] == [node]),
        ("Config/GetEnv", {"node": node, "app": "kernel"}, lambda r: r["loaded"] and r["entries"]),
        (
            "Config/SetEnv",
            {"node": node, "app": "kernel", "key": "grpcurl_k", "value": "1"},
            lambda r: r["value"] == "1",
        ),
        (
            "Config/MarkGlobal",
            {"app": "kernel", "key": "grpcurl_k", "family": "shop"},
            lambda r: r["globals"][0]["key"] == "grpcurl_k",
        ),
        (
            "Config/SetGlobal",
            {"family": "shop", "app": "kernel", "key": "grpcurl_k", "value": "2"},
            lambda r: r["results"][0]["ok"],
        ),
        ("Config/DiffConfig", {"family": "shop"}, lambda r: r["nodes"] == [node]),
        (
            "Eval/Evaluate",
            {"node": node, "expression": "application:get_env(kernel, grpcurl_k)"},
            lambda r: r["result"] == "{ok,2}",
        ),
        ("Alarms/ListAlarms", {"node": node}, lambda r: r["alarms"][0]["alarm"] == "process_count"),
        ("Alarms/Acknowledge", alarm, lambda r: r["acknowledgedBy"] == "alice"),
        ("Alarms/Comment", {**alarm, "text": "seen"}, lambda r: r["comments"][0]["text"] == "seen"),
        ("Alarms/Clear", alarm, lambda r: "active" not in r),
        ("Metrics/Live", {"node": node, "count": 1}, lambda r: r["values"]["process_count"] > 10),
        (
            "Nodes/ApplicationTree",
            {"node": node, "application": "kernel"},
            lambda r: r["applications"][0]["tree"]["registeredName"] == "kernel_sup",
        ),
        (
            "Ports/ListPorts",
            {"node": node, "kind": "tcp"},
            lambda r: any("listen" in p.get("state", "") for p in r["ports"]),
        ),
        (
            "Memory/Allocators",
            {"node": node, "allocators": ["binary_alloc"]},
            lambda r: (
                r["allocators"][0]["allocator"] == "binary_alloc"
                and int(r["allocators"][0]["carriersBytes"]) > 0
            ),
        ),
        (
            "Processes/Top",
            {"node": node, "count": 1, "limit": 5},
            lambda r: r["seq"] == 1 and len(r["processes"]) == 5,
        ),
    ]
    for method, data, check in calls:
        if method == "Nodes/RemoveNode":
            await eventually(
                lambda: (
                    (s := plane.manager.status(late.name)) is not None and s.state is NodeState.UP
                ),
                30,
                "added node up",
            )
        result = await plane.grpcurl(f"beamside.v1.{method}", data)
        assert result.status == "OK", (method, result.stderr)
        assert check(result.json), (method, result.stdout)
    # ...and the one left: TerminateProcess.
    result = await plane.grpcurl(
        "beamside.v1.Processes/TerminateProcess", {"node": node, "pid": "ets_owner"}
    )
    assert result.json["terminated"] is True
    listed = await plane.grpcurl("list")
    methods = 0
    for service in listed.stdout.split():
        if service.startswith("beamside.v1."):
            methods += len((await plane.grpcurl(f"list {service}")).stdout.split())
    assert methods == len(calls) + 2 == 30  # + TerminateProcess and Trace/Start
    # Top keeps sending: grpcurl prints each update as it comes
    top = await plane.grpcurl(
        "beamside.v1.Processes/Top", {"node": node, "count": 2, "intervalMs": 1000, "limit": 3}
    )
    decoder, text, docs = json.JSONDecoder(), top.stdout.strip(), []
    while text:
        doc, end = decoder.raw_decode(text)
        docs.append(doc)
        text = text[end:].strip()
    assert [d["seq"] for d in docs] == [1, 2], top.stdout
    # Trace/Start streams: started, the events, then why it ended
    trace = await plane.grpcurl(
        "beamside.v1.Trace/Start",
        {"node": node, "module": "beamside_agent", "maxEventsPerNode": 3, "rateEvents": 1000},
    )
    assert trace.status == "OK", trace.stderr
    decoder, text, docs = json.JSONDecoder(), trace.stdout.strip(), []
    while text:
        doc, end = decoder.raw_decode(text)
        docs.append(doc)
        text = text[end:].strip()
    assert docs[0]["started"]["node"] == node and docs[0]["started"]["matched"] > 5
    events = [d["event"] for d in docs if "event" in d]  # the agent's own collects
    assert len(events) == 3 and all(" beamside_agent:" in e["text"] for e in events), docs
    (ended,) = docs[-1]["end"]["nodes"]
    assert ended["reason"] == "count" and ended["events"] == "3", docs[-1]
