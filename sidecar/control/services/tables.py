"""``beamside.v1.Tables``: ETS tables listed (sortable) and read page by page.

Listing is a viewer's; reading rows is an operator's (``auth.METHOD_ROLES``),
and reading a table that holds credentials is an admin's
(:data:`~sidecar.control.auth.CREDENTIAL_TABLE_ROLE`): a table whose name or
whose owner's registered name names a secret (:func:`sidecar.redact.is_secret_key`:
``passwd``, ``session``, ``*_key*`` ...), or one of :data:`CREDENTIAL_TABLES`
(RabbitMQ keeps password hashes in ``rabbit_user``).  For a caller below
admin the table's owner is looked up first (the agent's table listing); a
table beamside cannot check is refused the same way.
"""

from __future__ import annotations

from typing import Any

import grpc

from sidecar.control import validate
from sidecar.control.auth import CREDENTIAL_TABLE_ROLE
from sidecar.control.base import Context, Deps, NodeCalls, OpsModule
from sidecar.control.errors import RpcFailure, text
from sidecar.control.gen.beamside.v1 import tables_pb2 as pb
from sidecar.control.identity import current_caller
from sidecar.erldist.term import Atom
from sidecar.redact import is_secret_key

OPS: OpsModule = "beamside_ops_ets"  # erl_agents/beamside_ops_ets.erl

ORDERS = ("memory", "size", "name", "id")
#: Tables known to hold credentials whose names do not say so.
CREDENTIAL_TABLES = frozenset(
    {
        "rabbit_user",  # RabbitMQ: users and password hashes
        "rabbit_user_permission",
        "rabbit_topic_permission",
        "rabbit_vhost_permission",
        "passwd",  # ejabberd: passwords
        "ejabberd_auth_cache",
    }
)
#: The most tables the owner look-up lists (the agent's own maximum).
MAX_LISTED = 10000


def credential_reason(name: str, owner_name: str) -> str | None:
    """Why a table named ``name`` owned by ``owner_name`` holds credentials
    (None when it does not look so)."""
    if name in CREDENTIAL_TABLES:
        return f"{name} is a known credential table"
    if is_secret_key(name):
        return f"its name {name} names a secret"
    if owner_name and is_secret_key(owner_name):
        return f"its owner {owner_name} names a secret"
    return None


def _int(value: Any) -> int:
    return value if type(value) is int else 0


class TablesService:
    def __init__(self, deps: Deps) -> None:
        self.calls = NodeCalls(deps.manager)

    async def _check_credentials(self, node: str, table: str) -> None:
        """PERMISSION_DENIED unless the caller may read ``table``: admins
        always, others only tables that do not hold credentials."""
        caller = current_caller()
        if caller.role >= CREDENTIAL_TABLE_ROLE:
            return
        reason = credential_reason(table, "")
        if reason is None:
            opts = {
                Atom("order_by"): Atom("id"),
                Atom("limit"): MAX_LISTED,
                Atom("timeout_ms"): 5000,
            }
            listed = await self.calls.ops(node, OPS, "tables", [opts], 5.0)
            tables = listed.get("tables", [])
            found = [t for t in tables if table in (text(t.get("name")), text(t.get("id")))]
            if found:
                t = found[0]
                reason = credential_reason(text(t.get("name")), text(t.get("owner_name")))
            elif _int(listed.get("total")) > len(tables):
                reason = f"beamside could not check it (more than {len(tables)} tables)"
        if reason is not None:
            raise RpcFailure(
                grpc.StatusCode.PERMISSION_DENIED,
                f"table {table} may hold credentials ({reason}): reading it needs the "
                f"{CREDENTIAL_TABLE_ROLE} role; {caller.name} has {caller.role}",
            )

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
        await self._check_credentials(request.node, table.decode())
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
