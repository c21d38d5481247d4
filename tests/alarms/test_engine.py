"""The alarm engine and checks on snapshot data (pure: no nodes needed)."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.alarms.catalogue import BUILTIN, GlobalParam
from sidecar.alarms.checks import AlarmChecker
from sidecar.alarms.engine import AlarmEngine, Finding, graded
from sidecar.alarms.model import AlarmEvent, AlarmKey, EventKind, Severity
from sidecar.erldist.term import Atom
from sidecar.model import NodeSnapshot, NodeState, NodeStatus
from tests.support.snapshots import node_snapshot

MI, MA, CR = Severity.MINOR, Severity.MAJOR, Severity.CRITICAL
LEVELS = ((MI, 100.0), (MA, 1000.0))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def engine(clock: Clock) -> tuple[AlarmEngine, list[AlarmEvent]]:
    events: list[AlarmEvent] = []
    eng = AlarmEngine("c", clock=clock)
    eng.subscribe(events.append)
    return eng, events


def test_at_least_25_builtin_alarms() -> None:
    assert len(BUILTIN) >= 25
    assert {
        "process_message_queue",
        "node_down",
        "atom_limit",
        "old_code",
        "different_module_versions",
        "global_config_inconsistent",
        "corrupt_startup_file",
        "clock_skew",
    } <= set(BUILTIN)


def test_graded_hysteresis() -> None:
    assert graded(99, LEVELS, None) is None
    assert graded(100, LEVELS, None) is MI
    # Held: stays minor down to 90% of the threshold, clears below.
    assert graded(95, LEVELS, MI) is MI
    assert graded(89, LEVELS, MI) is None
    assert graded(1000, LEVELS, MI) is MA
    # Major held down to 900, then drops to minor, not straight to clear.
    assert graded(950, LEVELS, MA) is MA
    assert graded(850, LEVELS, MA) is MI


def test_no_flapping_around_a_threshold(engine: tuple[AlarmEngine, list[AlarmEvent]]) -> None:
    eng, events = engine
    current = None
    for value in (101, 99, 98, 101, 97, 100, 96):
        current = graded(value, LEVELS, current)
        findings = [Finding("x", current, "c", "r")] if current else []
        eng.update("n", node="n", family="f", evaluated=["x"], findings=findings)
    assert [e.kind for e in events] == [EventKind.RAISED]


def test_raise_change_clear_and_dedup(engine: tuple[AlarmEngine, list[AlarmEvent]]) -> None:
    eng, events = engine
    f = Finding("x", MI, "cause", "repair", {"a": 1})
    for _ in range(3):
        eng.update("n1", node="n1", family="f", evaluated=["x"], findings=[f])
    eng.update(
        "n1", node="n1", family="f", evaluated=["x"], findings=[Finding("x", MA, "worse", "r")]
    )
    eng.update("n1", node="n1", family="f", evaluated=["y"], findings=[])  # x not evaluated
    assert eng.get(AlarmKey("x", "n1")) is not None
    eng.update("n1", node="n1", family="f", evaluated=["x"], findings=[])
    assert [e.kind for e in events] == [EventKind.RAISED, EventKind.CHANGED, EventKind.CLEARED]
    assert events[1].alarm.severity is MA
    assert events[2].alarm.cleared_at is not None and not events[2].alarm.active
    assert eng.active() == []


def test_operator_actions(engine: tuple[AlarmEngine, list[AlarmEvent]]) -> None:
    eng, events = engine
    eng.update("n", node="n", family="f", evaluated=["x"], findings=[Finding("x", MA, "c", "r")])
    key = AlarmKey("x", "n")
    assert eng.acknowledge(key, "alice").acknowledged_by == "alice"
    assert eng.comment(key, "bob", "looking").comments[-1].text == "looking"
    eng.clear(key, "carol")
    assert [e.kind for e in events][-3:] == [
        EventKind.ACKNOWLEDGED,
        EventKind.COMMENTED,
        EventKind.CLEARED,
    ]
    assert events[-1].who == "carol"
    with pytest.raises(KeyError):
        eng.acknowledge(key, "alice")


def snapshot(node: str, family: str = "f", taken_at: float = 1e6, **sections: Any) -> NodeSnapshot:
    data: dict[str, Any] = {
        "limits": {
            "process_count": 100,
            "process_limit": 1000,
            "atom_count": 10,
            "atom_limit": 1000,
            "ets_count": 1,
            "ets_limit": 100,
        },
        "processes": {"mq_max": 0, "top_message_queue": []},
        "uptime_ms": 10_000,
        "system_time_us": int(taken_at * 1e6),
    }
    for key, value in sections.items():
        merge = isinstance(data.get(key), dict) and isinstance(value, dict)
        data[key] = {**data[key], **value} if merge else value
    return node_snapshot(node, family, "c", taken_at, 0.01, data)


def test_limits_and_queue_checks(clock: Clock) -> None:
    eng = AlarmEngine("c", clock=clock)
    checker = AlarmChecker(eng, {"atom_limit": {"minor": 0.5}}, interval=1)
    checker.on_snapshot(
        snapshot(
            "n",
            limits={"atom_count": 600},
            processes={
                "mq_max": 150_000,
                "top_message_queue": [{"pid": b"<0.1.0>", "message_queue_len": 150_000}],
            },
        )
    )
    active = {a.id: a for a in eng.active()}
    assert active["atom_limit"].severity is MI and "600 of 1000" in active["atom_limit"].cause
    assert active["process_message_queue"].severity is MA
    assert active["process_message_queue"].info["top_offenders"][0]["pid"] == "<0.1.0>"
    checker.on_snapshot(snapshot("n"))
    assert eng.active() == []


def test_failed_section_neither_raises_nor_clears(clock: Clock) -> None:
    eng = AlarmEngine("c", clock=clock)
    checker = AlarmChecker(eng, interval=1)
    checker.on_snapshot(snapshot("n", limits={"process_count": 990}))
    assert [a.id for a in eng.active()] == ["process_limit"]
    broken = snapshot("n", limits=(Atom("error"), Atom("timeout")))
    assert str(broken.errors["limits"]) == "limits failed: timeout"
    checker.on_snapshot(broken)
    assert [a.id for a in eng.active()] == ["process_limit"]


def test_node_down_with_delay(clock: Clock) -> None:
    eng = AlarmEngine("c", clock=clock)
    checker = AlarmChecker(eng, {"node_down": {"delay": 10}}, interval=1, clock=clock)
    down = NodeStatus("n", "f", NodeState.DOWN, last_error="connection refused")
    checker.on_statuses([down])
    assert eng.active() == []
    clock.now += 11
    checker.on_statuses([down])
    (alarm,) = eng.active()
    assert alarm.id == "node_down" and alarm.severity is CR and "refused" in alarm.cause
    up = NodeStatus("n", "f", NodeState.UP)
    checker.on_statuses([up])
    assert eng.active() == []


def test_family_checks(clock: Clock) -> None:
    eng = AlarmEngine("c", clock=clock)
    checker = AlarmChecker(eng, global_params=[GlobalParam("app", "pool")], interval=1)
    a = snapshot(
        "a",
        versions={"applications": {"app": b"1.0", "kernel": b"8.5"}},
        modules={"m": b"aa", "beamside_agent": b"x"},
        env={(Atom("app"), Atom("pool")): {"hash": 1, "text": b"10"}},
    )
    b = snapshot(
        "b",
        versions={"applications": {"app": b"1.1", "kernel": b"8.5"}},
        modules={"m": b"bb", "beamside_agent": b"y"},
        env={},
    )
    for s in (a, b):
        checker.on_snapshot(s)
    up = [NodeStatus(n, "f", NodeState.UP) for n in ("a", "b")]
    checker.on_family({"a": a, "b": b}, up)
    active = {a.id: a for a in eng.active()}
    assert active["different_module_versions"].info["modules"] == {"m": {"a": "aa", "b": "bb"}}
    assert active["different_module_versions"].node == ""
    assert active["different_module_versions"].key.source == "family:f"
    assert "app" in active["different_application_versions"].info["applications"]
    assert active["global_config_missing"].info["missing_on"] == {"app.pool": ["b"]}
    assert "global_config_inconsistent" not in active


def test_sasl_alarms_forwarded_and_cleared(clock: Clock) -> None:
    eng = AlarmEngine("c", clock=clock)
    checker = AlarmChecker(eng, interval=1)
    sasl = [
        {"id": b'{disk_almost_full,"/data"}', "description": b"[]"},
        {"id": b"my_alarm", "description": b'"disk on fire"'},
    ]
    checker.on_snapshot(snapshot("n", alarms={"sasl": {"count": 2, "alarms": sasl}}))
    assert {a.id for a in eng.active()} == {"disk_almost_full", "my_alarm"}
    checker.on_snapshot(snapshot("n", alarms={"sasl": {"count": 1, "alarms": sasl[1:]}}))
    assert {a.id for a in eng.active()} == {"my_alarm"}
    checker.on_snapshot(snapshot("n", alarms={"sasl": {"count": 0, "alarms": []}}))
    assert eng.active() == []


def test_dist_link_down_time_zone_and_clock_skew(clock: Clock) -> None:
    eng = AlarmEngine("c", clock=clock)
    checker = AlarmChecker(eng, interval=1, clock=clock)
    up = [NodeStatus(n, "f", NodeState.UP) for n in ("a", "b")]
    a = snapshot("a", dist_nodes=[Atom("b")], time={"utc_offset_s": 0})
    # b's clock is 3 s ahead
    b = snapshot(
        "b", dist_nodes=[Atom("a")], time={"utc_offset_s": 3600}, system_time_us=1_000_003_000_000
    )
    checker.on_family({"a": a, "b": b}, up)
    active = {x.id: x for x in eng.active()}
    assert "dist_link_down" not in active
    assert active["time_zone_mismatch"].key.source == "family:f"
    assert active["clock_skew"].severity is MI and "3.00s" in active["clock_skew"].cause
    # a loses its link to b while both are up.
    a2 = snapshot("a", dist_nodes=[], time={"utc_offset_s": 0})
    checker.on_family({"a": a2, "b": b}, up)
    lost = eng.get(AlarmKey("dist_link_down", "a"))
    assert lost is not None and lost.info["lost"] == ["b"]
    checker.on_family({"a": a, "b": b}, up)
    assert eng.get(AlarmKey("dist_link_down", "a")) is None
