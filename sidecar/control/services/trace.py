"""``beamside.v1.Trace``: call and message traces on one node, a family or all.

Each node runs its own tracer process (``erl_agents/beamside_ops_trace.erl``:
its header has the limits it keeps and the stop reasons).  The tracer never
sends over distribution: it buffers at most ``buffer`` events and this side
drains them with a ``poll`` rpc every :data:`POLL_S`; a tracer nobody polls
for ``idle_ms`` stops by itself, and one whose sidecar disconnects (a
SIGKILL included) stops at the ``nodedown``.

The global budget: every node's count limit is ``min(max_events_per_node,
budget)``, and this side streams at most ``budget`` events in all (a poll
asks for no more than what is left).  When the budget is spent the other
nodes' traces are stopped; the events they traced meanwhile (at most their
count limit each) are dropped on the node and never streamed.

Every event also goes to Loki (``kind="trace"``, the node and family labels)
through the notifier's bounded pipeline, when a sink is configured.  Start
and end are audited (``Trace/Start``, ``Trace/Stop``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from sidecar.audit import AuditRecord, log_audit, redact_request
from sidecar.control import validate
from sidecar.control.base import Context, Deps, NodeCalls, OpsModule
from sidecar.control.errors import RpcFailure, invalid, text
from sidecar.control.gen.beamside.v1 import trace_pb2 as pb
from sidecar.control.identity import current_caller
from sidecar.erldist.term import Atom
from sidecar.model import NodeState, NodeStatus

log = logging.getLogger(__name__)

OPS: OpsModule = "beamside_ops_trace"  # erl_agents/beamside_ops_trace.erl
POLL_S = 0.2
POLL_BATCH = 500  # events per poll of one node
START_TIMEOUT = 6.0  # the agent gives its tracer 5 s to set up
RPC_TIMEOUT = 3.0  # poll and stop: the agent waits 2 s for its tracer
MAX_MATCH_SPEC_BYTES = 4096
EVENT_TYPES = frozenset({"call", "return_from", "exception_from", "send", "receive", "other"})


@dataclass(frozen=True, slots=True)
class TraceLine:
    """One event of a node's tracer, decoded once."""

    node: str
    time_ns: int
    pid: str
    type: str
    text: str

    def message(self) -> pb.TraceMessage:
        return pb.TraceMessage(
            event=pb.TraceEvent(
                node=self.node,
                time_unix_nano=self.time_ns,
                pid=self.pid,
                type=self.type,
                text=self.text,
            )
        )


def decode_line(node: str, raw: object) -> TraceLine | None:
    """An event map of a poll reply; None when it is not one."""
    if not isinstance(raw, dict):
        return None
    time_ns = raw.get("time")
    kind = text(raw.get("type"))
    if type(time_ns) is not int or kind not in EVENT_TYPES:
        return None
    return TraceLine(node, time_ns, text(raw.get("pid")), kind, text(raw.get("text")))


@dataclass
class _NodeTrace:
    node: str
    tracer: str
    events: int = 0
    discarded: int = 0
    reason: str = ""
    detail: str = ""

    def end(self) -> pb.NodeTraceEnd:
        return pb.NodeTraceEnd(
            node=self.node,
            reason=self.reason,
            events=self.events,
            discarded=self.discarded,
            detail=self.detail,
        )


class TraceService:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.calls = NodeCalls(deps.manager)
        self._stopping: set[asyncio.Task[None]] = set()

    def _targets(self, request: pb.StartTraceRequest) -> list[NodeStatus]:
        chosen = [bool(request.node), bool(request.family), request.all_nodes]
        if sum(chosen) != 1:
            raise invalid("give exactly one target: node, family or all_nodes")
        if request.node:
            return [self.calls.status(request.node)]
        if request.family:
            return self.calls.family(request.family)
        every = sorted(self.deps.manager.statuses(), key=lambda s: s.node)
        if not every:
            raise invalid("all_nodes: no node is managed")
        return every

    @staticmethod
    def _spec(request: pb.StartTraceRequest) -> dict[Any, Any]:
        if request.module and request.process:
            raise invalid("trace calls (module) or messages (process), not both")
        if request.module:
            if request.send or request.receive:
                raise invalid("send and receive apply to a message trace (process)")
            module = validate.atom(request.module, "module")
            function = validate.atom(request.function, "function") if request.function else ""
            if request.HasField("arity") and request.arity > 255:
                raise invalid(f"arity must be from 0 to 255 (got {request.arity})")
            spec = request.match_spec.strip()
            if len(spec.encode()) > MAX_MATCH_SPEC_BYTES:
                raise invalid(f"match_spec is longer than {MAX_MATCH_SPEC_BYTES} bytes")
            if spec and not spec.startswith("["):
                raise invalid("match_spec: a list of {Head, Guards, Body} (e.g. [{'_', [], []}])")
            return {
                Atom("type"): Atom("calls"),
                Atom("module"): module.encode(),
                Atom("function"): function.encode(),
                Atom("arity"): request.arity if request.HasField("arity") else -1,
                Atom("match_spec"): spec.encode(),
                Atom("return_trace"): request.return_trace,
            }
        if request.process:
            if request.function or request.HasField("arity") or request.match_spec:
                raise invalid("function, arity and match_spec apply to a call trace (module)")
            if request.return_trace:
                raise invalid("return_trace applies to a call trace (module)")
            if not (request.send or request.receive):
                raise invalid("a message trace needs send, receive or both")
            return {
                Atom("type"): Atom("messages"),
                Atom("process"): validate.pid_or_name(request.process, "process"),
                Atom("send"): request.send,
                Atom("receive"): request.receive,
            }
        raise invalid("give module (a call trace) or process (a message trace)")

    async def Start(
        self, request: pb.StartTraceRequest, context: Context
    ) -> AsyncGenerator[pb.TraceMessage, None]:
        spec = self._spec(request)
        per_node = validate.limit(request.max_events_per_node, "max_events_per_node", 100, 100000)
        rate_n = validate.limit(request.rate_events, "rate_events", 100, 100000)
        rate_ms = validate.limit(request.rate_ms, "rate_ms", 1000, 60000, 10)
        budget = validate.limit(request.budget, "budget", 1000, 100000)
        duration_ms = validate.limit(
            request.max_duration_ms, "max_duration_ms", 60000, 3600000, 100
        )
        chars = validate.limit(request.max_chars, "max_chars", 1024, 8192, 64)
        targets = self._targets(request)
        opts = {
            Atom("count"): min(per_node, budget),
            Atom("rate"): (rate_n, rate_ms),
            Atom("duration_ms"): duration_ms,
            Atom("chars"): chars,
        }
        ended: list[_NodeTrace] = []
        up: list[NodeStatus] = []
        for status in targets:
            if status.state is NodeState.UP:
                up.append(status)
            else:
                ended.append(_NodeTrace(status.node, "", reason="node_down", detail="not up"))

        async def start(node: str) -> Any:
            return await self.calls.ops(node, OPS, "start", [spec, opts], START_TIMEOUT)

        started, failures = await self.calls.on_family(up, start)
        running = {
            node: _NodeTrace(node, text(reply.get("tracer")))
            for node, reply in started.items()
            if isinstance(reply, dict)
        }
        refused = [f for f in failures.values() if f.code is grpc.StatusCode.INVALID_ARGUMENT]
        if refused or not running:
            # the same request would fail the same way on every node: say it
            self._stop_later(running.values())
            first = refused[0] if refused else next(iter(failures.values()), None)
            failure = first or RpcFailure(grpc.StatusCode.UNAVAILABLE, "no node to trace is up")
            self._audit("Trace/Start", request, str(failure), False, {})
            raise failure
        for node, failure in failures.items():
            ended.append(_NodeTrace(node, "", reason="failed", detail=failure.message))
        self._audit(
            "Trace/Start",
            request,
            "ok",
            True,
            {"nodes": sorted(running), "failed": sorted(failures)},
        )
        streamed = 0
        budget_reached = False
        # the nodes keep the duration; this is a backstop should one not answer
        deadline = time.monotonic() + duration_ms / 1000 + 10
        try:
            for node, trace in sorted(running.items()):
                matched = started[node].get("matched")
                yield pb.TraceMessage(
                    started=pb.TraceStarted(
                        node=node,
                        tracer=trace.tracer,
                        matched=matched if type(matched) is int and matched >= 0 else 0,
                    )
                )
            while running and not budget_reached and time.monotonic() < deadline:
                asked = {node: min(POLL_BATCH, budget - streamed) for node in running}

                async def poll(node: str, want: Mapping[str, int] = asked) -> Any:
                    tracer = running[node].tracer.encode()
                    return await self.calls.ops(
                        node, OPS, "poll", [tracer, want[node]], RPC_TIMEOUT
                    )

                members = []
                for node in list(running):
                    member = self.deps.manager.status(node)
                    if member is None:  # removed meanwhile: its detach ended the trace
                        trace = running.pop(node)
                        trace.reason, trace.detail = "node_down", "no longer managed"
                        ended.append(trace)
                    else:
                        members.append(member)
                polled, lost = await self.calls.on_family(members, poll)
                full = False
                for node, failure in lost.items():
                    trace = running.pop(node)
                    trace.reason, trace.detail = "node_down", failure.message
                    ended.append(trace)
                for node, reply in sorted(polled.items()):
                    trace = running[node]
                    lines = [
                        line
                        for raw in reply.get("events", [])
                        if (line := decode_line(node, raw)) is not None
                    ]
                    for line in lines[: budget - streamed]:
                        streamed += 1
                        trace.events += 1
                        self._to_loki(line)
                        yield line.message()
                    discarded = reply.get("discarded")
                    trace.discarded = discarded if type(discarded) is int else trace.discarded
                    full = full or len(lines) >= asked[node]
                    state = text(reply.get("state"))
                    if state != "running" and len(lines) < asked[node]:
                        trace.reason = "caller_gone" if state == "gone" else state
                        ended.append(running.pop(node))
                if streamed >= budget:
                    budget_reached = True
                elif not full:
                    await asyncio.sleep(POLL_S)
            for trace in running.values():
                trace.reason = "budget" if budget_reached else "duration"
            ended.extend(running.values())
            await self._stop_all(list(running.values()))
            running.clear()
        finally:
            if running:  # the caller went (cancelled): stop the rest without waiting
                for trace in running.values():
                    trace.reason = "caller"
                ended.extend(running.values())
                self._stop_later(list(running.values()))
            self._audit(
                "Trace/Stop",
                request,
                "ok",
                True,
                {
                    "events": streamed,
                    "budget_reached": budget_reached,
                    "nodes": {t.node: t.reason for t in ended},
                },
            )
        yield pb.TraceMessage(
            end=pb.TraceEnd(
                nodes=[t.end() for t in sorted(ended, key=lambda t: t.node)],
                events=streamed,
                budget_reached=budget_reached,
            )
        )

    async def _stop_all(self, traces: list[_NodeTrace]) -> None:
        async def stop(trace: _NodeTrace) -> None:
            try:
                await self.calls.ops(trace.node, OPS, "stop", [trace.tracer.encode()], RPC_TIMEOUT)
            except RpcFailure as exc:  # the tracer stops by itself (idle_ms, nodedown)
                log.info("stopping the trace on %s: %s", trace.node, exc.message)

        await asyncio.gather(*(stop(t) for t in traces if t.tracer))

    def _stop_later(self, traces: Any) -> None:
        task = asyncio.get_running_loop().create_task(self._stop_all(list(traces)))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    def _to_loki(self, line: TraceLine) -> None:
        if self.deps.trace_events is not None:
            self.deps.trace_events(
                line.node, line.time_ns, {"message": line.text, "pid": line.pid, "type": line.type}
            )

    def _audit(
        self,
        action: str,
        request: pb.StartTraceRequest,
        result: str,
        ok: bool,
        extra: Mapping[str, Any],
    ) -> None:
        who = current_caller()
        details = {
            "request": redact_request(MessageToDict(request, preserving_proto_field_name=True)),
            **extra,
        }
        record = AuditRecord(
            who=who.name,
            role=str(who.role),
            action=action,
            node=request.node,
            result=result,
            ok=ok,
            details=details,
        )
        sink = self.deps.audit or log_audit
        try:
            sink(record)
        except Exception:  # an audit sink bug must not fail the trace it records
            log.exception("audit sink failed")
