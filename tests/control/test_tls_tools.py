"""The gRPC control plane and the logs against nodes reached over TLS distribution.

Two real OTP 25 nodes run ``-proto_dist inet_tls`` in the strict production
set-up (``verify_peer`` + ``fail_if_no_peer_cert``: only a client with a
certificate of the test CA gets in); they are started once for the module.
Every tool family is called through gRPC against a node beamside attached
over TLS; a node added by name with ``Nodes/AddNode`` connects over TLS like
the configured target; a ``logger:error`` on a TLS node reaches the strict
Loki double through the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from sidecar.alarms.engine import Finding
from sidecar.alarms.model import Severity
from sidecar.config import CookieSource, Target, parse_config
from sidecar.control.errors import RpcFailure
from sidecar.control.gen.beamside.v1 import (
    alarms_pb2,
    code_pb2,
    config_pb2,
    metrics_pb2,
    nodes_pb2,
    processes_pb2,
    tables_pb2,
    trace_pb2,
    trace_pb2_grpc,
)
from sidecar.control.services.nodes import tls_for_added
from sidecar.daemon import Daemon
from sidecar.erldist.tls import TlsConfig
from sidecar.model import NodeState
from sidecar.pki import make_ca, make_cert
from tests.conftest import NodeFactory
from tests.control.conftest import ControlFactory
from tests.support.loki_double import LokiDouble
from tests.support.nodes import ErlangNode, TlsDist, free_port, random_cookie
from tests.support.waiting import eventually

HOST = "127.0.0.1"
OPERATOR = "operator-token-1234"


@dataclass(frozen=True)
class TlsCluster:
    first: ErlangNode
    second: ErlangNode
    client: TlsConfig  # beamside's side: the CA, its client certificate


@pytest.fixture(scope="module")
def cluster(epmd_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsCluster]:
    d = tmp_path_factory.mktemp("tls-control")
    ca = make_ca(d, "control test CA")
    node_cert = make_cert(ca, d, "node", dns_names=[HOST, "localhost"], ip_addresses=[HOST])
    client = make_cert(ca, d, "beamside-client", common_name="beamside")
    dist = TlsDist(
        node_cert.certfile,
        node_cert.keyfile,
        ca.certfile,
        verify="verify_peer",
        fail_if_no_peer_cert=True,
    )
    factory = NodeFactory(epmd_port, random_cookie(), d / "nodes")
    try:
        first, second = factory.many(2, "otp25", extra_args=dist.erl_args(d / "dist"))
        yield TlsCluster(
            first,
            second,
            TlsConfig(
                cacertfile=str(ca.certfile),
                certfile=str(client.certfile),
                keyfile=str(client.keyfile),
            ),
        )
    finally:
        factory.kill_all()


async def over_tls(node: ErlangNode, peer: str) -> bool:
    """Whether ``node``'s connection to ``peer`` runs on inet_tls_dist (its
    controller a process; a plain TCP connection has a port)."""
    answer = await node.aeval(
        f"[C] = [X || {{N, X}} <- erlang:system_info(dist_ctrl), N =:= '{peer}'], is_pid(C)."
    )
    return answer == "true"


def up(plane_manager: Any, node: str) -> bool:
    status = plane_manager.status(node)
    return status is not None and status.state is NodeState.UP


async def test_every_tool_family_over_tls(
    control_factory: ControlFactory, cluster: TlsCluster
) -> None:
    node = cluster.first.name
    plane = await control_factory([cluster.first], auth=True, tls=cluster.client)
    (target,) = plane.manager.config.targets
    assert target.tls == cluster.client
    assert await over_tls(cluster.first, str(plane.manager.local.name))

    # Nodes
    listed = await plane.call(plane.nodes.ListNodes, nodes_pb2.ListNodesRequest())
    assert [(n.name, n.up, n.state) for n in listed.nodes] == [(node, True, "up")]
    detail = await plane.call(plane.nodes.GetNode, nodes_pb2.GetNodeRequest(node=node))
    assert detail.node.otp_release == "25" and detail.erts_version
    assert {"kernel", "stdlib"} <= {a.name for a in detail.applications}

    # Processes
    top = await plane.call(
        plane.processes.ListProcesses,
        processes_pb2.ListProcessesRequest(node=node, sort_by="memory", limit=5),
    )
    assert len(top.processes) == 5 and all(p.pid.startswith("<") for p in top.processes)
    memories = [p.memory for p in top.processes]
    assert memories == sorted(memories, reverse=True)
    sup = await plane.call(
        plane.processes.GetProcess, processes_pb2.GetProcessRequest(node=node, pid="kernel_sup")
    )
    assert sup.registered_name == "kernel_sup" and sup.pid.startswith("<0.")
    assert sup.trap_exit
    gc = await plane.call(
        plane.processes.GarbageCollect,
        processes_pb2.GarbageCollectRequest(node=node, batch_size=500),
        token=OPERATOR,
    )
    assert gc.collected > 20 and gc.batches >= 1 and not gc.truncated
    assert gc.processes_memory_before > 0 and gc.processes_memory_after > 0

    # Tables: a named public table with rows, read as an operator
    made = await cluster.first.aeval(
        "Self = self(),"
        " Owner = spawn(fun() -> ets:new(tlsctl_rows, [named_table, public, ordered_set]),"
        " ets:insert(tlsctl_rows, [{K, K * K} || K <- lists:seq(1, 9)]),"
        " Self ! made, receive stop -> ok end end),"
        " register(tlsctl_owner, Owner),"
        " receive made -> made after 5000 -> timeout end."
    )
    assert made == "made"
    try:
        tables = await plane.call(
            plane.tables.ListTables,
            tables_pb2.ListTablesRequest(node=node, order_by="name", limit=1000),
        )
        (ours,) = [t for t in tables.tables if t.name == "tlsctl_rows"]
        assert ours.size == 9 and ours.owner_name == "tlsctl_owner"
        assert tables.total >= len(tables.tables) > 10
        page = await plane.call(
            plane.tables.ReadTable,
            tables_pb2.ReadTableRequest(node=node, table="tlsctl_rows", limit=100),
            token=OPERATOR,
        )
        assert page.rows == [f"{{{k},{k * k}}}" for k in range(1, 10)]
        assert page.size == 9 and not page.continuation
    finally:
        await cluster.first.aeval("tlsctl_owner ! stop, ok.")

    # Code
    modules = await plane.call(
        plane.code.ListModules, code_pb2.ListModulesRequest(node=node, prefix="inet_tls_dist")
    )
    # The node's distribution runs on TLS: inet_tls_dist is loaded.
    assert [m.name for m in modules.modules] == ["inet_tls_dist"]
    assert modules.total > 100 and modules.matching == 1

    # Config
    env = await plane.call(
        plane.config.GetEnv, config_pb2.GetEnvRequest(node=node, app="kernel", key="net_ticktime")
    )
    expected = await cluster.first.aeval("element(2, application:get_env(kernel, net_ticktime)).")
    assert env.loaded and [(e.key, e.value) for e in env.entries] == [("net_ticktime", expected)]

    # Metrics: two live updates from the node
    updates = [
        update
        async for update in plane.metrics.Live(
            metrics_pb2.LiveRequest(node=node, metrics=["process_count", "memory_total"], count=2),
            metadata=plane.metadata(),
            timeout=30,
        )
    ]
    assert len(updates) == 2 and all(u.node == node for u in updates)
    assert all(u.values["process_count"] > 20 and u.values["memory_total"] > 1e6 for u in updates)
    assert updates[0].at.ToNanoseconds() < updates[1].at.ToNanoseconds()

    # Trace: the agent's own collects, polled over the TLS connection (whose
    # controller is a process, not a port: the tracer's busy check reads its queue)
    traced = [
        message
        async for message in trace_pb2_grpc.TraceStub(plane.channel).Start(
            trace_pb2.StartTraceRequest(
                node=node, module="beamside_agent", max_events_per_node=2, rate_events=1000
            ),
            metadata=plane.metadata(OPERATOR),
            timeout=30,
        )
    ]
    assert [m.WhichOneof("item") for m in traced] == ["started", "event", "event", "end"]
    assert all(" beamside_agent:" in m.event.text for m in traced[1:3])
    assert [(n.node, n.reason) for n in traced[-1].end.nodes] == [(node, "count")]

    # Alarms: what the checker raised for the node is listed with it as source
    plane.engine.update(
        node,
        node=node,
        family="erlang",
        evaluated=["process_message_queue"],
        findings=[
            Finding(
                "process_message_queue",
                Severity.MAJOR,
                "a long queue",
                "find it",
                {"pid": "<0.9.0>"},
            )
        ],
    )
    alarms = await plane.call(plane.alarms.ListAlarms, alarms_pb2.ListAlarmsRequest())
    assert ("process_message_queue", node, True) in {
        (a.alarm, a.source, a.active) for a in alarms.alarms
    }


async def test_added_node_connects_over_tls_as_the_targets_do(
    control_factory: ControlFactory, cluster: TlsCluster, tmp_path: Path
) -> None:
    plane = await control_factory([cluster.first], auth=True, tls=cluster.client, family="shop")
    cookie_file = tmp_path / "cookie"
    cookie_file.write_text(cluster.second.cookie + "\n")
    cookie_file.chmod(0o600)
    added = await plane.call(
        plane.nodes.AddNode,
        nodes_pb2.AddNodeRequest(node=cluster.second.name, cookie_file=str(cookie_file)),
        token=OPERATOR,
    )
    assert added.tls and added.node.name == cluster.second.name
    await eventually(lambda: up(plane.manager, cluster.second.name), 30, "added node attached")
    detail = await plane.call(
        plane.nodes.GetNode, nodes_pb2.GetNodeRequest(node=cluster.second.name)
    )
    assert detail.node.up and detail.node.otp_release == "25"
    procs = await plane.call(
        plane.processes.ListProcesses,
        processes_pb2.ListProcessesRequest(node=cluster.second.name, limit=3),
    )
    assert len(procs.processes) == 3
    assert await over_tls(cluster.second, str(plane.manager.local.name))
    assert await plane.call(
        plane.nodes.RemoveNode, nodes_pb2.RemoveNodeRequest(node=cluster.second.name)
    )


def test_which_tls_an_added_node_gets(tmp_path: Path) -> None:
    cookie = CookieSource("env", "BEAMSIDE_COOKIE")
    one = TlsConfig(cacertfile=str(tmp_path / "ca.pem"))
    other = TlsConfig(cacertfile=str(tmp_path / "other-ca.pem"))
    plain = Target(("a@h",), cookie, family="plain")
    tls_a = Target(("b@h",), cookie, family="shop", tls=one)
    tls_b = Target(("c@h",), cookie, family="shop", tls=one)
    tls_other = Target(("d@h",), cookie, family="mq", tls=other)

    assert tls_for_added((plain,), None) is None
    assert tls_for_added((), None) is None
    assert tls_for_added((tls_a, tls_b), None) == one  # one identical tls: shared
    assert tls_for_added((tls_a, tls_b), "new-family") == one
    assert tls_for_added((plain, tls_a), "shop") == one
    assert tls_for_added((plain, tls_a), "plain") is None
    assert tls_for_added((tls_a, tls_other), "mq") == other
    for targets, family, says in [
        ((plain, tls_a), None, "give the family"),
        ((tls_a, tls_other), None, "give the family"),
        ((plain, tls_a), "nope", "no configured target has family 'nope'"),
        ((tls_a, Target(("e@h",), cookie, family="shop", tls=other)), "shop", "'shop' differ"),
    ]:
        with pytest.raises(RpcFailure) as failure:
            tls_for_added(targets, family)
        assert failure.value.code is grpc.StatusCode.INVALID_ARGUMENT
        assert says in str(failure.value), (targets, family, str(failure.value))


async def test_logger_error_reaches_loki_over_tls(
    cluster: TlsCluster, epmd_port: int, loki: LokiDouble
) -> None:
    client = cluster.client
    config = parse_config(
        {
            "cluster": "tls-logs",
            "node_name": f"beamside-tls-logs-{secrets.token_hex(3)}@{HOST}",
            "targets": [
                {
                    "nodes": [cluster.first.name],
                    "cookie": cluster.first.cookie,
                    "family": "shop",
                    "tls": {
                        "cacertfile": client.cacertfile,
                        "certfile": client.certfile,
                        "keyfile": client.keyfile,
                    },
                }
            ],
            "intervals": {"metrics": "1s"},
            "http": {"listen": f"{HOST}:{free_port()}"},
            "grpc": {"listen": f"{HOST}:{free_port()}"},
            "loki": {"url": loki.url, "batch_wait": "200ms"},
            "logs": {"level": "warning"},
        }
    )
    daemon = Daemon(config, epmd_port=epmd_port)
    stop = asyncio.Event()
    running = asyncio.create_task(daemon.run(stop))
    try:
        await eventually(lambda: up(daemon.manager, cluster.first.name), 30, "attached over TLS")
        marker = f"tls_logs_{secrets.token_hex(4)}"
        await cluster.first.aeval(f'logger:error("over tls ~p", [{marker}]), ok.')

        def found() -> list[tuple[dict[str, str], dict[str, Any]]]:
            return [
                (e.label_dict, line)
                for e in loki.entries(f'{{node="{cluster.first.name}",kind="log"}}')
                if marker in (line := json.loads(e.line)).get("message", "")
            ]

        await eventually(lambda: bool(found()), 15, "the logger:error line in Loki")
        ((labels, line),) = found()
        assert labels == {
            "job": "beamside",
            "cluster": "tls-logs",
            "family": "shop",
            "node": cluster.first.name,
            "kind": "log",
            "level": "error",
        }
        assert line["message"] == f"over tls {marker}" and line["pid"].startswith("<0.")
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(running, 30)
