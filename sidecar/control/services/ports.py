"""``beamside.v1.Ports``: ports and sockets as ``inet:i()`` lists them.

``ListPorts`` (viewer) asks ``beamside_ops_ports:ports/1`` for every port and
socket-module socket of a node, the top ``limit`` by ``sort_by``, each with
its addresses, owner, bytes in and out, queue and the inet options that
matter, and the counts by type over every port walked.
"""

from __future__ import annotations

from typing import Any

from sidecar.control import validate
from sidecar.control.base import Context, Deps, NodeCalls, OpsModule
from sidecar.control.errors import text
from sidecar.control.gen.beamside.v1 import ports_pb2 as pb
from sidecar.erldist.term import Atom

OPS: OpsModule = "beamside_ops_ports"  # erl_agents/beamside_ops_ports.erl

KINDS = ("tcp", "udp", "sctp", "socket", "file", "spawn", "fd", "driver")
SORT_KEYS = ("input", "output", "queue_size", "memory", "id")
WALK_MS = 5000  # the agent's bound on the whole walk


def _uint(value: Any, bits: int = 64) -> int:
    return value if type(value) is int and 0 <= value < 2**bits else 0


def port_info(p: dict[Any, Any]) -> pb.PortInfo:
    """One entry of the agent's reply."""
    options = p.get("options")
    return pb.PortInfo(
        id=text(p.get("id")),
        kind=text(p.get("kind")),
        driver=text(p.get("driver")),
        local_address=text(p.get("local")),
        remote_address=text(p.get("remote")),
        state=text(p.get("state")),
        owner_pid=text(p.get("owner_pid")),
        owner_name=text(p.get("owner_name")),
        owner_initial_call=text(p.get("owner_call")),
        input_bytes=_uint(p.get("input")),
        output_bytes=_uint(p.get("output")),
        queue_bytes=_uint(p.get("queue_size")),
        memory_bytes=_uint(p.get("memory")),
        os_pid=_uint(p.get("os_pid"), 32),
        options=(
            {text(k): text(v) for k, v in options.items()} if isinstance(options, dict) else {}
        ),
    )


class PortsService:
    def __init__(self, deps: Deps) -> None:
        self.calls = NodeCalls(deps.manager)

    async def ListPorts(
        self, request: pb.ListPortsRequest, context: Context
    ) -> pb.ListPortsResponse:
        opts: dict[Atom, Any] = {
            Atom("sort_by"): Atom(validate.choice(request.sort_by, "sort_by", SORT_KEYS)),
            Atom("limit"): validate.limit(request.limit, "limit", 100, 2000),
            Atom("timeout_ms"): WALK_MS,
        }
        if request.kind:
            opts[Atom("kind")] = validate.choice(request.kind, "kind", KINDS).encode()
        reply = await self.calls.ops(request.node, OPS, "ports", [opts], WALK_MS / 1000 + 1)
        types = reply.get("by_type")
        counts = (
            sorted(((text(k), _uint(v)) for k, v in types.items()), key=lambda t: (-t[1], t[0]))
            if isinstance(types, dict)
            else []
        )
        return pb.ListPortsResponse(
            ports=[port_info(p) for p in reply.get("ports", []) if isinstance(p, dict)],
            total=_uint(reply.get("total")),
            walked=_uint(reply.get("walked")),
            vanished=_uint(reply.get("vanished")),
            truncated=reply.get("truncated") is True,
            types=[pb.PortTypeCount(type=t, count=c) for t, c in counts],
        )
