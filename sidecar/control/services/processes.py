"""``beamside.v1.Processes``: top-N, details, terminate, garbage collection, shells.

The work is done on the node by ``beamside_ops_procs`` (see its header, and
``beamside_ops``'s for the bounds every tool keeps); this side validates the
request, picks the time limits and maps the reply onto the messages.

A viewer sees a process's state (``sys:get_state``), dictionary and messages
redacted (:mod:`sidecar.redact`: values of keys naming a secret, PEM blocks,
URL passwords), whatever the agent did; operators and admins see them as the
agent printed them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Any

from sidecar.control import validate
from sidecar.control.base import Context, Deps, NodeCalls, OpsModule
from sidecar.control.config import Role
from sidecar.control.errors import invalid, text
from sidecar.control.gen.beamside.v1 import processes_pb2 as pb
from sidecar.control.identity import current_caller
from sidecar.erldist.term import Atom
from sidecar.redact import redact_named, redact_text

OPS: OpsModule = "beamside_ops_procs"  # erl_agents/beamside_ops_procs.erl

SORT_KEYS = ("memory", "message_queue_len", "reductions", "reductions_rate")
MAX_PROCESSES = 1000
MAX_TOP = 100  # processes in a Top update
MAX_TOP_UPDATES = 3600
MAX_TOP_SECONDS = 3600.0
WALK_TIMEOUT_MS = 5000  # the agent's walk deadline; twice it bounds the whole call
STATE_TIMEOUT_MS = 1000
# TerminateProcess: the agent's safety check (beamside_ops_safety header,
# "Stopping processes") has check_ms, its helper a second more; then wait_ms
# to see it gone.
CHECK_MS = 3000
WAIT_MS = 1000


def _same(value: str) -> str:
    return value


def _int(value: Any) -> int:
    return value if type(value) is int else 0


class ProcessesService:
    def __init__(self, deps: Deps) -> None:
        self.calls = NodeCalls(deps.manager)

    async def ListProcesses(
        self, request: pb.ListProcessesRequest, context: Context
    ) -> pb.ListProcessesResponse:
        return await self._top(
            request.node,
            request.sort_by,
            validate.limit(request.limit, "limit", 20, MAX_PROCESSES),
            request.sample_ms,
            request.name_filter,
            request.module_filter,
        )

    async def _top(
        self,
        node: str,
        sort_by_asked: str,
        limit: int,
        sample_ms_asked: int = 0,
        name_filter: str = "",
        module_filter: str = "",
    ) -> pb.ListProcessesResponse:
        sort_by = validate.choice(sort_by_asked, "sort_by", SORT_KEYS)
        opts: dict[Any, Any] = {
            Atom("sort_by"): Atom(sort_by),
            Atom("limit"): limit,
            Atom("timeout_ms"): WALK_TIMEOUT_MS,
        }
        sample_ms = 0
        if sort_by == "reductions_rate":
            sample_ms = validate.limit(sample_ms_asked, "sample_ms", 1000, 10000, 10)
            opts[Atom("sample_ms")] = sample_ms
        elif sample_ms_asked:
            raise invalid("sample_ms applies to sort_by reductions_rate only")
        if name_filter:
            if len(name_filter) > validate.MAX_ATOM_CHARS:
                raise invalid("name_filter is longer than an atom can be")
            opts[Atom("name_filter")] = name_filter.encode()
        if module_filter:
            opts[Atom("module_filter")] = validate.atom(module_filter, "module_filter").encode()
        timeout = (2 * WALK_TIMEOUT_MS + sample_ms + 1000) / 1000
        reply = await self.calls.ops(node, OPS, "top", [opts], timeout)
        return pb.ListProcessesResponse(
            processes=[
                pb.ProcessSummary(
                    pid=text(p.get("pid")),
                    registered_name=text(p.get("registered_name")),
                    memory=_int(p.get("memory")),
                    message_queue_len=_int(p.get("message_queue_len")),
                    reductions=_int(p.get("reductions")),
                    current_function=text(p.get("current_function")),
                    initial_call=text(p.get("initial_call")),
                    status=text(p.get("status")),
                    reductions_delta=max(0, _int(p.get("reductions_delta"))),
                )
                for p in reply.get("processes", [])
            ],
            process_count=_int(reply.get("process_count")),
            walked=_int(reply.get("walked")),
            vanished=_int(reply.get("vanished")),
            truncated=reply.get("truncated") is True,
            duration_us=_int(reply.get("duration_us")),
        )

    async def Top(
        self, request: pb.TopRequest, context: Context
    ) -> AsyncGenerator[pb.TopUpdate, None]:
        """ListProcesses again every ``interval_ms``, each update with the
        reductions and memory each process gained since the previous one.
        One walk at a time, bounded like ListProcesses; the stream ends after
        ``count`` updates, an hour, or when the caller goes."""
        limit = validate.limit(request.limit, "limit", 20, MAX_TOP)
        interval = validate.limit(request.interval_ms, "interval_ms", 2000, 60000, 1000) / 1000
        count = validate.limit(request.count, "count", MAX_TOP_UPDATES, MAX_TOP_UPDATES)
        node = self.calls.up(request.node).node
        ends = time.monotonic() + MAX_TOP_SECONDS
        previous: dict[str, tuple[int, int]] = {}
        for seq in range(1, count + 1):
            started = time.monotonic()
            top = await self._top(node, request.sort_by, limit)
            entries = []
            for p in top.processes:
                before = previous.get(p.pid)
                entries.append(
                    pb.TopEntry(
                        process=p,
                        reductions_change=0 if before is None else p.reductions - before[0],
                        memory_change=0 if before is None else p.memory - before[1],
                        new=before is None and seq > 1,
                    )
                )
            previous = {p.pid: (p.reductions, p.memory) for p in top.processes}
            yield pb.TopUpdate(
                node=node,
                seq=seq,
                processes=entries,
                process_count=top.process_count,
                truncated=top.truncated,
            )
            if seq == count or time.monotonic() >= ends:
                return
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def GetProcess(
        self, request: pb.GetProcessRequest, context: Context
    ) -> pb.GetProcessResponse:
        target = validate.pid_or_name(request.pid)
        messages = request.messages if request.HasField("messages") else 10
        if messages > 100:
            raise invalid(f"messages must be from 0 to 100 (got {messages})")
        state_timeout = validate.limit(
            request.state_timeout_ms, "state_timeout_ms", STATE_TIMEOUT_MS, 10000
        )
        opts = {
            Atom("messages"): messages,
            Atom("state"): not request.skip_state,
            Atom("state_timeout_ms"): state_timeout,
            Atom("sys_status"): request.sys_status,
        }
        # process_info (5 s) + copying messages (5 s) + sys:get_state (+ get_status), bounded.
        timeout = 10.5 + (2 if request.sys_status else 1) * state_timeout / 1000
        p = await self.calls.ops(request.node, OPS, "process", [target, opts], timeout)
        clear = current_caller().role > Role.VIEWER
        shown = _same if clear else redact_text
        return pb.GetProcessResponse(
            pid=text(p.get("pid")),
            registered_name=text(p.get("registered_name")),
            status=text(p.get("status")),
            current_function=text(p.get("current_function")),
            initial_call=text(p.get("initial_call")),
            memory=_int(p.get("memory")),
            message_queue_len=_int(p.get("message_queue_len")),
            reductions=_int(p.get("reductions")),
            heap_size=_int(p.get("heap_size")),
            total_heap_size=_int(p.get("total_heap_size")),
            stack_size=_int(p.get("stack_size")),
            trap_exit=p.get("trap_exit") is True,
            priority=text(p.get("priority")),
            group_leader=text(p.get("group_leader")),
            links=[text(x) for x in p.get("links", [])],
            links_count=_int(p.get("links_count")),
            monitors=[text(x) for x in p.get("monitors", [])],
            monitored_by=[text(x) for x in p.get("monitored_by", [])],
            stacktrace=[text(x) for x in p.get("stacktrace", [])],
            garbage_collection=text(p.get("garbage_collection")),
            dictionary=[
                pb.DictionaryEntry(
                    key=text(e.get("key")),
                    value=(
                        text(e.get("value"))
                        if clear
                        else redact_named(text(e.get("key")), text(e.get("value")))
                    ),
                )
                for e in p.get("dictionary", [])
            ],
            dictionary_size=_int(p.get("dictionary_size")),
            messages=[shown(text(x)) for x in p.get("messages", [])],
            messages_error=text(p.get("messages_error")),
            state=shown(text(p.get("state"))),
            state_error=shown(text(p.get("state_error"))),
            sys_status=shown(text(p.get("sys_status"))),
            sys_status_error=shown(text(p.get("sys_status_error"))),
        )

    async def TerminateProcess(
        self, request: pb.TerminateProcessRequest, context: Context
    ) -> pb.TerminateProcessResponse:
        target = validate.pid_or_name(request.pid)
        reason = validate.atom(request.reason, "reason") if request.reason else "kill"
        opts = {Atom("wait_ms"): WAIT_MS, Atom("check_ms"): CHECK_MS}
        timeout = (CHECK_MS + 1000 + WAIT_MS) / 1000
        # A refusal (an application master, a supervisor, a process whose
        # death would take one down, ...) is FAILED_PRECONDITION saying why.
        reply = await self.calls.ops(
            request.node, OPS, "terminate", [target, Atom(reason), opts], timeout
        )
        return pb.TerminateProcessResponse(
            pid=text(reply.get("pid")),
            reason=text(reply.get("reason")),
            terminated=reply.get("terminated") is True,
        )

    async def GarbageCollect(
        self, request: pb.GarbageCollectRequest, context: Context
    ) -> pb.GarbageCollectResponse:
        target: bytes | Atom = validate.pid_or_name(request.pid) if request.pid else Atom("all")
        pause = request.pause_ms if request.HasField("pause_ms") else 10
        if pause > 10000:
            raise invalid(f"pause_ms must be from 0 to 10000 (got {pause})")
        timeout_ms = validate.limit(request.timeout_ms, "timeout_ms", 60000, 600000, 100)
        opts = {
            Atom("batch_size"): validate.limit(request.batch_size, "batch_size", 100, 10000),
            Atom("pause_ms"): pause,
            Atom("timeout_ms"): timeout_ms,
        }
        # The agent stops at timeout_ms; its worker is killed 2 s (+ a pause) after.
        timeout = (timeout_ms + pause + 2000) / 1000 if request.pid == "" else 6.0
        reply = await self.calls.ops(request.node, OPS, "gc", [target, opts], timeout)
        return pb.GarbageCollectResponse(
            collected=_int(reply.get("collected")),
            bytes_freed=_int(reply.get("bytes_freed")),
            vanished=_int(reply.get("vanished")),
            batches=_int(reply.get("batches")),
            truncated=reply.get("truncated") is True,
            processes_memory_before=_int(reply.get("processes_memory_before")),
            processes_memory_after=_int(reply.get("processes_memory_after")),
            duration_us=_int(reply.get("duration_us")),
        )

    async def TerminateShells(
        self, request: pb.TerminateShellsRequest, context: Context
    ) -> pb.TerminateShellsResponse:
        # Each shell passes the same safety check as TerminateProcess (refused
        # ones are counted in spared), all within timeout_ms.
        opts = {Atom("include_local"): request.include_local, Atom("timeout_ms"): 5000}
        reply = await self.calls.ops(request.node, OPS, "terminate_shells", [opts], 6.0)
        return pb.TerminateShellsResponse(
            terminated=[
                pb.TerminatedShell(
                    pid=text(s.get("pid")),
                    kind=text(s.get("kind")),
                    remote=s.get("remote") is True,
                    group_leader_node=text(s.get("group_leader_node")),
                    current_function=text(s.get("current_function")),
                )
                for s in reply.get("terminated", [])
            ],
            spared=_int(reply.get("spared")),
        )
