"""``beamside.v1.Tables``: ETS tables listed (sortable) and read page by page."""

from __future__ import annotations

from typing import Any

from sidecar.control import validate
from sidecar.control.base import Context, Deps, NodeCalls, OpsModule
from sidecar.control.errors import text
from sidecar.control.gen.beamside.v1 import tables_pb2 as pb
from sidecar.erldist.term import Atom

OPS: OpsModule = "beamside_ops_ets"  # erl_agents/beamside_ops_ets.erl

ORDERS = ("memory", "size", "name", "id")


def _int(value: Any) -> int:
    return value if type(value) is int else 0


class TablesService:
    def __init__(self, deps: Deps) -> None:
        self.calls = NodeCalls(deps.manager)

    async def ListTables(
        self, request: pb.ListTablesRequest, context: Context
    ) -> pb.ListTablesResponse:
        opts = {
            Atom("order_by"): Atom(validate.choice(request.order_by, "order_by", ORDERS)),
            Atom("limit"): validate.limit(request.limit, "limit", 100, 10000),
            Atom("timeout_ms"): 5000,
        }
        reply = await self.calls.ops(request.node, OPS, "tables", [opts], 5.0)
        return pb.ListTablesResponse(
            tables=[
                pb.TableInfo(
                    id=text(t.get("id")),
                    name=text(t.get("name")),
                    type=text(t.get("type")),
                    size=_int(t.get("size")),
                    memory_words=_int(t.get("memory_words")),
                    memory_bytes=_int(t.get("memory_bytes")),
                    owner_pid=text(t.get("owner_pid")),
                    owner_name=text(t.get("owner_name")),
                    protection=text(t.get("protection")),
                    named_table=t.get("named_table") is True,
                )
                for t in reply.get("tables", [])
            ],
            total=_int(reply.get("total")),
        )

    async def ReadTable(
        self, request: pb.ReadTableRequest, context: Context
    ) -> pb.ReadTableResponse:
        table = validate.table(request.table)
        cont = validate.continuation_decode(request.continuation)
        opts = {Atom("limit"): validate.limit(request.limit, "limit", 100, 1000)}
        reply = await self.calls.ops(
            request.node,
            OPS,
            "read_table",
            [table, Atom("undefined") if cont is None else cont, opts],
            10.0,
        )
        after = reply.get("continuation")
        return pb.ReadTableResponse(
            rows=[text(r) for r in reply.get("rows", [])],
            continuation=validate.continuation_encode(after) if isinstance(after, bytes) else "",
            size=_int(reply.get("size")),
        )
