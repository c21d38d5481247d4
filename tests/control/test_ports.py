"""beamside.v1.Ports against real nodes: TCP, UDP and socket-module sockets
opened on the node, a connection from the test itself, sort, limit, kinds,
and the port types metric family growing with the sockets opened."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from sidecar import agents
from sidecar.control.gen.beamside.v1 import ports_pb2 as pb
from sidecar.erldist.node import LocalNode
from sidecar.exporter.vm_metrics import vm_metric_families
from sidecar.model import decode_snapshot
from tests.control.conftest import ControlFactory, ControlPlane
from tests.support.nodes import ErlangNode

# A registered process holding a listener on 127.0.0.1, a connection to it
# made on the node (1000 bytes sent and read), a UDP socket, a listening
# socket of the socket module and a spawned program; it answers the port
# numbers.
HOLDER = """
Self = self(),
spawn(fun() ->
    register(beamside_port_holder, self()),
    {ok, L} = gen_tcp:listen(0, [binary, {active, false}, {ip, {127,0,0,1}}]),
    {ok, LP} = inet:port(L),
    {ok, C} = gen_tcp:connect({127,0,0,1}, LP, [binary, {active, false}, {nodelay, true}]),
    {ok, A} = gen_tcp:accept(L, 5000),
    ok = gen_tcp:send(C, binary:copy(<<"x">>, 1000)),
    {ok, _} = gen_tcp:recv(A, 1000, 5000),
    {ok, U} = gen_udp:open(0, [{ip, {127,0,0,1}}]),
    {ok, S} = socket:open(inet, stream, tcp),
    ok = socket:bind(S, #{family => inet, addr => loopback, port => 0}),
    ok = socket:listen(S),
    {ok, #{port := SP}} = socket:sockname(S),
    Prog = open_port({spawn, "sleep 600"}, []),
    {os_pid, _} = erlang:port_info(Prog, os_pid),
    {ok, CP} = inet:port(C),
    {ok, UP} = inet:port(U),
    Self ! {holder_ports, LP, CP, UP, SP},
    Loop = fun Loop(Held) ->
               receive
                   accept -> {ok, Peer} = gen_tcp:accept(L, 5000), Loop([Peer | Held]);
                   stop -> socket:close(S), port_close(Prog), ok
               end
           end,
    Loop([])
end),
receive {holder_ports, LP, CP, UP, SP} -> {LP, CP, UP, SP} after 5000 -> timeout end.
"""


async def hold_ports(node: ErlangNode) -> tuple[int, int, int, int]:
    printed = await node.aeval(HOLDER)
    m = re.fullmatch(r"\{(\d+),(\d+),(\d+),(\d+)\}", printed)
    assert m is not None, printed
    listen, connected, udp, sock = (int(g) for g in m.groups())
    return listen, connected, udp, sock


async def _list(plane: ControlPlane, node: ErlangNode, **kw: Any) -> pb.ListPortsResponse:
    request = pb.ListPortsRequest(node=node.name, **kw)
    response: pb.ListPortsResponse = await plane.call(plane.ports.ListPorts, request)
    return response


async def test_list_ports_finds_sockets_with_peer_owner_and_bytes(
    control_factory: ControlFactory, any_node: ErlangNode
) -> None:
    """On OTP 25, OTP 28 and Elixir: the connection made on the node with both
    ends, its owner and its bytes; a connection from the test with the test's
    address as peer; UDP; a socket-module socket; kinds, sort and limit."""
    plane = await control_factory([any_node])
    listen, connected, udp, sock = await hold_ports(any_node)
    _reader, writer = await asyncio.open_connection("127.0.0.1", listen)
    try:
        await any_node.aeval("beamside_port_holder ! accept, ok.")
        client = f"127.0.0.1:{writer.get_extra_info('sockname')[1]}"
        by_local: dict[str, list[pb.PortInfo]] = {}
        tcp = await _list(plane, any_node, kind="tcp", limit=2000)
        for p in tcp.ports:
            by_local.setdefault(p.local_address, []).append(p)
        assert all(p.kind == "tcp" and p.driver == "tcp_inet" for p in tcp.ports)

        (listener,) = [p for p in by_local[f"127.0.0.1:{listen}"] if p.state == "listen"]
        assert listener.owner_name == "beamside_port_holder" and listener.remote_address == ""
        (client_end,) = by_local[f"127.0.0.1:{connected}"]
        assert client_end.remote_address == f"127.0.0.1:{listen}"
        assert client_end.state == "connected" and client_end.output_bytes == 1000
        assert client_end.options["nodelay"] == "true" and client_end.options["active"] == "false"
        assert client_end.owner_pid == listener.owner_pid and client_end.owner_pid.startswith("<")
        accepted = {p.remote_address: p for p in by_local[f"127.0.0.1:{listen}"]}
        assert accepted[f"127.0.0.1:{connected}"].input_bytes == 1000
        # the test's own connection: its peer is our end
        ours = accepted[client]
        assert ours.state == "connected" and ours.owner_name == "beamside_port_holder"

        (udp_port,) = [
            p
            for p in (await _list(plane, any_node, kind="udp", limit=2000)).ports
            if p.local_address == f"127.0.0.1:{udp}"
        ]
        assert udp_port.driver == "udp_inet" and udp_port.owner_name == "beamside_port_holder"
        assert "nodelay" not in udp_port.options and "buffer" in udp_port.options

        sockets = (await _list(plane, any_node, kind="socket")).ports
        (sock_port,) = [p for p in sockets if p.local_address == f"127.0.0.1:{sock}"]
        assert sock_port.id.startswith("#Socket<") and "listening" in sock_port.state
        assert sock_port.owner_name == "beamside_port_holder"
        assert sock_port.options["protocol"] == "tcp"

        (prog,) = [
            p
            for p in (await _list(plane, any_node, kind="spawn", limit=2000)).ports
            if p.driver == "sleep 600"
        ]
        assert prog.os_pid > 1 and prog.owner_name == "beamside_port_holder"
        assert prog.id.startswith("#Port<") and prog.local_address == ""

        # sorted on output, largest first; the limit; counts over all kinds
        everything = await _list(plane, any_node, sort_by="output", limit=3)
        assert len(everything.ports) == 3 and everything.walked == everything.total
        outputs = [p.output_bytes for p in everything.ports]
        assert outputs == sorted(outputs, reverse=True) and outputs[0] >= 1000
        types = {t.type: t.count for t in everything.types}
        assert types["tcp_inet"] >= 4 and types["udp_inet"] >= 1 and types["socket"] >= 1
        assert types["spawn"] >= 1
        assert sum(types.values()) == everything.walked
        by_id = await _list(plane, any_node, sort_by="id", limit=2000)
        ids = [int(m.group(1)) for p in by_id.ports if (m := re.match(r"#Port<0\.(\d+)>", p.id))]
        assert ids == sorted(ids) and len(by_id.ports) == by_id.total
    finally:
        writer.close()
        await any_node.aeval("beamside_port_holder ! stop, ok.")


async def test_ports_closing_during_the_walk_are_skipped(
    control_factory: ControlFactory, otp25_node: ErlangNode
) -> None:
    """A churn of UDP sockets opened and closed while the walk runs: the
    listing still answers, the ports closed under it counted in vanished."""
    plane = await control_factory([otp25_node])
    await otp25_node.aeval(
        "C = spawn(fun() -> Loop = fun L() ->"
        "  Ss = [element(2, gen_udp:open(0)) || _ <- lists:seq(1, 200)],"
        "  [gen_udp:close(S) || S <- Ss],"
        "  receive stop -> ok after 0 -> L() end end, Loop() end),"
        " register(port_churn, C), ok."
    )
    try:
        vanished = 0
        for _ in range(20):
            reply = await _list(plane, otp25_node, kind="udp", limit=2000)
            assert all(p.kind == "udp" and p.id.startswith("#Port<") for p in reply.ports)
            assert len(reply.ports) <= reply.walked <= reply.total
            vanished += reply.vanished
            if vanished:
                break
        assert vanished > 0
    finally:
        await otp25_node.aeval("port_churn ! stop, ok.")


async def test_list_ports_invalid_requests(
    control_factory: ControlFactory, otp25_node: ErlangNode
) -> None:
    plane = await control_factory([otp25_node])
    for kw, field in (
        ({"kind": "pipe"}, "kind"),
        ({"sort_by": "reductions"}, "sort_by"),
        ({"limit": 2001}, "limit"),
    ):
        request = pb.ListPortsRequest(node=otp25_node.name, **kw)  # type: ignore[arg-type]
        assert await plane.status_of(plane.ports.ListPorts, request) == (
            grpc.StatusCode.INVALID_ARGUMENT
        )
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await plane.call(plane.ports.ListPorts, request)
        assert field in (raised.value.details() or "")


@pytest.fixture
async def local(cookie: str, epmd_port: int) -> AsyncIterator[LocalNode]:
    node = LocalNode("beamside-port-types@127.0.0.1", cookie, epmd_port=epmd_port)
    yield node
    await node.close()


async def _tcp_inet(local: LocalNode, node: ErlangNode) -> float:
    data = await agents.collect(local, node.name, {"sections": ["ports"]}, timeout=30)
    snap = decode_snapshot(data, node=node.name, family="f", cluster="c", taken_at=0.0, duration=0)
    (family,) = [f for f in vm_metric_families([snap]) if f.name == "erlang_vm_ports_by_kind"]
    return sum(s.value for s in family.samples if s.labels["kind"] == "tcp_inet")


async def test_port_types_metric_counts_the_sockets_opened(
    local: LocalNode, otp28_node: ErlangNode
) -> None:
    """The periodic collect's port types (erlang_vm_ports_by_kind, as
    recon:port_types counts them): tcp_inet grows by the 3 TCP ports the
    holder opens (listener, connection, accepted end)."""
    await agents.ensure_loaded(local, otp28_node.name)
    before = await _tcp_inet(local, otp28_node)
    await hold_ports(otp28_node)
    try:
        assert await _tcp_inet(local, otp28_node) == before + 3
    finally:
        await otp28_node.aeval("beamside_port_holder ! stop, ok.")
