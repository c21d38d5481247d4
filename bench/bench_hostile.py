"""Sidecar memory and collect timing under 50 hostile peers (issue 14).

    python bench/bench_hostile.py                    # 5 nodes, 50 peers, about 2 min
    python bench/bench_hostile.py --nodes 5 --hostile 50 --window 40 --interval 2

This process is the sidecar: one ``LocalNode`` with the default
``distribution:`` limits and the real ``NodeManager`` managing ``--nodes``
real OTP 25 nodes, collecting every ``--interval`` seconds (15 s in
production, shortened so a window holds many collects).  ``--hostile`` fake
nodes (:mod:`tests.support.hostile_peer`, every misbehaviour in turn:
garbage, huge_frame, compressed_bomb, silent, refuse, bad_handshake,
slow_handshake) run in a child process, so their own memory is not counted.

1. **Reference**: only the healthy nodes for ``--window`` seconds.
2. **Attack**: the hostile peers are added as manager targets (they
   reconnect on the manager's backoff) and, with ``--hammer`` (default),
   every one is also reconnected by a loop every 0.2 s regardless of
   backoff, for the same window.

Printed: RSS of this process (VmRSS sampled every 0.1 s, and VmHWM with
the peak reset at each phase start) in both phases, the growth against the
bound ``--rss-bound`` MiB, the healthy nodes' collect lateness (gap between
consecutive collect starts of one node minus the interval: p50, p99, max),
collect errors, the hostile connections made and the failure reasons seen.
Exit status 1 when the bound is exceeded or a healthy node missed a collect.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sidecar import agents
from sidecar.alarms.checks import AlarmChecker
from sidecar.alarms.engine import AlarmEngine
from sidecar.config import Config, CookieSource, Intervals, Target
from sidecar.erldist.errors import DistError
from sidecar.erldist.limits import DistLimits
from sidecar.erldist.node import LocalNode
from sidecar.manager import NodeManager
from tests.support.hostile_peer import HostilePeer, Mode
from tests.support.nodes import (
    Epmd,
    ErlangNode,
    random_cookie,
    start_nodes,
    stop_nodes,
)

CLUSTER = "bench"
MiB = 1 << 20


# ------------------------------------------------------------------ the hostile child


def serve_hostile(count: int, cookie: str, epmd_port: int) -> None:
    """Child process: ``count`` hostile peers; their names on stdout, then
    their counts once stdin closes."""
    modes = list(Mode)
    peers = [
        HostilePeer(modes[i % len(modes)], cookie, epmd_port=epmd_port).start()
        for i in range(count)
    ]
    print(json.dumps([p.node_name for p in peers]), flush=True)
    sys.stdin.read()
    accepted: dict[str, int] = collections.Counter()
    handshakes: dict[str, int] = collections.Counter()
    for peer in peers:
        accepted[peer.mode.value] += peer.accepted
        handshakes[peer.mode.value] += peer.handshakes
        peer.stop()
    print(json.dumps({"accepted": accepted, "handshakes": handshakes}), flush=True)


# ------------------------------------------------------------------ measuring


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


class CollectStarts:
    """Wraps ``agents.collect`` (what ``NodeManager._collect_loop`` calls) to
    record when each node's collect starts."""

    def __init__(self) -> None:
        self.starts: dict[str, list[float]] = collections.defaultdict(list)
        self._original = agents.collect

        async def collect(local: LocalNode, node: str, *a: object, **kw: object) -> object:
            self.starts[node].append(time.monotonic())
            return await self._original(local, node, *a, **kw)  # type: ignore[arg-type]

        agents.collect = collect  # type: ignore[assignment]

    def lateness(
        self, nodes: Sequence[str], since: float, until: float, interval: float
    ) -> list[float]:
        late: list[float] = []
        for node in nodes:
            times = [t for t in self.starts[node] if since <= t <= until]
            late += [b - a - interval for a, b in itertools.pairwise(times)]
        return sorted(late)


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


@dataclass
class Phase:
    name: str
    rss_mean_mib: float
    rss_max_mib: float
    hwm_mib: float
    lateness: list[float]
    collects: int
    collect_errors: int


async def measure(
    name: str,
    window: float,
    manager: NodeManager,
    healthy: Sequence[str],
    starts: CollectStarts,
    interval: float,
) -> Phase:
    errors0 = sum(s.collect_errors for s in manager.statuses() if s.node in healthy)
    reset_peak()
    samples: list[int] = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < window:
        samples.append(status_kib("VmRSS"))
        await asyncio.sleep(0.1)
    t1 = time.monotonic()
    late = starts.lateness(healthy, t0, t1, interval)
    collects = sum(len([t for t in starts.starts[n] if t0 <= t <= t1]) for n in healthy)
    errors = sum(s.collect_errors for s in manager.statuses() if s.node in healthy) - errors0
    return Phase(
        name,
        sum(samples) / len(samples) / 1024,
        max(samples) / 1024,
        status_kib("VmHWM") / 1024,
        late,
        collects,
        errors,
    )


def report(phase: Phase) -> None:
    ms = [x * 1000 for x in phase.lateness]
    print(
        f"  {phase.name:<9}  RSS mean {phase.rss_mean_mib:6.1f} MiB  max sampled "
        f"{phase.rss_max_mib:6.1f} MiB  peak (VmHWM) {phase.hwm_mib:6.1f} MiB  | "
        f"{phase.collects} collects, {phase.collect_errors} errors, lateness "
        f"p50 {pct(ms, 0.5):6.1f} ms  p99 {pct(ms, 0.99):6.1f} ms  max {pct(ms, 1.0):6.1f} ms"
    )


# ------------------------------------------------------------------ the sidecar


async def sidecar(args: argparse.Namespace, healthy: Sequence[str], cookie: str, epmd: int) -> int:
    limits = DistLimits()
    local = LocalNode("bench-hostile@127.0.0.1", cookie, epmd_port=epmd, limits=limits)
    config = Config(
        cluster=CLUSTER,
        node_name=None,
        targets=(Target(tuple(healthy), CookieSource("inline", cookie), "none", "bench"),),
        intervals=Intervals(metrics=args.interval),
    )
    manager = NodeManager(
        config.manager_config(), local, AlarmChecker(AlarmEngine(CLUSTER), interval=args.interval)
    )
    starts = CollectStarts()
    await manager.start()
    deadline = time.monotonic() + 60
    while len(manager.snapshots) < len(healthy) or not manager.ready:
        if time.monotonic() > deadline:
            raise RuntimeError(f"attached {len(manager.snapshots)} of {len(healthy)} in 60 s")
        await asyncio.sleep(0.2)
    await asyncio.sleep(2 * args.interval)  # steady state
    print(f"limits: {limits}")
    reference = await measure("reference", args.window, manager, healthy, starts, args.interval)
    report(reference)

    child = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve-hostile",
            str(args.hostile),
            "--cookie",
            cookie,
            "--epmd-port",
            str(epmd),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    names: list[str] = json.loads(await asyncio.to_thread(child.stdout.readline))
    stop = asyncio.Event()

    async def hammer(peer: str) -> None:
        while not stop.is_set():
            with contextlib.suppress(DistError):
                await local.connect(peer, timeout=3)
            await asyncio.sleep(0.2)

    for name in names:
        manager.add_target(name, cookie=CookieSource("inline", cookie), family="hostile")
    hammers = [asyncio.create_task(hammer(n)) for n in names] if args.hammer else []
    attack = await measure("attack", args.window, manager, healthy, starts, args.interval)
    stop.set()
    await asyncio.gather(*hammers)
    reasons: collections.Counter[str] = collections.Counter()
    for status in manager.statuses():
        if status.node in names:
            reasons.update(status.connect_failures)
    child.stdin.close()
    stats = json.loads(await asyncio.to_thread(child.stdout.readline))
    child.wait(10)
    await manager.stop()
    report(attack)
    growth = attack.hwm_mib - reference.rss_mean_mib
    print(
        f"  hostile connections accepted by mode: {dict(stats['accepted'])} "
        f"(handshakes completed: {sum(stats['handshakes'].values())})"
    )
    print(f"  manager failure reasons on hostile targets: {dict(reasons)}")
    print(
        f"  distribution buffers, all peers: peak {local.memory.peak / MiB:.2f} MiB of "
        f"{limits.max_buffered_total / MiB:.0f} MiB budget"
    )
    ok_rss = growth < args.rss_bound
    expected = len(healthy) * (args.window / args.interval - 1)
    ok_collects = attack.collect_errors == 0 and attack.collects >= 0.9 * expected
    print(
        f"  RSS growth under attack (peak - reference mean): {growth:.1f} MiB; bound "
        f"{args.rss_bound} MiB: {'OK' if ok_rss else 'EXCEEDED'}"
    )
    print(
        f"  healthy collects during the attack: {attack.collects} of ~{expected:.0f} expected, "
        f"{attack.collect_errors} errors: {'OK' if ok_collects else 'MISSED'}"
    )
    return 0 if ok_rss and ok_collects else 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--nodes", type=int, default=5, help="healthy OTP 25 nodes (5)")
    ap.add_argument("--hostile", type=int, default=50, help="hostile peers (50)")
    ap.add_argument("--window", type=float, default=40.0, help="seconds per phase (40)")
    ap.add_argument("--interval", type=float, default=2.0, help="metrics interval, s (2)")
    ap.add_argument("--rss-bound", type=float, default=64.0, help="max RSS growth, MiB (64)")
    ap.add_argument(
        "--no-hammer",
        dest="hammer",
        action="store_false",
        help="only the manager reconnects the hostile peers (on its backoff)",
    )
    ap.add_argument("--serve-hostile", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--cookie", default="", help=argparse.SUPPRESS)
    ap.add_argument("--epmd-port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_hostile:
        serve_hostile(args.serve_hostile, args.cookie, args.epmd_port)
        return
    print(
        f"bench_hostile {datetime.date.today().isoformat()}: CPython "
        f"{platform.python_version()}, {os.cpu_count()} cores; {args.nodes} OTP 25 nodes, "
        f"{args.hostile} hostile peers, interval {args.interval:g} s, window {args.window:g} s"
        f"{', hammered' if args.hammer else ''}"
    )
    with Epmd() as epmd:
        os.environ["ERL_EPMD_PORT"] = str(epmd.port)
        cookie = random_cookie()
        nodes = [
            ErlangNode("otp25", cookie=cookie, epmd_port=epmd.port, extra_args=["+sbwt", "none"])
            for _ in range(args.nodes)
        ]
        try:
            start_nodes(nodes, timeout=60)
            code = asyncio.run(sidecar(args, [n.name for n in nodes], cookie, epmd.port))
        finally:
            stop_nodes(nodes, timeout=5)
    sys.exit(code)


if __name__ == "__main__":
    main()
