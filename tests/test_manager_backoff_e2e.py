"""Issue 14 end to end: a peer that completes the handshake with the right
cookie and then sends garbage is retried on the manager's growing schedule
(not once a second), logged once (not per attempt), counted under its own
reason (not ``down``), while a real OTP 25 node managed by the same manager
keeps collecting on time."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

import pytest
from prometheus_client import generate_latest

from sidecar.config import parse_config
from sidecar.daemon import local_name_for
from sidecar.erldist.node import LocalNode
from sidecar.exporter.collector import build_registry
from sidecar.manager import RETRY_POLICY, NodeManager
from sidecar.model import NodeSnapshot, NodeState
from tests.support.hostile_peer import HostilePeer, Mode
from tests.support.nodes import ErlangNode
from tests.support.waiting import eventually

WINDOW = 20.0  # seconds the garbage peer is watched
INTERVAL = 1.0  # the real node's collect interval
#: an attempt's own time (EPMD lookup, connect, handshake, the garbage read)
#: and scheduling slack on a loaded 2-core machine, added to each delay
SLACK = 1.0


class Hooks:
    """The manager's hooks, recording when each node's snapshots arrive."""

    def __init__(self) -> None:
        self.snapshots: dict[str, list[float]] = {}

    def attach_options(self, node: str) -> Mapping[str, Any] | None:
        return None

    def collect_options(self, node: str) -> Mapping[str, Any]:
        return {}

    def on_snapshot(self, snapshot: NodeSnapshot) -> None:
        self.snapshots.setdefault(snapshot.node, []).append(time.monotonic())

    def on_node_state(self, node: str, event: str, detail: str) -> None:
        pass


def scheduled_delays(count: int) -> list[float]:
    """The first ``count`` delays of the manager's schedule, without jitter."""
    delays, d = [], RETRY_POLICY.initial
    for _ in range(count):
        delays.append(d)
        d = min(RETRY_POLICY.maximum, d * RETRY_POLICY.factor)
    return delays


def attempts_within(seconds: float, delays: list[float]) -> int:
    """Attempts made in ``seconds`` when the waits are ``delays``: the first
    at 0, one after each wait."""
    return 1 + sum(1 for t in itertools.accumulate(delays) if t <= seconds)


@pytest.fixture
async def peer(cookie: str, epmd_port: int) -> AsyncIterator[HostilePeer]:
    hostile = HostilePeer(Mode.GARBAGE, cookie, epmd_port=epmd_port).start()
    yield hostile
    hostile.stop()


async def test_a_garbage_peer_backs_off_logs_once_and_spares_a_real_node(
    peer: HostilePeer,
    otp25_node: ErlangNode,
    cookie: str,
    epmd_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="sidecar")
    caplog.set_level(logging.DEBUG, logger="sidecar.manager")
    config = parse_config(
        {
            "cluster": "e2e",
            "node_name": "beamside-backoff@127.0.0.1",
            "targets": [{"nodes": [otp25_node.name, peer.node_name], "cookie": cookie}],
            "intervals": {"metrics": f"{INTERVAL:g}s"},
        }
    )
    local = LocalNode(local_name_for(config), "unused", epmd_port=epmd_port)
    hooks = Hooks()
    manager = NodeManager(config.manager_config(), local, hooks=hooks)
    started = time.monotonic()
    await manager.start()
    try:
        await eventually(lambda: peer.accepted >= 1, 10, "first attempt at the garbage peer")
        first = peer.accept_times[0]
        await eventually(lambda: time.monotonic() >= first + WINDOW, WINDOW + 5, "the window")
        in_window = [t for t in peer.accept_times if t <= first + WINDOW]
        status = manager.status(peer.node_name)
        real = manager.status(otp25_node.name)
        metrics = generate_latest(build_registry(manager, "test")).decode()
    finally:
        await manager.stop()

    # Every attempt is one connection (a handshake, then garbage), and the
    # gaps between them follow the schedule: each wait is drawn from
    # [d/2, d] (equal jitter), plus the attempt's own time.
    assert peer.handshakes == peer.accepted
    gaps = [b - a for a, b in itertools.pairwise(in_window)]
    delays = scheduled_delays(len(gaps))
    for i, (gap, d) in enumerate(zip(gaps, delays, strict=True)):
        assert d / 2 - 0.05 <= gap <= d + SLACK, (i, gap, d, gaps)
    # far fewer than one a second: between the schedule's counts with the
    # longest and the shortest draws
    longest = attempts_within(WINDOW, [d + SLACK for d in scheduled_delays(30)])
    shortest = attempts_within(WINDOW, [d / 2 for d in scheduled_delays(30)])
    assert longest <= len(in_window) <= shortest, (len(in_window), longest, shortest, gaps)
    assert shortest <= WINDOW * 0.6

    # The reason is the error that ended each connection, not "down".
    assert status is not None and status.state is NodeState.DOWN
    assert set(status.connect_failures) == {"protocol"}, status.connect_failures
    failures = status.connect_failures["protocol"]
    assert failures in (peer.accepted, peer.accepted - 1)  # the last may still be under way
    assert status.last_error and "went down" not in status.last_error  # the error's own text
    line = (
        'beamside_node_connect_failures_total{cluster="e2e",family="unknown",'
        f'node="{peer.node_name}",reason="protocol"}} {float(failures)}'
    )
    assert line in metrics, [m for m in metrics.splitlines() if "connect_failures" in m]
    assert 'reason="down"' not in metrics

    # One line above DEBUG for the whole run of failures, with the reason and
    # the count; every later attempt at DEBUG only.
    mine = [
        r
        for r in caplog.records
        if r.name == "sidecar.manager" and getattr(r, "node", None) == peer.node_name
    ]
    loud = [r for r in mine if r.levelno >= logging.INFO and "managing" not in r.getMessage()]
    assert [(r.levelname, getattr(r, "reason", None)) for r in loud] == [("WARNING", "protocol")]
    assert getattr(loud[0], "attempts", None) == 1
    # Nor does the distribution layer log per attempt (the manager's line
    # says it once).
    layer = [
        (r.name, r.getMessage())
        for r in caplog.records
        if r.name.startswith("sidecar.erldist") and r.levelno >= logging.INFO
    ]
    assert layer == []
    quiet = [r for r in mine if r.levelno == logging.DEBUG and getattr(r, "reason", None)]
    assert len(quiet) == failures - 1
    assert [getattr(r, "attempts", None) for r in quiet] == list(range(2, failures + 1))

    # The real node was attached all along and collected on every tick.
    assert real is not None and real.state is NodeState.UP and real.attaches == 1
    times = hooks.snapshots[otp25_node.name]
    during = [t for t in times if first <= t <= first + WINDOW]
    assert len(during) >= WINDOW / INTERVAL - 2, len(during)
    late = [b - a for a, b in itertools.pairwise(times) if b - a > INTERVAL * 1.5]
    assert not late, late
    assert real.collect_errors == 0
    assert time.monotonic() - started < WINDOW + 20


#: what each misbehaviour is counted as: the error that ended the attempt
HOSTILE_REASONS: Final = {
    Mode.REFUSE: "handshake",  # closed before the handshake's first answer
    Mode.BAD_HANDSHAKE: "handshake",
    Mode.HUGE_FRAME: "frame_too_large",
    Mode.COMPRESSED_BOMB: "inflation",
}


async def test_each_misbehaviour_its_own_reason_one_line_and_the_schedule(
    otp25_node: ErlangNode,
    cookie: str,
    epmd_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="sidecar.manager")
    window = 10.0
    peers = [HostilePeer(mode, cookie, epmd_port=epmd_port).start() for mode in HOSTILE_REASONS]
    try:
        config = parse_config(
            {
                "cluster": "e2e",
                "node_name": "beamside-hostile@127.0.0.1",
                "targets": [
                    {"nodes": [otp25_node.name, *(p.node_name for p in peers)], "cookie": cookie}
                ],
                "intervals": {"metrics": f"{INTERVAL:g}s"},
            }
        )
        local = LocalNode(local_name_for(config), "unused", epmd_port=epmd_port)
        hooks = Hooks()
        manager = NodeManager(config.manager_config(), local, hooks=hooks)
        await manager.start()
        try:
            await eventually(lambda: all(p.accepted for p in peers), 10, "every peer tried")
            await eventually(
                lambda: time.monotonic() >= max(p.accept_times[0] for p in peers) + window,
                window + 5,
                "the window",
            )
            statuses = {p.mode: manager.status(p.node_name) for p in peers}
            accepted = {p.mode: len(p.accept_times) for p in peers}
            seen_at = time.monotonic()
            real = manager.status(otp25_node.name)
        finally:
            await manager.stop()
    finally:
        for p in peers:
            p.stop()

    for peer in peers:
        status = statuses[peer.mode]
        reason = HOSTILE_REASONS[peer.mode]
        assert status is not None and set(status.connect_failures) == {reason}, (
            peer.mode,
            status,
        )
        # no more attempts than the schedule allows with the shortest draws
        attempts = sum(status.connect_failures.values())
        elapsed = seen_at - peer.accept_times[0]
        assert attempts <= attempts_within(elapsed, [d / 2 for d in scheduled_delays(30)])
        assert attempts >= attempts_within(elapsed, [d + SLACK for d in scheduled_delays(30)]) - 1
        # one connection per attempt; a peer that closes without a word is
        # asked once more whether it speaks TLS (connection.py's probe)
        per_attempt = 2 if peer.mode is Mode.REFUSE else 1
        assert attempts <= accepted[peer.mode] <= per_attempt * (attempts + 1), peer
        loud = [
            (r.levelname, getattr(r, "reason", None))
            for r in caplog.records
            if r.name == "sidecar.manager"
            and getattr(r, "node", None) == peer.node_name
            and r.levelno >= logging.WARNING
        ]
        assert loud == [("WARNING", reason)], (peer.mode, loud)
    assert real is not None and real.state is NodeState.UP and real.attaches == 1
    times = hooks.snapshots[otp25_node.name]
    late = [b - a for a, b in itertools.pairwise(times) if b - a > INTERVAL * 1.5]
    assert not late, late
