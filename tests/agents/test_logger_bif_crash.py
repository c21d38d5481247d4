"""Crash reports of BIF errors arrive readable, not as ``FORMAT ERROR`` (issue 11, item 2).

On OTP 25.2 ``proc_lib``'s report callback raises inside ``unicode_util``
when it is given a numeric ``chars_limit`` and the crash came from a BIF
(the extended error info of ``erl_error``): every such crash report reached
Loki as ``FORMAT ERROR: {report, ...}``.  Here real nodes (OTP 25, OTP 28,
Elixir) crash a ``proc_lib`` process with ``ets:delete(no_such_table, x)``,
and on Elixir a ``Task`` and an ``Agent`` the same way; each crash report
forwarded by the handler names the error, the failing call, the pid and the
initial call, within the handler's byte limit.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sidecar.agents import EventOptions
from sidecar.agents.events import NodeEvent
from sidecar.erldist.node import LocalNode
from tests.agents.events_helpers import Collected, attach_events
from tests.conftest import NodeFactory
from tests.support.nodes import Runtime

SPAWN = (
    'P = proc_lib:spawn(fun() -> receive go -> ets:delete(no_such_table, {{tag, "{tag}"}}) end'
    " end), P ! go, pid_to_list(P)."
)


def crash_of(pid: str, tag: str) -> Callable[[NodeEvent], bool]:
    def match(e: NodeEvent) -> bool:
        return e.fields.get("report") == "crash_report" and (pid in e.message or tag in e.message)

    return match


def readable(e: NodeEvent, pid: str, tag: str) -> None:
    text = e.message
    assert "FORMAT ERROR" not in text, text
    assert "bad argument" in text or "badarg" in text, text
    assert "ets:delete" in text and tag in text, text
    assert pid in text and "initial call" in text, text
    assert e.level == "error" and e.fields["pid"] == pid


@pytest.mark.parametrize("runtime", ["otp25", "otp28", "elixir"])
async def test_bif_crash_report_is_readable(
    runtime: Runtime, node_factory: NodeFactory, local: LocalNode
) -> None:
    node = node_factory(runtime)
    box = await attach_events(local, node)
    got = Collected(box)
    tag = f"bif-{runtime}"
    pid = (await node.aeval(SPAWN.replace("{tag}", tag))).strip('"')
    (crash,) = await got.until(crash_of(pid, tag))
    readable(crash, pid, tag)
    assert not crash.fields.get("truncated")
    assert not [e for e in got.events if "FORMAT ERROR" in e.message]


async def test_bif_crash_report_cut_to_max_bytes(
    node_factory: NodeFactory, local: LocalNode
) -> None:
    """A report too long for max_bytes: still formatted (not FORMAT ERROR), then cut."""
    node = node_factory("otp25")
    box = await attach_events(local, node, EventOptions(max_bytes=600))
    got = Collected(box)
    tag = "x" * 2000
    pid = (await node.aeval(SPAWN.replace("{tag}", tag))).strip('"')
    (crash,) = await got.until(crash_of(pid, "crasher"))
    assert "FORMAT ERROR" not in crash.message
    assert crash.message.startswith("  crasher:") and "initial call" in crash.message
    assert pid in crash.message and "bad argument" in crash.message
    assert crash.fields["truncated"] is True and len(crash.message.encode()) <= 600


async def test_elixir_task_and_agent_crashes(node_factory: NodeFactory, local: LocalNode) -> None:
    node = node_factory("elixir")
    box = await attach_events(local, node)
    got = Collected(box)
    task = (
        await node.aeval(
            "{ok, P} = 'Elixir.Task':start(fun() -> receive go ->"
            ' ets:delete(no_such_table, {tag, "task-crash"}) end end), P ! go, pid_to_list(P).'
        )
    ).strip('"')
    agent = (
        await node.aeval(
            "{ok, A} = 'Elixir.Agent':start(fun() -> 0 end),"
            " 'Elixir.Agent':cast(A, fun(_) -> ets:delete(no_such_table, {tag, \"agent-crash\"})"
            " end), pid_to_list(A)."
        )
    ).strip('"')
    (task_crash,) = await got.until(crash_of(task, "task-crash"))
    readable(task_crash, task, "task-crash")
    (agent_crash,) = await got.until(crash_of(agent, "agent-crash"))
    readable(agent_crash, agent, "agent-crash")
    await got.drain(0.5)
    bad = [e.message[:200] for e in got.events if "FORMAT ERROR" in e.message]
    assert bad == []
    # The other reports of these crashes (the Task's own, the GenServer's) are readable too.
    for tag in ("task-crash", "agent-crash"):
        about = [e for e in got.events if tag in e.message]
        assert len(about) >= 2, [(e.fields.get("report"), e.message[:100]) for e in about]
