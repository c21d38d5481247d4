"""``process_message_queue_growth`` on a real node: a process whose queue a
producer fills faster than it reads is named while its queue is still far
below ``process_message_queue``'s threshold, and the alarm clears when the
growth stops."""

from __future__ import annotations

import asyncio

from sidecar import agents
from sidecar.alarms.checks import AlarmChecker
from sidecar.alarms.engine import AlarmEngine
from sidecar.erldist.node import LocalNode
from tests.agents.conftest import local, snapshot  # noqa: F401  (local: the fixture)
from tests.conftest import NodeFactory

ALARM = "process_message_queue_growth"


async def test_a_queue_growing_at_every_collect_is_named(
    node_factory: NodeFactory,
    local: LocalNode,  # noqa: F811
) -> None:
    node = node_factory("otp25")
    await agents.ensure_loaded(local, node.name)
    engine = AlarmEngine("c")
    checker = AlarmChecker(engine, {ALARM: {"window": 2}})

    async def tick() -> list[str]:
        checker.on_snapshot(await snapshot(local, node))
        return [a.cause for a in engine.active() if a.id == ALARM]

    node.eval(
        "register(bs_hoarder, spawn(fun() -> receive never -> ok end end)),"
        " register(bs_producer, spawn(fun F() ->"
        " [bs_hoarder ! {m, I} || I <- lists:seq(1, 50)], timer:sleep(100), F() end)), ok."
    )
    causes: list[str] = []
    for _ in range(10):
        causes = await tick()
        if causes:
            break
        await asyncio.sleep(0.5)
    (cause,) = causes
    (alarm,) = [a for a in engine.active() if a.id == ALARM]
    assert "the queue of bs_hoarder grew at every collect" in cause, cause
    assert alarm.severity.name == "MAJOR"  # about 500 messages/s (major from 100)
    (grower,) = [g for g in alarm.info["growing"] if g.get("name") == "bs_hoarder"]
    assert grower["messages_per_s"] > 100 and grower["message_queue_len"] < 10_000
    assert not [a for a in engine.active() if a.id == "process_message_queue"]

    node.eval("exit(whereis(bs_producer), kill), ok.")
    await asyncio.sleep(0.3)
    await tick()  # the queue no longer grows
    assert await tick() == []
