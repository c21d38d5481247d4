"""The node manager in-process: targets added and removed at run time, the live
path, and the OTLP bridge over the same registry (real nodes throughout); the
reconnect schedule and its log lines (NodeRetry, clock and draws pinned)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from sidecar.backoff import BackoffPolicy
from sidecar.config import CookieSource, parse_config
from sidecar.daemon import local_name_for
from sidecar.erldist.errors import (
    DistTimeout,
    NodeDown,
    PeerClosed,
    PeerSilent,
    RemoteProtocolError,
)
from sidecar.erldist.node import LocalNode
from sidecar.exporter.collector import build_registry
from sidecar.exporter.otlp import OtlpBridge
from sidecar.manager import (
    HEALTHY_AFTER,
    RETRY_COOKIE,
    RETRY_MAX,
    RETRY_MIN,
    RETRY_POLICY,
    NodeManager,
    NodeRetry,
)
from sidecar.model import NodeState
from tests.agents.conftest import NO_RESIDUE, RESIDUE_EXPR
from tests.conftest import NodeFactory
from tests.support.nodes import ErlangNode
from tests.support.waiting import eventually

RESIDUE = (
    '{[M || {M, _} <- code:all_loaded(), lists:prefix("beamside", atom_to_list(M))],'
    " nodes(hidden)}."
)


@pytest.fixture
async def manager(otp25_node: ErlangNode, epmd_port: int) -> AsyncIterator[NodeManager]:
    config = parse_config(
        {
            "cluster": "unit",
            "node_name": "beamside-manager@127.0.0.1",
            "targets": [{"nodes": [otp25_node.name], "cookie": otp25_node.cookie}],
            "intervals": {"metrics": "1s"},
        }
    )
    local = LocalNode(local_name_for(config), "unused", epmd_port=epmd_port)
    mgr = NodeManager(config.manager_config(), local)
    await mgr.start()
    yield mgr
    await mgr.stop()


def is_up(manager: NodeManager, node: str) -> bool:
    status = manager.status(node)
    return status is not None and status.state is NodeState.UP and node in manager.snapshots


async def test_targets_added_and_removed_at_run_time(
    manager: NodeManager, node_factory: NodeFactory, otp25_node: ErlangNode
) -> None:
    await eventually(lambda: is_up(manager, otp25_node.name), 20, "seed up")
    assert manager.ready
    late = node_factory("otp28")
    assert manager.add_target(late.name, cookie=CookieSource("inline", late.cookie), family="x")
    assert not manager.add_target(late.name, cookie=CookieSource("inline", late.cookie))
    await eventually(lambda: is_up(manager, late.name), 20, "late node up")
    status = manager.status(late.name)
    assert status is not None and status.family == "x" and status.agent_version >= 1

    assert await manager.remove_target(late.name)
    assert manager.status(late.name) is None and late.name not in manager.snapshots
    # The node notices the closed connection on its own, a moment later.
    await eventually(lambda: late.eval(RESIDUE) == "{[],[]}", 5, "no residue on the node")
    assert not await manager.remove_target(late.name)
    assert is_up(manager, otp25_node.name)


async def test_a_stop_past_its_deadline_leaves_the_nodes_to_their_watchdogs(
    node_factory: NodeFactory, epmd_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Thousands of nodes cannot all detach within a pod's grace period: those
    not done by the deadline are disconnected, and beamside still leaves
    nothing on them (the node's watchdog removes it, as after a crash)."""
    nodes = [node_factory("otp25"), node_factory("otp28")]
    config = parse_config(
        {
            "cluster": "unit",
            "node_name": "beamside-manager-stop@127.0.0.1",
            "targets": [{"nodes": [n.name for n in nodes], "cookie": nodes[0].cookie}],
            "intervals": {"metrics": "1s"},
        }
    )
    local = LocalNode(local_name_for(config), "unused", epmd_port=epmd_port)
    mgr = NodeManager(config.manager_config(), local)
    await mgr.start()
    try:
        for n in nodes:
            await eventually(lambda n=n: is_up(mgr, n.name), 20, f"{n.name} up")
    finally:
        with caplog.at_level(logging.WARNING, logger="sidecar.manager"):
            await mgr.stop(deadline=0.0)
    assert "detached 0 of 2 nodes within 0 s; disconnecting from the other 2" in caplog.text
    for n in nodes:
        await eventually(lambda n=n: n.eval(RESIDUE_EXPR) == NO_RESIDUE, 15, "no residue")


async def test_live_path(manager: NodeManager, otp25_node: ErlangNode) -> None:
    await eventually(lambda: is_up(manager, otp25_node.name), 20, "up")
    values = await manager.live(otp25_node.name, ["process_count", "memory_total"])
    assert values["process_count"] > 10 and values["memory_total"] > 1_000_000
    with pytest.raises(KeyError):
        await manager.live("nobody@127.0.0.1", ["process_count"])
    # The stream yields at intervals.live (1 s here).
    started = time.monotonic()
    readings = []
    async for reading in manager.live_stream(otp25_node.name, ["reductions"]):
        readings.append(reading["reductions"])
        if len(readings) == 3:
            break
    assert 1.5 < time.monotonic() - started < 5
    assert readings == sorted(readings)


async def test_family_from_release_when_not_overridden(
    manager: NodeManager, otp25_node: ErlangNode
) -> None:
    await eventually(lambda: is_up(manager, otp25_node.name), 20, "up")
    status = manager.status(otp25_node.name)
    # A plain `erl` runs no release: the agent says so, and the family follows.
    assert status is not None and status.family == "erlang"
    assert manager.snapshots[otp25_node.name].family == "erlang"


async def test_otlp_bridge_exports_the_same_series(
    manager: NodeManager, otp25_node: ErlangNode
) -> None:
    await eventually(lambda: is_up(manager, otp25_node.name), 20, "up")
    registry = build_registry(manager, "test")
    reader = InMemoryMetricReader()
    bridge = OtlpBridge(registry, reader)
    bridge.refresh()
    data = reader.get_metrics_data()
    assert data is not None
    metrics = {
        m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }
    assert "erlang_vm_processes" in metrics and "beamside_node_up" in metrics
    (point,) = metrics["beamside_node_up"].data.data_points
    assert point.attributes["node"] == otp25_node.name and point.value == 1
    assert point.attributes["cluster"] == "unit"
    reductions = metrics["erlang_vm_statistics_reductions_total"].data
    assert reductions.is_monotonic
    bridge.shutdown()


# ------------------------------------------------------------ the schedule


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def exact_retry(clock: Clock, healthy_after: float = HEALTHY_AFTER) -> NodeRetry:
    """No jitter taken off (draws pinned to 0), the clock in the test's hands."""
    return NodeRetry(RETRY_POLICY, healthy_after=healthy_after, clock=clock, random=lambda: 0.0)


#: RETRY_POLICY without jitter, as the module docstring lists it
SCHEDULE = [0.25 * 1.5**n for n in range(14)] + [60.0, 60.0]


def test_the_schedule_constants() -> None:
    assert (RETRY_MIN, RETRY_MAX, HEALTHY_AFTER) == (0.25, 60.0, 30.0)
    assert RETRY_POLICY.factor == 1.5 and RETRY_POLICY.jitter == 0.5  # equal jitter
    assert SCHEDULE[13] == pytest.approx(48.65, abs=0.01)  # the last below the cap


def test_every_kind_of_failure_grows_one_schedule_to_the_cap() -> None:
    clock = Clock()
    retry = exact_retry(clock)
    kinds = ["refused", "timeout", "handshake", "protocol", "down", "tls", "epmd"]
    delays = []
    for i in range(len(SCHEDULE)):
        delay, _ = retry.failed(kinds[i % len(kinds)])
        delays.append(delay)
        clock.now += delay
    assert delays == pytest.approx(SCHEDULE)
    assert retry.failures == len(SCHEDULE)


def test_jitter_draws_within_the_lower_half() -> None:
    low = NodeRetry(RETRY_POLICY, clock=Clock(), random=lambda: 0.999)
    high = NodeRetry(RETRY_POLICY, clock=Clock(), random=lambda: 0.0)
    for _ in range(10):
        (d_low, _), (d_high, _) = low.failed("refused"), high.failed("refused")
        assert d_high / 2 <= d_low < d_high * 0.51


def test_an_attach_that_dies_at_once_keeps_the_schedule_growing() -> None:
    clock = Clock()
    retry = exact_retry(clock)
    delays = []
    for _ in range(len(SCHEDULE)):
        delay, _ = retry.failed("protocol")
        delays.append(delay)
        clock.now += delay
        retry.attached()
        clock.now += 1.0
        assert retry.collected() is None  # one good collect is not healthy
    assert delays == pytest.approx(SCHEDULE)


def test_the_schedule_starts_over_only_after_the_healthy_period() -> None:
    clock = Clock()
    retry = exact_retry(clock)
    for _ in range(5):
        retry.failed("refused")  # SCHEDULE[0:5] taken
    retry.attached()
    clock.now += HEALTHY_AFTER - 0.1
    assert retry.collected() is None
    # not healthy: the schedule went on
    assert retry.failed("down") == (pytest.approx(SCHEDULE[5]), True)
    retry.attached()
    clock.now += HEALTHY_AFTER
    assert retry.collected() is not None  # healthy: told, and the run is over
    assert retry.reason is None and retry.failures == 0
    delay, news = retry.failed("down")  # a healthy node that went away: quick
    assert (delay, news) == (RETRY_MIN, True)
    assert retry.failed("down") == (SCHEDULE[1], False)


def test_floors_keep_slow_failures_slow_in_the_same_schedule() -> None:
    retry = exact_retry(Clock())
    delays = [retry.failed("cookie", RETRY_COOKIE)[0] for _ in range(len(SCHEDULE))]
    # raised to 15 s until the schedule passes it (its 12th delay, 21.6 s)
    assert delays == pytest.approx([15.0] * 11 + SCHEDULE[11:])
    # the floor did not hold the schedule back for the next kind of failure
    assert retry.failed("refused")[0] == 60.0


def test_news_is_one_line_per_state_change() -> None:
    clock = Clock()
    retry = exact_retry(clock)
    told = [retry.failed("protocol")[1] for _ in range(5)]
    assert told == [True, False, False, False, False]
    assert retry.failed("refused")[1] is True  # another reason: news
    assert retry.failed("refused")[1] is False
    clock.now += 7.0
    back = retry.attached()
    assert back is not None
    assert (back.reason, back.failures, back.seconds) == ("refused", 7, 7.0)
    # it dies before it is healthy: the operator was told it is up, so news
    assert retry.failed("refused")[1] is True
    assert retry.attached() is None  # up again in the same run: not news
    assert retry.failed("refused")[1] is False  # ... nor its next death
    assert retry.attached() is None
    clock.now += HEALTHY_AFTER
    healthy = retry.collected()  # the last line said "down": news
    assert healthy is not None and healthy.failures == 9
    assert retry.collected() is None  # once


def test_a_quiet_return_ends_the_run_without_a_second_line() -> None:
    clock = Clock()
    retry = exact_retry(clock)
    retry.failed("down")
    assert retry.attached() is not None
    clock.now += HEALTHY_AFTER
    assert retry.collected() is None  # "up again" was the last line already
    assert retry.reason is None
    assert retry.failed("down") == (RETRY_MIN, True)


def test_the_first_attach_without_failures_is_not_a_run() -> None:
    retry = exact_retry(Clock())
    assert retry.attached() is None and retry.collected() is None
    assert retry.streak() is None


def test_a_custom_policy() -> None:
    retry = NodeRetry(BackoffPolicy(1.0, 4.0, jitter=0.0), clock=Clock())
    assert [retry.failed("x")[0] for _ in range(4)] == [1.0, 2.0, 4.0, 4.0]


# ------------------------------------------------------------ with a real node


def loud_lines(caplog: pytest.LogCaptureFixture, node: str) -> list[tuple[str, str]]:
    """(level, message) of the manager's lines about ``node`` above DEBUG."""
    return [
        (r.levelname, r.getMessage())
        for r in caplog.records
        if r.name == "sidecar.manager"
        and getattr(r, "node", None) == node
        and r.levelno > logging.DEBUG
    ]


async def test_a_node_killed_and_restarted_is_logged_per_state_change(
    node_factory: NodeFactory, epmd_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="sidecar.manager")
    node = node_factory("otp25")
    config = parse_config(
        {
            "cluster": "unit",
            "node_name": "beamside-retry@127.0.0.1",
            "targets": [{"nodes": [node.name], "cookie": node.cookie}],
            "intervals": {"metrics": "1s"},
        }
    )
    local = LocalNode(local_name_for(config), "unused", epmd_port=epmd_port)
    mgr = NodeManager(config.manager_config(), local, healthy_after=2.0)
    await mgr.start()
    try:
        await eventually(lambda: is_up(mgr, node.name), 20, "up")
        assert loud_lines(caplog, node.name)[-1] == ("INFO", f"attached to {node.name}")
        caplog.clear()

        node.kill()

        def failures() -> int:
            status = mgr.status(node.name)
            return sum(status.connect_failures.values()) if status is not None else 0

        await eventually(lambda: failures() >= 6, 20, "six failures")
        node.start()
        await eventually(lambda: is_up(mgr, node.name), 20, "up again")
        status = mgr.status(node.name)
        assert status is not None and status.attaches == 2
        total = sum(status.connect_failures.values())
        # the connection's end, then EPMD not knowing the name: two states,
        # two lines, however many attempts; then one line for the return
        lines = loud_lines(caplog, node.name)
        assert [level for level, _ in lines] == ["WARNING", "WARNING", "INFO"], lines
        # the end of the stream: "closed" once connection.py raises PeerClosed
        assert re.search(r"\((down|closed)\)", lines[0][1]) and "failure 1," in lines[0][1]
        assert "(not_registered)" in lines[1][1] and "failure 2," in lines[1][1]
        assert lines[2][1].startswith(f"{node.name} is up again after {total} attempts (")
        debug = [
            r
            for r in caplog.records
            if getattr(r, "node", None) == node.name and r.levelno == logging.DEBUG
        ]
        assert len([r for r in debug if getattr(r, "reason", None)]) == total - 2
        # the waits grew while it was away, on the schedule (equal jitter)
        waits = [getattr(r, "retry_in", 0.0) for r in caplog.records if hasattr(r, "retry_in")]
        assert len(waits) == total and waits[0] <= RETRY_MIN
        for n, wait in enumerate(waits):
            scheduled = RETRY_MIN * RETRY_POLICY.factor**n
            assert scheduled / 2 <= wait <= scheduled, (n, waits)

        # healthy for healthy_after: the next loss is retried at once again
        await asyncio_sleep_collecting(mgr, node.name, 3.0)
        caplog.clear()
        node.kill()
        await eventually(lambda: failures() > total, 10, "the next loss")
        first = next(r for r in caplog.records if hasattr(r, "retry_in"))
        assert first.levelname == "WARNING" and getattr(first, "attempts", None) == 1
        assert getattr(first, "retry_in", 1.0) <= RETRY_MIN
    finally:
        await mgr.stop()


async def asyncio_sleep_collecting(mgr: NodeManager, node: str, seconds: float) -> None:
    """Wait ``seconds`` and check the node collected all along."""
    before = mgr.ticks_completed
    deadline = time.monotonic() + seconds
    await eventually(lambda: time.monotonic() >= deadline, seconds + 1, "the wait")
    assert mgr.ticks_completed >= before + seconds - 2
    assert is_up(mgr, node)


async def test_collects_failing_in_a_row_are_one_line_and_their_end_another(
    manager: NodeManager, otp25_node: ErlangNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="sidecar.manager")
    node = otp25_node.name
    await eventually(lambda: is_up(manager, node), 20, "up")
    caplog.clear()
    # rex suspended: every collect (an rpc) times out, the connection stays
    otp25_node.eval("sys:suspend(rex).")

    def errors() -> int:
        status = manager.status(node)
        return status.collect_errors if status is not None else 0

    try:
        await eventually(lambda: errors() >= 3, 15, "three failed collects")
    finally:
        otp25_node.eval("sys:resume(rex).")
    before = manager.ticks_completed
    await eventually(lambda: manager.ticks_completed > before, 10, "collecting again")
    lines = loud_lines(caplog, node)
    count = errors()
    assert lines == [
        ("WARNING", f"collection on {node} failed (timeout): timeout; failure 1"),
        ("INFO", f"collection on {node} works again after {count} failures"),
    ], lines
    status = manager.status(node)
    assert status is not None and status.state is NodeState.UP and status.attaches == 1


def test_a_generic_node_down_is_replaced_by_the_connections_close_error() -> None:
    class Box:
        lost: BaseException | None = None

    managed = Box()
    generic = NodeDown("n@h went down")
    cause = NodeManager._cause  # a staticmethod: (managed, exc) -> the error to count
    assert cause(managed, generic) is generic  # type: ignore[arg-type]
    for lost in (RemoteProtocolError("bad frame"), PeerSilent("quiet"), PeerClosed("eof")):
        managed.lost = lost
        assert cause(managed, generic) is lost  # type: ignore[arg-type]
    # a specific error of the attempt itself is kept
    timeout = DistTimeout("late")
    assert cause(managed, timeout) is timeout  # type: ignore[arg-type]
    managed.lost = ValueError("not a distribution error")
    assert cause(managed, generic) is generic  # type: ignore[arg-type]
