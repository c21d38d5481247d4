"""``beamside.v1.Metrics``: a node's live figures streamed every ``intervals.live``.

Each update is one small agent call (``beamside_agent:live/2``); nested
figures are flattened (``io.input``).  The stream ends after ``count``
updates, when the client cancels, or with ``UNAVAILABLE`` when the node goes
down.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from sidecar.agents import AgentError, is_error
from sidecar.control.base import Context, Deps, NodeCalls
from sidecar.control.errors import RpcFailure, invalid, unavailable
from sidecar.control.gen.beamside.v1 import metrics_pb2 as pb
from sidecar.erldist.errors import DistError, DistTimeout

CHEAP = (
    "process_count",
    "port_count",
    "reductions",
    "context_switches",
    "run_queue",
    "memory_total",
    "io",
    "gc",
    "memory",
    "run_queues",
    "statistics",
)
DEFAULT = ("process_count", "memory_total", "run_queue", "reductions")
MAX_METRICS = 16


def flatten(values: Mapping[Any, Any], prefix: str = "") -> dict[str, float]:
    """Numbers of a (nested) agent map as ``{"a.b": float}``; other leaves skipped."""
    out: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            out[name] = float(value)
        elif isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
    return out


class MetricsService:
    def __init__(self, deps: Deps) -> None:
        self.manager = deps.manager
        self.calls = NodeCalls(deps.manager)

    async def Live(
        self, request: pb.LiveRequest, context: Context
    ) -> AsyncGenerator[pb.LiveUpdate, None]:
        names = list(dict.fromkeys(request.metrics)) or list(DEFAULT)
        unknown = [n for n in names if n not in CHEAP]
        if unknown:
            raise invalid(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(CHEAP)}")
        if len(names) > MAX_METRICS:
            raise invalid(f"at most {MAX_METRICS} metrics")
        node = self.calls.up(request.node).node
        sent = 0
        stream = self.manager.live_stream(node, names)
        try:
            while True:
                try:
                    values = await anext(stream)
                except DistTimeout:
                    raise RpcFailure(
                        grpc.StatusCode.DEADLINE_EXCEEDED, f"{node} did not answer in time"
                    ) from None
                except (AgentError, DistError) as exc:
                    raise unavailable(f"{node}: {exc}") from None
                stamp = Timestamp()
                stamp.FromNanoseconds(time.time_ns())
                numbers = flatten({k: v for k, v in values.items() if not is_error(v)})
                yield pb.LiveUpdate(node=node, at=stamp, values=numbers)
                sent += 1
                if request.count and sent >= request.count:
                    return
        finally:
            # live_stream is an async generator: close it now (its rpc, its sleep).
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
