"""``beamside.v1.Memory``: the node's memory allocators, carriers against blocks.

One agent call (``beamside_ops_alloc:allocators/1``) reads
``erlang:system_info({allocator, A})`` for every allocator asked: dearer than
the periodic collect's ``allocator_sizes`` (it grows with the schedulers), so
it is asked for, not collected.  Average block sizes are worked out here.
"""

from __future__ import annotations

from typing import Any

from sidecar.control import validate
from sidecar.control.base import Context, Deps, NodeCalls, OpsModule
from sidecar.control.errors import invalid, text
from sidecar.control.gen.beamside.v1 import memory_pb2 as pb
from sidecar.erldist.term import Atom

OPS: OpsModule = "beamside_ops_alloc"  # erl_agents/beamside_ops_alloc.erl
SORTS = ("usage", "carriers_size", "name")
MAX_ALLOCATORS = 64  # more names than any node has allocators
ALLOCATORS_MS = 5000  # the agent's bound on the whole look


def _count(value: Any) -> int:
    return value if type(value) is int and 0 <= value < 2**64 else 0


def _ratio(value: Any) -> float:
    return float(value) if type(value) in (int, float) else 0.0


def _sizes(kind: Any) -> pb.CarrierSizes:
    k = kind if isinstance(kind, dict) else {}
    return pb.CarrierSizes(
        blocks=_count(k.get("blocks")),
        blocks_bytes=_count(k.get("blocks_size")),
        carriers=_count(k.get("carriers")),
        carriers_bytes=_count(k.get("carriers_size")),
    )


def _usage(entry: dict[Any, Any]) -> pb.AllocatorUsage:
    kinds = [_sizes(entry.get(k)) for k in ("mbcs", "sbcs", "mbcs_pool")]
    blocks = sum(k.blocks for k in kinds)
    blocks_bytes = _count(entry.get("blocks_size"))
    instance = entry.get("instance")
    return pb.AllocatorUsage(
        allocator=text(entry.get("alloc")),
        instance=instance if type(instance) is int and -1 <= instance < 2**31 else -1,
        instances=min(_count(entry.get("instances")), 2**32 - 1),
        mbcs=kinds[0],
        sbcs=kinds[1],
        mbcs_pool=kinds[2],
        blocks_bytes=blocks_bytes,
        carriers_bytes=_count(entry.get("carriers_size")),
        usage=_ratio(entry.get("usage")),
        average_block_bytes=blocks_bytes / blocks if blocks else 0.0,
    )


class MemoryService:
    def __init__(self, deps: Deps) -> None:
        self.calls = NodeCalls(deps.manager)

    async def Allocators(
        self, request: pb.AllocatorsRequest, context: Context
    ) -> pb.AllocatorsResponse:
        if len(request.allocators) > MAX_ALLOCATORS:
            raise invalid(f"allocators: at most {MAX_ALLOCATORS} names")
        names = [validate.atom(a, "allocators").encode() for a in request.allocators]
        opts = {
            Atom("allocators"): names,
            Atom("per_instance"): request.per_instance,
            Atom("sort"): Atom(validate.choice(request.sort, "sort", SORTS)),
            Atom("limit"): validate.limit(request.limit, "limit", 200, 5000),
            Atom("timeout_ms"): ALLOCATORS_MS,
        }
        reply = await self.calls.ops(
            request.node, OPS, "allocators", [opts], ALLOCATORS_MS / 1000 + 1
        )
        totals = reply.get("totals") if isinstance(reply.get("totals"), dict) else {}
        return pb.AllocatorsResponse(
            allocators=[_usage(e) for e in reply.get("allocators", []) if isinstance(e, dict)],
            blocks_bytes=_count(totals.get("blocks_size")),
            carriers_bytes=_count(totals.get("carriers_size")),
            memory_total_bytes=_count(reply.get("memory_total")),
            memory_code_bytes=_count(reply.get("memory_code")),
            segment_cache=[
                pb.SegmentCache(
                    instance=c.get("instance") if type(c.get("instance")) is int else -1,
                    calls=_count(c.get("calls")),
                    hits=_count(c.get("hits")),
                    hit_rate=_ratio(c.get("hit_rate")),
                )
                for c in reply.get("mseg_cache", [])
                if isinstance(c, dict)
            ],
            truncated=reply.get("truncated") is True,
        )
