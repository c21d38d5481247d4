"""Family checks proportional to change (issue 15): a module md5 map is walked
again only when it changed or a member joined, left or went down, and the
findings are those of the former code (:mod:`tests.alarms.family_reference`)
in every case, time-based parts (clock skew's hysteresis, ``delay``,
``hold``) included."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from sidecar.alarms.catalogue import GlobalParam
from sidecar.alarms.checks import AlarmChecker
from sidecar.alarms.engine import AlarmEngine, Finding
from sidecar.alarms.model import AlarmEvent, AlarmKey, EventKind, Severity
from sidecar.model import EnvValue, NodeSnapshot, NodeState, NodeStatus, NodeTime, Versions
from tests.alarms.family_reference import ReferenceChecker

T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class Reads:
    """Entries of the counted md5 maps read (one per lookup or per entry iterated)."""

    n: int = 0


class CountingMap(Mapping[str, str]):
    """An md5 map that counts how often it is read (shares its dict)."""

    def __init__(self, data: dict[str, str], reads: Reads) -> None:
        self._data = data
        self._reads = reads

    def __getitem__(self, key: str) -> str:
        self._reads.n += 1
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        for key in self._data:
            self._reads.n += 1
            yield key

    def __len__(self) -> int:
        self._reads.n += 1
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        self._reads.n += 1
        return key in self._data

    def items(self) -> Any:
        for item in self._data.items():
            self._reads.n += 1
            yield item


def snap(
    node: str,
    at: float,
    *,
    family: str = "f",
    modules: Mapping[str, str] | None = None,
    apps: Mapping[str, str] | None = None,
    env: Mapping[tuple[str, str], EnvValue | None] | None = None,
    peers: tuple[str, ...] | None = None,
    tz: float | None = None,
    skew: float | None = None,
) -> NodeSnapshot:
    """A snapshot taken at ``at`` whose node clock is ``skew`` s ahead of ours."""
    duration = 0.01
    return NodeSnapshot(
        node=node,
        family=family,
        cluster="c",
        taken_at=at,
        duration=duration,
        system_time_us=None if skew is None else (at - duration / 2 + skew) * 1e6,
        modules=modules,
        versions=None if apps is None else Versions(applications=apps),
        env=env,
        dist_nodes=peers,
        time=None if tz is None else NodeTime(utc_offset_s=tz),
    )


def up(nodes: list[str], family: str = "f") -> list[NodeStatus]:
    return [NodeStatus(n, family, NodeState.UP) for n in nodes]


def evaluate(
    checker: AlarmChecker, snaps: Mapping[str, NodeSnapshot], st: list[NodeStatus]
) -> None:
    """What the manager does every second."""
    checker.on_statuses(st)
    checker.on_family(snaps, st)


def test_md5_maps_not_walked_while_nothing_changes() -> None:
    """300 nodes x 5,000 modules: the maps are read when a snapshot arrives
    (to see whether they changed), never by an evaluation that has nothing
    new; one changed map is walked with the one other distinct map, once."""
    nodes, modules = 300, 5000
    clock = Clock()
    reads = Reads()
    base = {f"mod_{i}": f"{i:032x}" for i in range(modules)}
    base["beamside_agent"] = "0" * 32
    checker = AlarmChecker(AlarmEngine("c", clock=clock), interval=1, clock=clock)
    names = [f"n{i}@h" for i in range(nodes)]
    st = up(names)

    def arrive(node: str, data: dict[str, str]) -> NodeSnapshot:
        s = snap(node, clock.now, modules=CountingMap(data, reads), skew=0.0)
        checker.on_snapshot(s)
        snaps[node] = s
        return s

    snaps: dict[str, NodeSnapshot] = {}
    for n in names:
        arrive(n, base)
    # The former code walks every node's whole map at each evaluation.
    reference = ReferenceChecker(AlarmEngine("c", clock=clock), interval=1, clock=clock)
    for s in snaps.values():
        reference.on_snapshot(s)
    before = reads.n
    evaluate(reference, snaps, st)
    assert reads.n - before >= nodes * modules

    evaluate(checker, snaps, st)
    assert checker.recomputed["different_module_versions"] == 1
    for tick in range(20):
        clock.now += 1
        for n in names[tick * 15 : tick * 15 + 15]:  # new snapshots, same maps
            arrive(n, dict(base))
        before = reads.n
        evaluate(checker, snaps, st)
        assert reads.n == before, f"tick {tick}: an unchanged map was read"
    assert checker.recomputed["different_module_versions"] == 1
    assert checker.engine.active() == []

    # One node loads another version of mod_42: walked once, raised.
    changed = dict(base, mod_42="f" * 32)
    arrive(names[7], changed)
    before = reads.n
    evaluate(checker, snaps, st)
    walked = reads.n - before
    assert 0 < walked <= 2 * (modules + 1) + 2 * nodes  # two distinct maps, one listed module
    assert checker.recomputed["different_module_versions"] == 2
    (alarm,) = checker.engine.active()
    assert alarm.id == "different_module_versions"
    assert alarm.cause == "1 module(s) differ across the family: mod_42"
    expected = {n: ("f" * 32 if n == names[7] else f"{42:032x}") for n in names}
    assert alarm.info["modules"] == {"mod_42": expected}
    for _ in range(5):
        clock.now += 1
        before = reads.n
        evaluate(checker, snaps, st)
        assert reads.n == before
    assert checker.recomputed["different_module_versions"] == 2

    # Back to the family's version: cleared.
    arrive(names[7], dict(base))
    evaluate(checker, snaps, st)
    assert checker.engine.active() == []
    assert checker.recomputed["different_module_versions"] == 3


def _family_state(engine: AlarmEngine) -> list[tuple[Any, ...]]:
    return sorted(
        (str(a.key), a.severity, a.cause, a.node, a.family, repr(a.info)) for a in engine.active()
    )


def _events(events: list[AlarmEvent]) -> list[tuple[Any, ...]]:
    out = sorted((e.kind.value, str(e.alarm.key), e.alarm.severity, e.alarm.cause) for e in events)
    events.clear()
    return out


@pytest.mark.parametrize("seed", range(6))
def test_same_findings_as_the_former_code(seed: int) -> None:
    """Random changes (module versions, application versions, env values,
    links, time zones, clock skew around the thresholds, nodes going down,
    moving to another family, forgotten): after every evaluation the cached
    checks and the former code have the same alarms and published the same
    events."""
    rng = random.Random(seed)
    clock = Clock()
    overrides = {"dist_link_down": {"delay": 2}, "clock_skew": {"hold": 3}}
    params = [GlobalParam("app", "pool"), GlobalParam("app", "size", "g")]
    checkers: list[AlarmChecker] = []
    logs: list[list[AlarmEvent]] = []
    for cls in (AlarmChecker, ReferenceChecker):
        engine = AlarmEngine("c", clock=clock)
        log: list[AlarmEvent] = []
        engine.subscribe(log.append)
        checkers.append(cls(engine, overrides, params, interval=1, clock=clock))
        logs.append(log)
    names = [f"n{i}@h" for i in range(7)]
    base = {f"m{i}": f"v{i}" for i in range(30)}
    state: dict[str, dict[str, Any]] = {
        n: {
            "modules": dict(base),
            "apps": {"kernel": "8.5", "app": "1.0"},
            "env": {("app", "pool"): EnvValue(1, "10"), ("app", "size"): EnvValue(2, "3")},
            "peers": tuple(m for m in names if m != n),
            "tz": 0.0,
            "skew": 0.0,
            "family": "f" if i < 5 else "g",
            "state": NodeState.UP,
        }
        for i, n in enumerate(names)
    }
    snaps: dict[str, NodeSnapshot] = {}
    raised: set[str] = set()
    for tick in range(150):
        clock.now += 1
        for _ in range(rng.randrange(0, 3)):
            n = rng.choice(names)
            s = state[n]
            what = rng.randrange(10)
            if what == 0:
                s["modules"] = dict(s["modules"], **{rng.choice(list(base)): rng.choice("ab")})
            elif what == 1:
                s["apps"] = dict(s["apps"], app=rng.choice(("1.0", "1.1")))
                if rng.random() < 0.2:
                    s["apps"].pop("kernel", None)
            elif what == 2:
                key = rng.choice((("app", "pool"), ("app", "size")))
                value = rng.choice((None, EnvValue(1, "10"), EnvValue(5, "20")))
                s["env"] = {**s["env"], key: value}
            elif what == 3:
                others = [m for m in names if m != n]
                s["peers"] = tuple(rng.sample(others, rng.randrange(len(others) + 1)))
            elif what == 4:
                s["tz"] = rng.choice((0.0, 3600.0, None))
            elif what == 5:
                s["skew"] = rng.choice((None, 0.0, 0.95, 1.0, 4.6, 5.0, 6.0))
            elif what == 6:
                s["state"] = rng.choice((NodeState.UP, NodeState.DOWN, NodeState.CONNECTING))
            elif what == 7:
                s["family"] = rng.choice(("f", "g"))
            elif what == 8 and n in snaps:
                for checker in checkers:
                    checker.forget(n)
                del snaps[n]
                continue
        # About half the nodes collect this tick; md5s and env come every few.
        for n in names:
            s = state[n]
            if s["state"] is not NodeState.UP or (n in snaps and rng.random() < 0.5):
                continue
            snaps[n] = snap(
                n,
                clock.now - rng.random() * 0.5,
                family=s["family"],
                modules=s["modules"] if rng.random() < 0.5 or tick == 0 else None,
                apps=s["apps"],
                env=s["env"] if rng.random() < 0.5 or tick == 0 else None,
                peers=s["peers"],
                tz=s["tz"],
                skew=s["skew"],
            )
            for checker in checkers:
                checker.on_snapshot(snaps[n])
        statuses = [NodeStatus(n, state[n]["family"], state[n]["state"]) for n in names]
        for checker in checkers:
            evaluate(checker, snaps, statuses)
        new, old = (_family_state(c.engine) for c in checkers)
        assert new == old, f"seed {seed}, tick {tick}"
        assert _events(logs[0]) == _events(logs[1]), f"seed {seed}, tick {tick}"
        raised |= {a.id for a in checkers[0].engine.active()}
    # The scenario did exercise the family checks.
    assert {"different_module_versions", "different_application_versions", "clock_skew"} <= raised


def test_one_node_change_raises_and_clears_as_before() -> None:
    clock = Clock()
    engine = AlarmEngine("c", clock=clock)
    events: list[AlarmEvent] = []
    engine.subscribe(events.append)
    checker = AlarmChecker(engine, global_params=[GlobalParam("app", "pool")], interval=1)
    nodes = ["a", "b", "c"]
    env = {("app", "pool"): EnvValue(1, "10")}
    snaps = {n: snap(n, clock.now, modules={"m": "1"}, apps={"app": "1.0"}, env=env) for n in nodes}
    for s in snaps.values():
        checker.on_snapshot(s)
    st = up(nodes)
    evaluate(checker, snaps, st)
    assert engine.active() == [] and events == []
    computed = dict(checker.recomputed)

    snaps["b"] = snap("b", clock.now, modules={"m": "2"}, apps={"app": "1.1"}, env={})
    checker.on_snapshot(snaps["b"])
    for _ in range(3):
        evaluate(checker, snaps, st)
    # Raised once each, not again at the next evaluations.
    assert sorted((e.kind, e.alarm.id) for e in events) == [
        (EventKind.RAISED, "different_application_versions"),
        (EventKind.RAISED, "different_module_versions"),
        (EventKind.RAISED, "global_config_missing"),
    ]
    active = {a.id: a for a in engine.active()}
    assert active["different_module_versions"].info["modules"] == {
        "m": {"a": "1", "b": "2", "c": "1"}
    }
    assert active["different_application_versions"].info["applications"] == {
        "app": {"a": "1.0", "b": "1.1", "c": "1.0"}
    }
    assert active["global_config_missing"].info["missing_on"] == {"app.pool": ["b"]}
    # Computed once for the change, not at each of the three evaluations.
    for check in ("different_module_versions", "different_application_versions", "global_config"):
        assert checker.recomputed[check] == computed[check] + 1, check

    events.clear()
    snaps["b"] = snap("b", clock.now, modules={"m": "1"}, apps={"app": "1.0"}, env=env)
    checker.on_snapshot(snaps["b"])
    evaluate(checker, snaps, st)
    assert engine.active() == []
    assert sorted((e.kind, e.alarm.id) for e in events) == [
        (EventKind.CLEARED, "different_application_versions"),
        (EventKind.CLEARED, "different_module_versions"),
        (EventKind.CLEARED, "global_config_missing"),
    ]


def test_member_down_leaving_or_forgotten_updates_the_family() -> None:
    clock = Clock()
    engine = AlarmEngine("c", clock=clock)
    checker = AlarmChecker(engine, interval=1)
    nodes = ["a", "b", "c"]
    md5 = {"a": {"m": "1", "x": "1"}, "b": {"m": "1", "x": "2"}, "c": {"m": "2", "x": "1"}}
    snaps = {
        n: snap(n, clock.now, modules=md5[n], peers=tuple(p for p in nodes if p != n))
        for n in nodes
    }
    for s in snaps.values():
        checker.on_snapshot(s)
    key = AlarmKey("different_module_versions", "family:f")

    def modules() -> dict[str, Any]:
        alarm = engine.get(key)
        assert alarm is not None
        return dict(alarm.info["modules"])

    evaluate(checker, snaps, up(nodes))
    assert modules() == {"m": {"a": "1", "b": "1", "c": "2"}, "x": {"a": "1", "b": "2", "c": "1"}}
    # c goes down: only b's x differs now, c is no longer listed.
    down = [*up(["a", "b"]), NodeStatus("c", "f", NodeState.DOWN)]
    evaluate(checker, snaps, down)
    assert modules() == {"x": {"a": "1", "b": "2"}}
    assert engine.get(key).cause.startswith("1 module(s)")  # type: ignore[union-attr]
    # b moves to family g: a alone in f, the family's alarm clears.
    moved = [*up(["a"]), NodeStatus("b", "g", NodeState.UP), NodeStatus("c", "f", NodeState.DOWN)]
    evaluate(checker, snaps, moved)
    assert engine.get(key) is None
    # Both back: raised again with the three of them.
    evaluate(checker, snaps, up(nodes))
    assert set(modules()) == {"m", "x"}
    # c forgotten (no longer managed): gone from the comparison.
    checker.forget("c")
    del snaps["c"]
    evaluate(checker, snaps, up(["a", "b"]))
    assert modules() == {"x": {"a": "1", "b": "2"}}


def test_dist_link_down_follows_members() -> None:
    clock = Clock()
    engine = AlarmEngine("c", clock=clock)
    checker = AlarmChecker(engine, interval=1)
    snaps = {
        "a": snap("a", clock.now, peers=("b", "c")),
        "b": snap("b", clock.now, peers=("a", "c")),
        "c": snap("c", clock.now, peers=("a", "b")),
    }
    evaluate(checker, snaps, up(["a", "b", "c"]))
    assert engine.active() == []
    snaps["a"] = snap("a", clock.now, peers=("c",))  # a lost b, b still up
    evaluate(checker, snaps, up(["a", "b", "c"]))
    lost = engine.get(AlarmKey("dist_link_down", "a"))
    assert lost is not None and lost.info["lost"] == ["b"]
    before = checker.recomputed["dist_link_down"]
    evaluate(checker, snaps, up(["a", "b", "c"]))
    assert checker.recomputed["dist_link_down"] == before  # nothing changed
    # b goes down: not a lost link any more.
    evaluate(checker, snaps, [*up(["a", "c"]), NodeStatus("b", "f", NodeState.DOWN)])
    assert engine.get(AlarmKey("dist_link_down", "a")) is None
    evaluate(checker, snaps, up(["a", "b", "c"]))
    assert engine.get(AlarmKey("dist_link_down", "a")) is not None


def test_engine_skips_only_sources_with_nothing_active() -> None:
    """The engine's shortcut (nothing found, nothing active for the source)
    still clears what is active after raises, manual clears and clear_source."""
    clock = Clock()
    engine = AlarmEngine("c", clock=clock)
    events: list[AlarmEvent] = []
    engine.subscribe(events.append)

    def finding(alarm: str) -> Finding:
        return Finding(alarm, Severity.MAJOR, f"{alarm} holds", "fix it")

    def update(source: str, evaluated: list[str], found: list[str]) -> None:
        engine.update(
            source, node=source, family="f", evaluated=evaluated, findings=map(finding, found)
        )

    update("n", ["a", "b"], ["a", "b"])
    update("m", ["a"], ["a"])
    engine.clear(AlarmKey("a", "n"), "ops")
    update("n", ["b"], [])
    assert [str(a.key) for a in engine.active()] == ["a@m"]
    update("n", ["a", "b"], [])  # nothing active for n: nothing happens
    update("n", ["a"], ["a"])
    engine.clear_source("m")
    assert [str(a.key) for a in engine.active()] == ["a@n"]
    update("n", ["a"], [])
    update("m", ["a"], [])
    assert engine.active() == []
    seen = [(e.kind.value, str(e.alarm.key)) for e in events]
    # The first update raises a and b in either order (a set of ids).
    assert sorted(seen[:2]) == [("raised", "a@n"), ("raised", "b@n")]
    assert seen[2:] == [
        ("raised", "a@m"),
        ("cleared", "a@n"),
        ("cleared", "b@n"),
        ("raised", "a@n"),
        ("cleared", "a@m"),
        ("cleared", "a@n"),
    ]
