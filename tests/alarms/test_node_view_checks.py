"""system_memory_high_watermark and disk_almost_full checked on real snapshots:
from the node's own view when memsup/disksup do not run (thresholds set low
raise them, set back clear them), from os_mon when they do."""

from __future__ import annotations

from typing import Any

from sidecar import agents
from sidecar.alarms.checks import AlarmChecker
from sidecar.alarms.engine import AlarmEngine
from sidecar.alarms.model import AlarmEvent, EventKind, Severity
from sidecar.erldist.node import LocalNode
from sidecar.model import NodeSnapshot
from tests.agents.conftest import (  # noqa: F401  (local: the fixture)
    collect_reply,
    local,
    snapshot,
)
from tests.conftest import NodeFactory
from tests.support.node_view import df, meminfo
from tests.support.nodes import ErlangNode

LOW = {"system_memory_high_watermark": {"minor": 0.01}, "disk_almost_full": {"minor": 1}}
VIEW_ALARMS = {"system_memory_high_watermark", "disk_almost_full"}


async def _snap(
    local: LocalNode,  # noqa: F811
    node: ErlangNode,
    checker: AlarmChecker,
) -> NodeSnapshot:
    await agents.ensure_loaded(local, node.name)
    return await snapshot(local, node, checker.collect_options(node.name, "test"))


def _active(engine: AlarmEngine) -> dict[str, Any]:
    return {a.id: a for a in engine.active()}


async def test_view_raises_when_set_low_and_clears_when_set_back(
    node_factory: NodeFactory,
    local: LocalNode,  # noqa: F811
) -> None:
    node = node_factory("otp28")  # no os_mon in this runtime
    events: list[AlarmEvent] = []
    engine = AlarmEngine("c")
    engine.subscribe(events.append)
    low = AlarmChecker(engine, LOW)
    assert low.collect_options(node.name, "test")["disk_view_interval_ms"] == 60_000
    low.on_snapshot(await _snap(local, node, low))
    active = _active(engine)
    assert active.keys() >= VIEW_ALARMS
    memory, disk = active["system_memory_high_watermark"], active["disk_almost_full"]
    assert memory.severity is Severity.MINOR and disk.severity is Severity.MINOR
    assert memory.info["source"] in ("meminfo", "cgroup_v1", "cgroup_v2")
    mine = meminfo()
    if memory.info["source"] == "meminfo":
        used = mine["MemTotal"] - mine["MemAvailable"]
        assert memory.info["limit_bytes"] == mine["MemTotal"]
        assert abs(memory.info["used_bytes"] - used) < 256 * 2**20
    assert disk.info["source"] == "df" and disk.info["path"] == str(node.log_dir)
    assert disk.info["mount"] == df(node.log_dir).mount
    assert f"{df(node.log_dir).capacity:.0f}%" in disk.cause

    # The thresholds set back (the catalogue's): both clear.
    back = AlarmChecker(engine)
    back.on_snapshot(await _snap(local, node, back))
    assert not VIEW_ALARMS & _active(engine).keys()
    cleared = {e.alarm.id for e in events if e.kind is EventKind.CLEARED}
    assert cleared >= VIEW_ALARMS


async def test_os_mon_is_the_source_when_memsup_and_disksup_run(
    node_factory: NodeFactory,
    local: LocalNode,  # noqa: F811
) -> None:
    """memsup/disksup running: their own alarms (through SASL) are the source;
    the low thresholds raise nothing from the view, which is not even read."""
    node = node_factory("otp25")
    assert node.eval("application:ensure_all_started(os_mon).").startswith("{ok,")
    engine = AlarmEngine("c")
    checker = AlarmChecker(engine, LOW)
    await agents.ensure_loaded(local, node.name)
    snap, data = await collect_reply(local, node, checker.collect_options(node.name, "test"))
    assert data["alarms"]["memory_view"] == "os_mon"
    assert data["alarms"]["disk_view"] == "os_mon"
    assert snap.alarms is not None and snap.alarms.memory_view is None
    checker.on_snapshot(snap)
    assert not VIEW_ALARMS & _active(engine).keys()

    # memsup's own alarm, set on the node, is what comes through.
    node.eval("alarm_handler:set_alarm({system_memory_high_watermark, []}).")
    checker.on_snapshot(await _snap(local, node, checker))
    alarm = _active(engine)["system_memory_high_watermark"]
    assert alarm.cause.startswith("set on the node") and "source" not in alarm.info
