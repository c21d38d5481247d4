"""What every servicer shares: its dependencies and the calls to a node.

:class:`NodeCalls` is the only way a servicer reaches a node.  It checks
the node first (unknown -> ``NOT_FOUND``, not up -> ``UNAVAILABLE``), calls
the service's own ``beamside_ops_*`` agent module through rex with a
sidecar-side timeout a little longer than the bound the agent keeps itself,
and maps failures to statuses (:mod:`sidecar.control.errors`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import grpc
from grpc import aio

from sidecar.alarms.checks import AlarmChecker
from sidecar.alarms.engine import AlarmEngine
from sidecar.audit import AuditSink
from sidecar.discovery.sharding import owner
from sidecar.erldist.errors import DistError, DistTimeout, NodeDown, RpcError
from sidecar.manager import NodeManager
from sidecar.model import NodeState, NodeStatus

from . import validate
from .errors import RpcFailure, agent_reply, invalid, not_found, precondition, unavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

Context = aio.ServicerContext[Any, Any]
# The agent modules behind the services, one per concern (erl_agents/; the
# helpers they share are in beamside_ops, which the sidecar never calls).
OpsModule = Literal[
    "beamside_ops_node",
    "beamside_ops_procs",
    "beamside_ops_ets",
    "beamside_ops_code",
    "beamside_ops_env",
    "beamside_ops_eval",
    "beamside_ops_apps",
    "beamside_ops_ports",
    "beamside_ops_trace",
    "beamside_ops_alloc",
]
# The sidecar waits this much longer than the agent's own bound: the agent
# answers {error, {timeout, _}} itself rather than leaving us guessing.
MARGIN = 3.0


@dataclass(frozen=True, slots=True)
class Deps:
    """What the control plane works on.

    ``audit`` receives every audit record (``Notifier.audit`` logs it to
    ``sidecar.audit`` and ships it to Loki); when None, the records are only
    logged to ``sidecar.audit``.  ``trace_events`` receives each traced
    event streamed (node, time in ns, the line's fields: ``Notifier.trace_event``
    ships it to Loki as ``kind="trace"``); None: no copy.
    """

    manager: NodeManager
    alarms: AlarmEngine
    checker: AlarmChecker
    audit: AuditSink | None = None
    trace_events: Callable[[str, int, Mapping[str, Any]], None] | None = None


class NodeCalls:
    def __init__(self, manager: NodeManager) -> None:
        self.manager = manager

    def status(self, node: str, field: str = "node") -> NodeStatus:
        """The status of a managed node; NOT_FOUND when it is not managed."""
        name = validate.node(node, field)
        status = self.manager.status(name)
        if status is None:
            shard = self.manager.shard
            if shard.count > 1 and (other := owner(name, shard.count)) != shard.index:
                # Sharded: say which replica to ask (StatefulSet pod <name>-<ordinal>).
                raise precondition(
                    f"{name} belongs to shard {other} of {shard.count}; "
                    f"this replica is shard {shard.index}"
                )
            raise not_found(f"{name} is not a managed node")
        return status

    def up(self, node: str) -> NodeStatus:
        """Like :meth:`status`, and UNAVAILABLE unless the node is up and connected."""
        status = self.status(node)
        if status.state is not NodeState.UP or not self.manager.local.is_connected(status.node):
            detail = f": {status.last_error}" if status.last_error else ""
            raise unavailable(f"{status.node} is {status.state.value}{detail}")
        return status

    def family(self, family: str) -> list[NodeStatus]:
        """Every managed node of ``family``; NOT_FOUND when there is none."""
        if not family:
            raise invalid("family is required")
        members = sorted(
            (s for s in self.manager.statuses() if s.family == family), key=lambda s: s.node
        )
        if not members:
            raise not_found(f"no managed node is in family {family!r}")
        return members

    async def on_family(
        self, members: Sequence[NodeStatus], call: Callable[[str], Awaitable[T]]
    ) -> tuple[dict[str, T], dict[str, RpcFailure]]:
        """``call(node)`` on every member at once: the results and the
        failures (an :class:`RpcFailure`: down, timed out, refused), each by
        node.  Any other exception is a bug and is raised."""
        replies = await asyncio.gather(*(call(s.node) for s in members), return_exceptions=True)
        results: dict[str, T] = {}
        failures: dict[str, RpcFailure] = {}
        for status, reply in zip(members, replies, strict=True):
            if isinstance(reply, RpcFailure):
                failures[status.node] = reply
            elif isinstance(reply, BaseException):
                raise reply
            else:
                results[status.node] = reply
        return results, failures

    async def rpc(
        self, node: str, module: str, function: str, args: Sequence[Any], timeout: float
    ) -> Any:
        """A plain rpc to an up node, failures mapped to statuses."""
        status = self.up(node)
        what = f"{module}:{function} on {status.node}"
        try:
            return await self.manager.local.rpc(
                status.node, module, function, list(args), timeout=timeout
            )
        except DistTimeout:
            raise RpcFailure(
                grpc.StatusCode.DEADLINE_EXCEEDED, f"{what} did not answer within {timeout:g}s"
            ) from None
        except NodeDown as exc:
            raise unavailable(f"{status.node} went down during the call: {exc}") from None
        except RpcError as exc:
            if _undef(exc.reason, module):
                raise unavailable(
                    f"the beamside agents are not loaded on {status.node} (yet); retry"
                ) from None
            raise RpcFailure(
                grpc.StatusCode.INTERNAL, f"{what} failed: {exc.reason!r:.300}"
            ) from None
        except DistError as exc:
            raise unavailable(f"{what}: {exc}") from None

    async def ops(
        self, node: str, module: OpsModule, function: str, args: Sequence[Any], timeout: float
    ) -> Any:
        """``Module:Function(Args...)`` of an agent module: the ``V`` of ``{ok, V}``."""
        reply = await self.rpc(node, module, function, args, timeout + MARGIN)
        return agent_reply(reply, function)


def _undef(reason: Any, module: str) -> bool:
    """``{'EXIT', {undef, [{Module, ...} | _]}}``: the module is not loaded."""
    text = repr(reason)
    return "undef" in text and module in text
