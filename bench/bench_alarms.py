"""Cost of the alarm evaluation that runs every second (issue 15).

Run from the repository root::

    python bench/bench_alarms.py [--nodes 100,300,1000,10000] [--modules 0,2000]
                                 [--family-size 100] [--seconds 20] [--budget 20]

What the node manager runs every second, ``on_statuses`` then ``on_family``
over every managed node, timed for the cached checks (``sidecar.alarms.checks``)
and for the former code (``tests/alarms/family_reference.py``: every node's
whole module md5 map walked at every evaluation) in the same run, on the same
snapshots, alternately, second by second.

The nodes are synthetic, their snapshots made from the replies recorded from
real nodes (``tests/vectors/replies``: OTP 25, OTP 28, Elixir; one runtime per
family): the recorded module md5 maps (119 to 151 modules), or those padded
with application modules to ``--modules`` (0: as recorded).  Families of
``--family-size`` nodes, fully meshed, one global parameter
(``kernel.net_ticktime``); in the first family one node runs another version
of one module, so ``different_module_versions`` is active as in a rollout.
Each simulated second, as with ``intervals.metrics: 15s``, a fifteenth of the
nodes deliver a new snapshot (new time, new clock offset), every fourth of
them with its module md5s (``window: 60s``); arrivals are not timed in the
evaluation figures (the cost they now carry, comparing a map with the node's
previous one, is printed apart).

Figures are CPU time (``time.process_time``) per evaluation, the median over
the simulated seconds, so other load on the machine counts less; the former
code gets at least 3 evaluations and otherwise at most ``--budget`` seconds
per size.  After each size both checkers must hold the same alarms.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sidecar.alarms.catalogue import GlobalParam
from sidecar.alarms.checks import AlarmChecker
from sidecar.alarms.engine import AlarmEngine
from sidecar.model import NodeSnapshot, NodeState, NodeStatus
from tests.alarms.family_reference import ReferenceChecker
from tests.support.golden import RUNTIMES, golden_snapshot

T0 = 1_800_000_000.0
INTERVAL = 15  # seconds between a node's collects
MD5_EVERY = 4  # collects between md5 maps (window 60 s)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def module_maps(modules: int) -> dict[str, dict[str, str]]:
    """Per runtime, its recorded md5 map, padded to ``modules`` entries."""
    out = {}
    for name in RUNTIMES:
        recorded = golden_snapshot(name).modules
        assert recorded, f"{name}: the recorded reply has no module md5s"
        md5 = dict(recorded)
        for i in range(max(0, modules - len(md5))):
            md5[f"app_mod_{i}"] = f"{(i * 2654435761) % 2**128:032x}"
        out[name] = md5
    return out


def build(
    nodes: int, modules: int, family_size: int
) -> tuple[dict[str, NodeSnapshot], list[NodeStatus], dict[str, dict[str, str]]]:
    templates = {name: golden_snapshot(name) for name in RUNTIMES}
    maps = module_maps(modules)
    names = [f"app{i}@10.0.{i // 250}.{i % 250}" for i in range(nodes)]
    snaps: dict[str, NodeSnapshot] = {}
    statuses: list[NodeStatus] = []
    md5_of: dict[str, dict[str, str]] = {}
    for f, start in enumerate(range(0, nodes, family_size)):
        members = names[start : start + family_size]
        runtime = RUNTIMES[f % len(RUNTIMES)]
        family = f"fam{f}"
        for i, node in enumerate(members):
            md5 = maps[runtime]
            if f == 0 and i == 0:  # one node ahead in a rollout
                md5 = dict(md5)
                md5[next(iter(md5))] = "f" * 32
            md5_of[node] = md5
            snaps[node] = replace(
                templates[runtime],
                node=node,
                family=family,
                modules=md5,
                dist_nodes=tuple(m for m in members if m != node),
                taken_at=T0,
                system_time_us=(T0 + 0.001 * (i % 7)) * 1e6,
            )
            statuses.append(NodeStatus(node, family, NodeState.UP))
    return snaps, statuses, md5_of


def run_size(
    nodes: int, modules: int, family_size: int, seconds: int, budget: float
) -> dict[str, float]:
    snaps, statuses, md5_of = build(nodes, modules, family_size)
    params = [GlobalParam("kernel", "net_ticktime")]
    clock = Clock()
    new = AlarmChecker(AlarmEngine("c", clock=clock), global_params=params, clock=clock)
    old = ReferenceChecker(AlarmEngine("c", clock=clock), global_params=params, clock=clock)
    for checker in (new, old):
        for s in snaps.values():
            checker.on_snapshot(s)
    order = list(snaps)
    per_second = max(1, nodes // INTERVAL)
    times: dict[str, list[float]] = {"new": [], "old": []}
    old_spent = 0.0
    arrivals = 0
    for second in range(seconds):
        clock.now += 1
        for k in range(per_second):
            node = order[(second * per_second + k) % nodes]
            arrivals += 1
            s = replace(
                snaps[node],
                taken_at=clock.now,
                system_time_us=(clock.now + 0.001 * (arrivals % 7)) * 1e6,
                modules=md5_of[node] if arrivals % MD5_EVERY == 0 else None,
            )
            snaps[node] = s
            new.on_snapshot(s)
            old.on_snapshot(s)
        runs: list[tuple[str, AlarmChecker]] = [("new", new)]
        if len(times["old"]) < 3 or old_spent < budget:
            runs.append(("old", old))
        for label, checker in runs:
            gc.collect()
            t0 = time.process_time()
            checker.on_statuses(statuses)
            checker.on_family(snaps, statuses)
            spent = time.process_time() - t0
            times[label].append(spent)
            if label == "old":
                old_spent += spent
    same = _alarms(new) == _alarms(old)
    if not same:
        raise SystemExit(f"{nodes} nodes: the cached checks and the former code disagree")
    active = {a.id for a in new.engine.active()}
    assert "different_module_versions" in active, active
    return {
        "old_ms": statistics.median(times["old"]) * 1000,
        "new_ms": statistics.median(times["new"]) * 1000,
        "old_runs": len(times["old"]),
        "new_runs": len(times["new"]),
        "modules": statistics.mean(len(m) for m in md5_of.values()),
    }


def _alarms(checker: AlarmChecker) -> list[tuple[str, str, str]]:
    return sorted((str(a.key), str(a.severity), a.cause) for a in checker.engine.active())


def arrival_cost(modules: int) -> tuple[float, float]:
    """µs an arriving md5 map costs the cached checks (beyond the node checks):
    compared with the node's previous map, and shared with an equal one (or
    kept as a new one) when it changed."""
    snap = golden_snapshot("otp25")
    base = module_maps(modules)["otp25"]
    steady = AlarmChecker(AlarmEngine("c"))
    moving = AlarmChecker(AlarmEngine("c"))
    steady._ingest(replace(snap, modules=dict(base)), on_arrival=True)
    reps = 200
    same_t = changed_t = 0.0
    for i in range(reps):
        same = replace(snap, modules=dict(base))
        changed = replace(snap, modules=dict(base, app_mod_0=f"{i:032x}"))
        t0 = time.process_time()
        steady._ingest(same, on_arrival=True)
        t1 = time.process_time()
        moving._ingest(changed, on_arrival=True)
        t2 = time.process_time()
        same_t += t1 - t0
        changed_t += t2 - t1
    return same_t / reps * 1e6, changed_t / reps * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--nodes", default="100,300,1000,10000")
    parser.add_argument("--modules", default="0,2000", help="md5 map size per node, 0: recorded")
    parser.add_argument("--family-size", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=20, help="simulated seconds per size")
    parser.add_argument("--budget", type=float, default=20.0, help="CPU s for the former code")
    args = parser.parse_args()
    print(
        f"python {platform.python_version()}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}"
    )
    print(f"families of {args.family_size} nodes, {args.seconds} simulated seconds per size")
    print(
        f"{'nodes':>6} {'modules':>8} {'former ms':>10} {'cached ms':>10} {'ratio':>8}"
        f" {'runs':>9}"
    )
    for modules in (int(m) for m in args.modules.split(",")):
        for nodes in (int(n) for n in args.nodes.split(",")):
            r = run_size(nodes, modules, args.family_size, args.seconds, args.budget)
            print(
                f"{nodes:>6} {r['modules']:>8.0f} {r['old_ms']:>10.2f} {r['new_ms']:>10.2f}"
                f" {r['old_ms'] / r['new_ms']:>7.1f}x {r['old_runs']:>4.0f}/{r['new_runs']:<4.0f}",
                flush=True,
            )
        same_us, changed_us = arrival_cost(modules)
        print(
            f"  arrival of one md5 map ({modules or 'recorded'} modules): "
            f"{same_us:.0f} µs unchanged, {changed_us:.0f} µs changed"
        )


if __name__ == "__main__":
    main()
