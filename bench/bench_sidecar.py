"""Sidecar cost per node per tick, and /metrics render time, against real nodes.

    python bench/bench_sidecar.py                   # 100 nodes, about 1.5 min
    python bench/bench_sidecar.py --nodes 40 --rounds 20
    python bench/bench_sidecar.py --mesh            # nodes in one full Erlang mesh
    python bench/bench_sidecar.py --render-only     # /metrics only, recorded replies, no nodes

Starts a private EPMD and ``--nodes`` real OTP 25 nodes on 127.0.0.1 (plain
kernel + stdlib nodes, started with ``+sbwt none`` so that a hundred idle
BEAMs do not spin on two cores; that does not change what they reply), loads
and attaches beamside's real agents with one hidden ``LocalNode``, then, in
the same run:

1. **Sidecar cost per node per tick.** ``--rounds`` collection rounds, each
   one concurrent ``collect`` on every node followed by what
   ``NodeManager._collect_loop`` does with the reply (decoded into the typed
   ``NodeSnapshot`` of ``sidecar.model``, status update, stored in the
   snapshots mapping, the built-in alarm checks run on it). The CPU time of
   *this* Python process (``time.process_time``, cross-checked with
   ``getrusage``; not wall time) divided by nodes x rounds is the cost of one
   node's tick: rpc request, dist framing, decoding the reply's bytes,
   decoding the terms into the typed snapshot and storing it, asyncio
   scheduling. Also measured: what the attached nodes cost the sidecar between
   ticks (``--idle`` window, no collection: dist ticks, timers), pure
   ``decode`` of a real collect reply (the bytes of
   ``erlang:term_to_binary(beamside_agent:collect(#{}))``, obtained by rpc),
   and the typed decode + status + store alone, to show their shares. The real
   ``NodeManager`` then runs at a 1 s interval for ``--manager-window``
   seconds as a cross-check of the same figure through the production code.
   Extrapolation: nodes per core at 15 s = 15 s / CPU per node per tick. There
   is no external reference for this figure: it is compared with the target
   (1,000 nodes per core at 15 s, issue 3) and with the decode-only cost
   measured in the same run.
2. **/metrics scrape time, old path against the per-snapshot text cache.**
   The real snapshots (after the nodes are stopped, so the machine is quiet;
   with ``--render-only`` no nodes at all: the recorded replies of
   tests/vectors/replies) in a snapshot source with an ``up`` status per
   node.  For 1, 10, 100 and 300 nodes (``--render-nodes``) and for
   OpenMetrics (what Prometheus asks for) and text 0.0.4: the old path,
   prometheus_client's encoder over ``vm_metric_families`` (every sample
   formatted at every scrape: ``generate(fmt, registry)``), against the
   cached path ``registry.exposition(fmt)`` that /metrics serves, cold (every
   node has a new snapshot object before each scrape), 1-in-15 (a rotating
   fifteenth of the nodes: a 15 s interval scraped every second) and warm
   (nothing changed: a second scraper); median and best wall time, ratios
   old/cached, and whether both give the same bytes for the node families.
   When fewer real nodes ran, their snapshots are replicated under distinct
   node names (only the ``node`` label differs); the output says so.
   Target: under 500 ms for 100 nodes.  Over 400 ms on the old path (or
   with ``--profile``) one scrape of each path is profiled with cProfile.

``--mesh`` connects every node to every other first (as in a real cluster:
each reply then carries per-peer distribution stats for all peers), which
makes replies and expositions much bigger.

Every node and the EPMD are stopped on the way out, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime
import functools
import gc
import io
import os
import platform
import pstats
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sidecar import __version__, agents
from sidecar.alarms.checks import AlarmChecker
from sidecar.alarms.engine import AlarmEngine
from sidecar.config import Config, CookieSource, Intervals, Target
from sidecar.erldist.node import LocalNode
from sidecar.erldist.term import Atom, Charlist, decode
from sidecar.exporter.collector import build_registry
from sidecar.exporter.exposition import OPENMETRICS, TEXT, Format, generate
from sidecar.manager import NodeManager
from sidecar.model import NodeSnapshot, NodeState, NodeStatus, decode_snapshot
from tests.support.golden import RUNTIMES, golden_snapshot
from tests.support.nodes import Epmd, ErlangNode, random_cookie, start_nodes, stop_nodes

INTERVAL = 15.0  # the default metrics interval the extrapolation is for
TARGET_NODES_PER_CORE = 1000
TARGET_RENDER_MS = 500.0
PROFILE_ABOVE_MS = 400.0
CLUSTER = "bench"
FAMILY = "bench"
QUIET_NODE_FLAGS = ["+sbwt", "none", "+sbwtdcpu", "none", "+sbwtdio", "none"]


# --------------------------------------------------------------------------- helpers


@dataclass
class Cpu:
    """CPU of this process: process_time and getrusage (user, sys)."""

    process: float
    user: float
    sys: float

    @classmethod
    def now(cls) -> Cpu:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return cls(time.process_time(), ru.ru_utime, ru.ru_stime)

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(self.process - other.process, self.user - other.user, self.sys - other.sys)


def rss_mb(pids: Sequence[int | None]) -> float:
    total_kb = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            status = Path(f"/proc/{pid}/status").read_text()
            total_kb += int(status.split("VmRSS:")[1].split()[0])
    return total_kb / 1024


def mem_total_gb() -> float:
    with contextlib.suppress(OSError, IndexError, ValueError):
        text = Path("/proc/meminfo").read_text()
        return int(text.split("MemTotal:")[1].split()[0]) / 1024 / 1024
    return float("nan")


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} µs"


async def bounded(jobs: Sequence[Callable[[], Awaitable[Any]]], limit: int) -> list[Any]:
    sem = asyncio.Semaphore(limit)

    async def run(job: Callable[[], Awaitable[Any]]) -> Any:
        async with sem:
            return await job()

    return await asyncio.gather(*(run(j) for j in jobs))


class Source:
    """A ``SnapshotSource`` over fixed snapshots, every node ``up``."""

    def __init__(self, snapshots: Mapping[str, NodeSnapshot], cluster: str = CLUSTER) -> None:
        self.cluster = cluster
        self.snapshots = dict(snapshots)
        self._statuses = [
            NodeStatus(
                node,
                snap.family,
                NodeState.UP,
                agent_version=agents.AGENT_VERSION,
                attaches=1,
                last_collect_duration=snap.duration,
                last_success=snap.taken_at,
            )
            for node, snap in self.snapshots.items()
        ]

    def statuses(self) -> list[NodeStatus]:
        return self._statuses


# --------------------------------------------------------------------------- phase 1


class Sidecar:
    """One hidden node attached to every bench node, ticking like the manager."""

    def __init__(self, local: LocalNode, names: Sequence[str]) -> None:
        self.local = local
        self.names = list(names)
        self.statuses = {n: NodeStatus(n, FAMILY, NodeState.UP) for n in names}
        self.snapshots: dict[str, NodeSnapshot] = {}
        #: the built-in alarm checks, as the daemon gives the manager
        self.checker = AlarmChecker(AlarmEngine(CLUSTER), interval=15.0)
        #: the last raw collect reply of each node
        self.replies: dict[str, dict[str, Any]] = {}

    async def attach_all(self) -> None:
        async def one(name: str) -> None:
            await agents.ensure_loaded(self.local, name, timeout=60)
            await agents.attach(self.local, name, timeout=30)

        await bounded([functools.partial(one, n) for n in self.names], 16)

    async def tick(self, node: str) -> None:
        """The body of ``NodeManager._collect_loop`` for one successful tick."""
        started = time.monotonic()
        data = await agents.collect(self.local, node, timeout=30)
        duration = time.monotonic() - started
        self.replies[node] = data
        self.snapshots[node] = snapshot = store(self.statuses, node, data, duration)
        self.checker.on_snapshot(snapshot)

    async def round(self) -> None:
        await asyncio.gather(*(self.tick(n) for n in self.names))

    async def raw_collect_reply(self, node: str) -> bytes:
        """``erlang:term_to_binary(beamside_agent:collect(#{}))`` on ``node``, by rpc
        (erl_scan / erl_parse / erl_eval: the node needs no compiler)."""
        src = "erlang:term_to_binary(beamside_agent:collect(#{}))."
        rpc = self.local.rpc
        scanned = await rpc(node, "erl_scan", "string", [Charlist(src)])
        parsed = await rpc(node, "erl_parse", "parse_exprs", [scanned[1]])
        value = await rpc(node, "erl_eval", "exprs", [parsed[1], []], timeout=30)
        if not (type(value) is tuple and value[0] == "value" and isinstance(value[1], bytes)):
            raise RuntimeError(f"unexpected erl_eval reply {value!r:.200}")
        return value[1]


def time_decode(raw: bytes, runs: int) -> tuple[float, float, float]:
    """(best, median, mean CPU) seconds per ``decode(raw)``."""
    for _ in range(20):
        decode(raw)
    gc.collect()
    samples = []
    c0 = time.process_time()
    for _ in range(runs):
        t0 = time.perf_counter()
        decode(raw)
        samples.append(time.perf_counter() - t0)
    cpu = (time.process_time() - c0) / runs
    return min(samples), statistics.median(samples), cpu


def store(
    statuses: dict[str, NodeStatus], node: str, data: Mapping[str, Any], duration: float
) -> NodeSnapshot:
    """What ``NodeManager._collect_loop`` does with a reply: decode it into the
    typed snapshot, update the node's status."""
    snapshot = decode_snapshot(
        data,
        node=node,
        family=statuses[node].family,
        cluster=CLUSTER,
        taken_at=time.time(),
        duration=duration,
    )
    statuses[node] = replace(
        statuses[node],
        last_collect_duration=duration,
        last_success=time.time(),
        uptime_seconds=(snapshot.uptime_ms or 0.0) / 1000,
    )
    return snapshot


def time_snapshot_store(sidecar: Sidecar, runs: int) -> tuple[float, float]:
    """Mean seconds for decoding a reply into the snapshot + status update +
    store, and for the alarm checks on that snapshot."""
    node = sidecar.names[0]
    data = sidecar.replies[node]
    statuses: dict[str, NodeStatus] = dict(sidecar.statuses)
    snapshots: dict[str, NodeSnapshot] = {}
    c0 = time.process_time()
    for _ in range(runs):
        snapshots[node] = store(statuses, node, data, 0.01)
    c1 = time.process_time()
    checker = AlarmChecker(AlarmEngine(CLUSTER), interval=15.0)
    ticks = [replace(snapshots[node], taken_at=time.time() + 15 * i) for i in range(runs)]
    c1 = time.process_time()
    for snapshot in ticks:
        checker.on_snapshot(snapshot)
    c2 = time.process_time()
    return (c1 - c0) / runs, (c2 - c1) / runs


async def mesh(nodes: Sequence[ErlangNode], local: LocalNode, timeout: float = 120) -> int:
    """Connect every node to every other; the smallest ``length(nodes())`` seen."""
    names = [n.name for n in nodes]
    listing = ",".join(f"'{n}'" for n in names)
    # every node pings every other (global would complete the mesh anyway)
    await asyncio.gather(
        *(
            n.aeval(f"[net_adm:ping(N) || N <- [{listing}], N =/= node()], ok.", timeout=timeout)
            for n in nodes
        )
    )
    deadline = time.monotonic() + timeout
    while True:
        counts = await asyncio.gather(*(local.rpc(n, "erlang", "nodes", []) for n in names))
        least = min(len(c) for c in counts)
        if least >= len(names) - 1 or time.monotonic() > deadline:
            return least
        await asyncio.sleep(0.5)


def bench_manager(local: LocalNode, names: Sequence[str], cookie: str) -> NodeManager:
    """The real NodeManager over the bench nodes, at a 1 s interval."""
    config = Config(
        cluster=CLUSTER,
        node_name=None,
        targets=(Target(tuple(names), CookieSource("inline", cookie), "none", FAMILY),),
        intervals=Intervals(metrics=1.0),
    )
    checker = AlarmChecker(AlarmEngine(CLUSTER), interval=1.0)
    return NodeManager(config.manager_config(), local, checker)


async def manager_check(
    manager: NodeManager, names: Sequence[str], window: float
) -> tuple[float, int, int]:
    """Run the manager; (CPU s, node-ticks, collect errors) over ``window``."""
    await manager.start()
    deadline = time.monotonic() + 60
    while len(manager.snapshots) < len(names) or not manager.ready:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"manager attached {len(manager.snapshots)} of {len(names)} nodes in 60 s"
            )
        await asyncio.sleep(0.2)
    await asyncio.sleep(2.0)  # let every node's loop reach its steady state
    gc.collect()
    errors0 = sum(s.collect_errors for s in manager.statuses())
    ticks0, c0 = manager.ticks_completed, Cpu.now()
    await asyncio.sleep(window)
    ticks1, c1 = manager.ticks_completed, Cpu.now()
    errors = sum(s.collect_errors for s in manager.statuses()) - errors0
    return (c1 - c0).process, ticks1 - ticks0, errors


@dataclass
class CostResult:
    nodes: int
    rounds: int
    per_tick: float
    round_wall_median: float
    idle_per_node_s: float
    reply_bytes: int
    decode: tuple[float, float, float]
    snapshot_store: float
    checks: float
    manager: tuple[float, int, int] | None
    snapshots: dict[str, NodeSnapshot]
    otp: str
    peers_min: int | None


async def sidecar_cost(
    args: argparse.Namespace, nodes: Sequence[ErlangNode], cookie: str, epmd_port: int
) -> CostResult:
    names = [n.name for n in nodes]
    local = LocalNode("bench-sidecar@127.0.0.1", cookie, epmd_port=epmd_port)
    manager: NodeManager | None = None
    try:
        sidecar = Sidecar(local, names)
        t0 = time.monotonic()
        await sidecar.attach_all()
        print(f"agents loaded and attached on {len(names)} nodes in {time.monotonic() - t0:.1f} s")
        otp = agents.text(await local.rpc(names[0], "erlang", "system_info", [Atom("otp_release")]))
        peers_min = None
        if args.mesh:
            t0 = time.monotonic()
            peers_min = await mesh(nodes, local)
            print(
                f"full mesh: every node sees at least {peers_min} visible peers "
                f"(+ beamside, hidden) after {time.monotonic() - t0:.1f} s"
            )

        for _ in range(3):  # warm: connections, atom caches, code paths
            await sidecar.round()

        # What attached nodes cost us between ticks (dist ticks, timers, nothing else).
        gc.collect()
        c0 = Cpu.now()
        t0 = time.monotonic()
        await asyncio.sleep(args.idle)
        idle_cpu = (Cpu.now() - c0).process
        idle_per_node_s = idle_cpu / (time.monotonic() - t0) / len(names)

        # The measured rounds.
        gc.collect()
        walls = []
        c0 = Cpu.now()
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            await sidecar.round()
            walls.append(time.perf_counter() - t0)
        cpu = Cpu.now() - c0
        per_tick = cpu.process / (len(names) * args.rounds)
        print(
            f"{args.rounds} rounds x {len(names)} nodes: sidecar CPU {cpu.process:.3f} s "
            f"(getrusage user {cpu.user:.3f} s + sys {cpu.sys:.3f} s), "
            f"wall per round median {statistics.median(walls) * 1000:.0f} ms"
        )

        raw = await sidecar.raw_collect_reply(names[0])
        dec = time_decode(raw, args.decode_runs)
        snap_store, checks = time_snapshot_store(sidecar, 20_000)

        manager_figures = None
        if args.manager_window > 0:
            manager = bench_manager(local, names, cookie)
            manager_figures = await manager_check(manager, names, args.manager_window)
        return CostResult(
            nodes=len(names),
            rounds=args.rounds,
            per_tick=per_tick,
            round_wall_median=statistics.median(walls),
            idle_per_node_s=idle_per_node_s,
            reply_bytes=len(raw),
            decode=dec,
            snapshot_store=snap_store,
            checks=checks,
            manager=manager_figures,
            snapshots=dict(sidecar.snapshots),
            otp=otp,
            peers_min=peers_min,
        )
    finally:
        if manager is not None:
            await manager.stop()  # detaches every node, closes the local node
        else:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    asyncio.gather(
                        *(agents.detach(local, n, timeout=10) for n in names),
                        return_exceptions=True,
                    ),
                    30,
                )
            await local.close()


def report_cost(r: CostResult) -> None:
    best, median, dec_cpu = r.decode
    per_15s = r.per_tick + r.idle_per_node_s * INTERVAL
    per_core = INTERVAL / r.per_tick
    per_core_all = INTERVAL / per_15s
    print()
    print(f"== 1. Sidecar cost per node per tick ({r.nodes} real OTP {r.otp} nodes) ==")
    print(
        "Reference: the target itself (1,000 nodes per core at 15 s) and the decode-only "
        "cost of a real reply, both in this run; there is no external reference."
    )
    print(f"collect reply (term_to_binary of the node's answer): {r.reply_bytes:,} bytes")
    print(f"CPU per node per tick (rpc + decode + snapshot + checks): {us(r.per_tick):>10}")
    print(
        f"  of which decode only (median {us(median)}, best {us(best)}, CPU mean {us(dec_cpu)}): "
        f"{100 * median / r.per_tick:.0f} %"
    )
    print(
        f"  of which decode into NodeSnapshot + status:    {us(r.snapshot_store):>10} "
        f"({100 * r.snapshot_store / r.per_tick:.1f} %)"
    )
    print(
        f"  of which the alarm checks:                    {us(r.checks):>10} "
        f"({100 * r.checks / r.per_tick:.1f} %)"
    )
    rest = r.per_tick - median - r.snapshot_store - r.checks
    print(
        f"  rest (rpc request, dist framing, asyncio):     {us(rest):>10} "
        f"({100 * rest / r.per_tick:.0f} %)"
    )
    print(
        f"idle cost of an attached node between ticks:     {r.idle_per_node_s * 1e6:,.1f} µs CPU "
        f"per second ({us(r.idle_per_node_s * INTERVAL)} per 15 s)"
    )
    if r.manager is not None:
        m_cpu, m_ticks, m_errors = r.manager
        if m_ticks:
            m_per = m_cpu / m_ticks
            print(
                f"cross-check, real NodeManager at 1 s interval:  {us(m_per):>10} per node-tick "
                f"({m_ticks} ticks, {m_errors} errors; includes its timers and idle cost)"
            )
    print(
        f"nodes per core at 15 s = 15 s / per-tick CPU:    {per_core:>10,.0f}  "
        f"({per_core / TARGET_NODES_PER_CORE:.1f}x the target of {TARGET_NODES_PER_CORE:,})"
    )
    print(
        f"  counting the idle cost too:                    {per_core_all:>10,.0f}  "
        f"({per_core_all / TARGET_NODES_PER_CORE:.1f}x the target)"
    )
    print(
        f"  decode alone would allow:                      {INTERVAL / median:>10,.0f}  "
        f"(upper bound with a free transport)"
    )
    print(
        f"a round over all {r.nodes} nodes took {r.round_wall_median * 1000:.0f} ms wall "
        f"(median; {r.nodes} nodes computing their replies on the same 2 cores)"
    )


# --------------------------------------------------------------------------- phase 2


def snapshots_for(
    real: Mapping[str, NodeSnapshot], count: int
) -> tuple[dict[str, NodeSnapshot], str]:
    """``count`` snapshots: the real ones, replicated under distinct node names if needed."""
    items = list(real.values())
    if count <= len(items):
        return {s.node: s for s in items[:count]}, f"{count} real node{'s' if count > 1 else ''}"
    out = {}
    for i in range(count):
        snap = items[i % len(items)]
        name = f"bench_replica_{i:03d}@127.0.0.1"
        out[name] = replace(snap, node=name)
    return out, (
        f"{len(items)} real snapshots replicated to {count} distinct node names "
        f"(only the node label differs)"
    )


#: (label, format) of the scrapes timed: what Prometheus asks for first
RENDER_FORMATS: Final = (("OpenMetrics", OPENMETRICS), ("text 0.0.4", TEXT))
#: the cached path's cases: which nodes get a new snapshot object before each scrape
CHANGE_CASES: Final = (("cold", 1), ("1-in-15", 15), ("warm", 0))


@dataclass
class RenderResult:
    count: int
    origin: str
    fmt: str
    runs: int
    #: the old path: prometheus_client over vm_metric_families (median, best), s
    old: tuple[float, float]
    #: the cached path per CHANGE_CASES label: (median, best), s
    cached: dict[str, tuple[float, float]]
    size: int
    samples: int
    families: int
    identical: bool


def _nodes_part(body: bytes) -> bytes:
    return body[: body.find(b"# HELP beamside_build")]


def _timed(runs: int, before: Callable[[int], None], scrape: Callable[[], bytes]) -> list[float]:
    walls = []
    for i in range(runs):
        before(i)  # replacing snapshots is the manager's work: not timed
        t0 = time.perf_counter()
        scrape()
        walls.append(time.perf_counter() - t0)
    return walls


def time_render(
    real: Mapping[str, NodeSnapshot], count: int, runs: int, label: str, fmt: Format
) -> RenderResult:
    snaps, origin = snapshots_for(real, count)
    source = Source(snaps)
    registry = build_registry(source, __version__)
    nodes = list(source.snapshots)

    def change(every: int) -> Callable[[int], None]:
        """Before scrape i: a new snapshot object for 1 node in ``every`` (0: none);
        the 1-in-15 nodes rotate (a 15 s interval scraped every second)."""

        def before(i: int) -> None:
            if every:
                for j, node in enumerate(nodes):
                    if (j + i) % every == 0:
                        source.snapshots[node] = replace(source.snapshots[node])

        return before

    out = generate(fmt, registry)  # warm the code paths
    cached_out = registry.exposition(fmt)
    gc.collect()
    old = _timed(runs, lambda i: None, lambda: generate(fmt, registry))
    cached = {}
    for case, every in CHANGE_CASES:
        registry.exposition(fmt)
        scrapes = runs * (1 if every == 1 else 3)
        walls = _timed(scrapes, change(every), lambda: registry.exposition(fmt))
        cached[case] = (statistics.median(walls), min(walls))
    lines = out.split(b"\n")
    return RenderResult(
        count=count,
        origin=origin,
        fmt=label,
        runs=runs,
        old=(statistics.median(old), min(old)),
        cached=cached,
        size=len(out),
        samples=sum(1 for line in lines if line and not line.startswith(b"#")),
        families=sum(1 for line in lines if line.startswith(b"# TYPE ")),
        # the node families (beamside's own carry the snapshot age: they differ in time)
        identical=_nodes_part(out) == _nodes_part(cached_out),
    )


def profile_render(real: Mapping[str, NodeSnapshot], count: int, top: int = 18) -> str:
    """cProfile of an OpenMetrics scrape on the old path and a cold one on the cached path."""
    snaps, _ = snapshots_for(real, count)
    source = Source(snaps)
    registry = build_registry(source, __version__)
    out = []
    for what, scrape in (
        ("old path", lambda: generate(OPENMETRICS, registry)),
        ("cached path, every node changed", lambda: registry.exposition(OPENMETRICS)),
    ):
        for node, snap in list(source.snapshots.items()):
            source.snapshots[node] = replace(snap)
        prof = cProfile.Profile()
        prof.enable()
        scrape()
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
        out.append(f"-- {what}:\n{buf.getvalue()}")
    return "\n".join(out)


def report_render(results: Sequence[RenderResult]) -> None:
    print()
    print("== 2. /metrics scrape: prometheus_client (old) against the per-snapshot text cache ==")
    print(
        "old: generate_latest of the registry (prometheus_client over vm_metric_families, "
        "every sample formatted at every scrape); cached: registry.exposition(fmt), node "
        "texts rendered once per snapshot object, beamside's own families fresh. cold: every "
        "node has a new snapshot; 1-in-15: a rotating 1/15 of the nodes (15 s interval, 1 s "
        "scrapes); warm: none. Wall ms, median (best)."
    )
    header = (
        f"{'format':<12} {'nodes':>5} {'old ms':>15} {'cold ms':>15} {'1-in-15 ms':>15} "
        f"{'warm ms':>15}  {'old/cold':>8} {'old/1-15':>8} {'old/warm':>8} {'bytes':>11} "
        f"{'samples':>8} {'same':>5}"
    )
    print(header)
    for r in results:

        def ms(pair: tuple[float, float]) -> str:
            return f"{pair[0] * 1000:.1f} ({pair[1] * 1000:.1f})"

        ratios = " ".join(
            f"{r.old[0] / r.cached[case][0]:>7.1f}x" for case in ("cold", "1-in-15", "warm")
        )
        print(
            f"{r.fmt:<12} {r.count:>5} {ms(r.old):>15} {ms(r.cached['cold']):>15} "
            f"{ms(r.cached['1-in-15']):>15} {ms(r.cached['warm']):>15}  {ratios} "
            f"{r.size:>11,} {r.samples:>8,} {'yes' if r.identical else 'NO':>5}"
        )
    print("(same: the cached bytes equal prometheus_client's for the same snapshots)")
    origins = {r.count: r.origin for r in results}
    for count, origin in sorted(origins.items()):
        print(f"  {count} nodes: {origin}")
    for r in results:
        if r.count == 100 and r.fmt == "OpenMetrics":
            verdict = "met" if r.cached["1-in-15"][0] * 1000 < TARGET_RENDER_MS else "NOT met"
            print(
                f"100 nodes, OpenMetrics, 1-in-15 changed: median "
                f"{r.cached['1-in-15'][0] * 1000:.1f} ms against the target "
                f"{TARGET_RENDER_MS:.0f} ms: {verdict}"
            )


def recorded_snapshots() -> dict[str, NodeSnapshot]:
    """The recorded collect replies of real OTP 25, OTP 28 and Elixir nodes."""
    snaps = [golden_snapshot(name) for name in RUNTIMES]
    return {s.node: s for s in snaps}


# --------------------------------------------------------------------------- main


def phase1(args: argparse.Namespace, started: float) -> CostResult:
    """Start the nodes, measure the sidecar's cost per node per tick, stop them."""
    extra = list(QUIET_NODE_FLAGS)
    if args.schedulers:
        extra += ["+S", f"{args.schedulers}:{args.schedulers}"]
    result: CostResult | None = None
    with Epmd() as epmd:
        cookie = random_cookie()
        nodes = [
            ErlangNode("otp25", cookie=cookie, epmd_port=epmd.port, extra_args=extra)
            for _ in range(args.nodes)
        ]
        try:
            t0 = time.monotonic()
            start_nodes(nodes, timeout=60 + args.nodes)
            time.sleep(1.0)
            print(
                f"started {len(nodes)} real OTP 25 nodes in {time.monotonic() - t0:.1f} s "
                f"({' '.join(extra)}): {rss_mb([n.os_pid for n in nodes]):,.0f} MB RSS in all"
            )
            result = asyncio.run(sidecar_cost(args, nodes, cookie, epmd.port))
        finally:
            stop_nodes(nodes, timeout=5)
    print(f"nodes and EPMD stopped ({time.monotonic() - started:.0f} s so far)")
    assert result is not None
    report_cost(result)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--nodes", type=int, default=100, help="real OTP 25 nodes to start (100)")
    ap.add_argument("--rounds", type=int, default=30, help="measured collection rounds (30)")
    ap.add_argument("--idle", type=float, default=15.0, help="idle window, seconds (15)")
    ap.add_argument(
        "--manager-window", type=float, default=10.0, help="NodeManager cross-check, s (10; 0 off)"
    )
    ap.add_argument("--decode-runs", type=int, default=500, help="decode-only repetitions (500)")
    ap.add_argument(
        "--render-nodes", default="1,10,100,300", help="node counts to render (1,10,100,300)"
    )
    ap.add_argument("--render-runs", type=int, default=15, help="scrapes timed per count (15)")
    ap.add_argument(
        "--render-only",
        action="store_true",
        help="no nodes: time /metrics on the recorded replies (tests/vectors/replies)",
    )
    ap.add_argument("--profile", action="store_true", help="profile the largest render anyway")
    ap.add_argument("--mesh", action="store_true", help="connect the nodes in a full mesh")
    ap.add_argument("--schedulers", type=int, default=0, help="+S N:N on the nodes (0: default)")
    args = ap.parse_args()
    if args.nodes < 1:
        ap.error("--nodes must be at least 1")
    render_counts = [int(x) for x in args.render_nodes.split(",") if x.strip()]

    started = time.monotonic()
    print(
        f"bench_sidecar {datetime.date.today().isoformat()}: CPython {platform.python_version()}, "
        f"{os.cpu_count()} cores ({cpu_model()}), {mem_total_gb():.1f} GB RAM"
    )
    real: Mapping[str, NodeSnapshot]
    if args.render_only:
        real = recorded_snapshots()
        print(f"--render-only: the recorded replies of {', '.join(RUNTIMES)} (tests/vectors)")
    else:
        real = phase1(args, started).snapshots
    renders = [
        time_render(
            real,
            count,
            args.render_runs if count >= 100 else args.render_runs * (4 if count >= 10 else 10),
            label,
            fmt,
        )
        for label, fmt in RENDER_FORMATS
        for count in render_counts
    ]
    report_render(renders)
    largest = max(renders, key=lambda r: r.count)
    if args.profile or (largest.count >= 100 and largest.old[0] * 1000 > PROFILE_ABOVE_MS):
        print()
        print(f"cProfile of one scrape of {largest.count} nodes (top functions by own time):")
        print(profile_render(real, largest.count))
    print(f"total run time {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
