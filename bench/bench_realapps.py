"""beamside on real applications: attach time, collect cost, and truthfulness.

    python bench/bench_realapps.py                         # all four, 10 collects each
    python bench/bench_realapps.py --apps rabbitmq --collects 20

Starts each real application from its Debian package on loopback with a
private EPMD (the launchers of ``tests/realapps/apps.py``: RabbitMQ with
``rabbitmq_prometheus``, ejabberd, Yaws, an Elixir app), then, per app:

* **attach**: a fresh hidden beamside node connects, loads its agents
  (``ensure_loaded``) and attaches (event forwarding on, as ``beamside run``
  with Loki does): wall time, best of one (a first attach is what an
  operator waits for);
* **collect**: ``--collects`` collects one second apart of two kinds: a
  plain tick (what most ticks ask for: every section plus ``code_events``
  and ``config_events``) and a full tick (also ``modules_md5`` and
  ``startup_files``, asked for every few minutes).  For each: the node-side
  duration the agent reports, the round trip, the node's CPU during the call
  (sum of ``/proc/<pid>/task/*/schedstat`` run times of the BEAM, so it
  includes whatever else the node did in that moment) and the reply's size
  in the external term format (``erlang:external_size/1`` of a reply taken by
  an independent probe node);
* **plugins**: the cost of each plugin section on its own (``sections:
  [plugins]``, one plugin asked: node CPU and the section's size), against
  the same collect with no plugin asked, and a whole plain tick's node CPU
  as a share of one scheduler at 15 s;
* **RabbitMQ only**: node CPU of a beamside plain tick against one scrape of
  ``rabbitmq_prometheus`` (prometheus.erl 4.9 rendering its collectors: the
  VM's and RabbitMQ's) on the same node, in the same run, with the ratio;
  and the values beamside exports against those
  ``rabbitmq_prometheus`` exports from the same node at the same moment
  (scraped right before and right after each collect over one keep-alive
  connection; the reference is their mean), ``--collects`` rounds: process
  count, memory by kind, atoms, ports, ETS tables, run queue, uptime.  Each
  must be within 1 %.  Two values move with the reference's own scrape (the
  port it opens and the response binaries it builds while it reads), so
  those two are also compared with the node's own reading by an independent
  probe right before and after the collect.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from bench_agent_overhead import Cpu
from prometheus_client.parser import text_string_to_metric_families

from sidecar import agents
from sidecar.erldist.node import LocalNode
from sidecar.exporter.exposition import TEXT, ExpositionCache
from sidecar.model import NodeSnapshot, decode_snapshot
from tests.realapps.apps import APP_KINDS, AppNode, Probe, RealApp, launcher


def exposition(snaps: list[NodeSnapshot]) -> bytes:
    """What /metrics serves for ``snaps`` (text 0.0.4)."""
    return ExpositionCache().exposition(snaps, TEXT)


PLAIN_TICK: dict[str, Any] = {"code_events": True, "config_events": True}
FULL_TICK: dict[str, Any] = {**PLAIN_TICK, "modules_md5": True, "startup_files": True}
EVENTS = {"logs": {"level": "warning"}, "shell_events": True}


def samples(text: bytes | str) -> dict[Any, float]:
    """{(sample name, sorted labels without node/family/cluster): value}."""
    if isinstance(text, bytes):
        text = text.decode()
    out: dict[Any, float] = {}
    dropped = ("node", "family", "cluster")
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if k not in dropped))
            out[(s.name, labels)] = s.value
    return out


def one(values: Mapping[Any, float], name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    if key not in values:
        near = sorted({n for n, _ in values if n.startswith(name.rsplit("_", 1)[0])})[:12]
        raise KeyError(f"{name}{labels or ''} not exported; near: {near}")
    return values[key]


# What is compared: (what, beamside's sample, rabbitmq_prometheus's sample);
# a sample is (name, labels).  rabbitmq_prometheus 3.10 bundles
# prometheus.erl 4.9, whose names predate the 6.x ones beamside uses.
Sample = tuple[str, dict[str, str]]
COMPARED: list[tuple[str, Sample, Sample]] = [
    ("processes", ("erlang_vm_processes", {}), ("erlang_vm_process_count", {})),
    ("atoms", ("erlang_vm_atoms", {}), ("erlang_vm_atom_count", {})),
    ("ports", ("erlang_vm_ports", {}), ("erlang_vm_port_count", {})),
    ("ETS tables", ("erlang_vm_ets_tables", {}), ("erlang_vm_memory_ets_tables", {})),
    *[
        (
            f"memory {kind}",
            ("erlang_vm_memory_bytes", {"kind": kind}),
            ("erlang_vm_memory_bytes_total", {"kind": kind}),
        )
        for kind in ("processes", "system")
    ],
    *[
        (
            f"memory {usage}",
            ("erlang_vm_memory_system_bytes", {"usage": usage}),
            ("erlang_vm_memory_system_bytes_total", {"usage": usage}),
        )
        for usage in ("atom", "binary", "code", "ets", "other")
    ],
    (
        "run queue",
        ("erlang_vm_statistics_run_queues_length", {}),
        ("erlang_vm_statistics_run_queues_length", {}),
    ),
    (
        "uptime (ms)",
        ("erlang_vm_statistics_wallclock_time_seconds_total", {}),
        ("erlang_vm_statistics_wallclock_time_milliseconds_total", {}),
    ),
]


def value(values: Mapping[Any, float], sample: Sample) -> float:
    name, labels = sample
    v = one(values, name, **labels)
    return v * 1000 if name.endswith("_seconds_total") else v


def scrape(client: httpx.Client, port: int) -> dict[Any, float]:
    return samples(client.get(f"http://127.0.0.1:{port}/metrics").content)


# Read on the node by an independent probe right before and after the collect:
# what a scrape of rabbitmq_prometheus itself moves (the port it opens while it
# reads, the binaries of the response it is building).
PROBED = {
    "ports": "erlang:system_info(port_count)",
    "memory binary": "erlang:memory(binary)",
}


async def compare_rabbitmq(local: LocalNode, node: AppNode, probe: Probe, rounds: int) -> list[str]:
    """Each round: scrape rabbitmq_prometheus, collect, scrape again; the
    reference is the mean of the two scrapes.  One keep-alive connection for
    every scrape, so that its socket is there for both sides."""
    port = node.ports["prometheus"]
    diffs: dict[str, list[float]] = {what: [] for what, _, _ in COMPARED}
    probed: dict[str, list[float]] = {what: [] for what in PROBED}
    last: dict[str, tuple[float, float, float]] = {}
    probe_expr = "{" + ", ".join(PROBED.values()) + "}"

    def read_probe() -> list[float]:
        return [float(v) for v in probe.eval(probe_expr).strip("{}").split(",")]

    with httpx.Client(timeout=30) as client:
        scrape(client, port)  # warm: the first scrape registers its collectors
        for _ in range(rounds):
            await asyncio.sleep(1.0)
            before = scrape(client, port)
            p0 = read_probe()
            taken = time.time()
            data = await agents.collect(local, node.name, PLAIN_TICK, timeout=30)
            p1 = read_probe()
            after = scrape(client, port)
            snap = decode_snapshot(
                data,
                node=node.name,
                family="rabbitmq",
                cluster="bench",
                taken_at=taken,
                duration=0.0,
            )
            ours = samples(exposition([snap]))
            for what, mine, theirs in COMPARED:
                b, r0, r1 = value(ours, mine), value(before, theirs), value(after, theirs)
                ref = (r0 + r1) / 2
                diffs[what].append(abs(b - ref) / max(abs(ref), 1.0) * 100)
                last[what] = (b, r0, r1)
                if what in PROBED:
                    i = list(PROBED).index(what)
                    pref = (p0[i] + p1[i]) / 2
                    probed[what].append(abs(b - pref) / max(abs(pref), 1.0) * 100)
    lines = [
        f"beamside against rabbitmq_prometheus, {rounds} rounds (last round's values):",
        "",
        "| value | beamside | rabbitmq_prometheus before / after | difference median (max) |",
        "|---|---:|---:|---:|",
    ]
    for what, _, _ in COMPARED:
        b, r0, r1 = last[what]
        d = diffs[what]
        lines.append(
            f"| {what} | {b:,.0f} | {r0:,.0f} / {r1:,.0f} | "
            f"{statistics.median(d):.3f} % ({max(d):.3f} %) |"
        )
    lines += ["", "Against the node's own reading by a probe right before and after the collect:"]
    for what, d in probed.items():
        lines.append(f"{what}: difference median {statistics.median(d):.3f} % (max {max(d):.3f} %)")
    return lines


async def node_cpu(pid: int, call: Any, runs: int) -> list[float]:
    """The node's CPU (s) during each of ``runs`` awaited calls, 0.3 s apart."""
    spent = []
    for _ in range(runs):
        await asyncio.sleep(0.3)
        c0 = Cpu.read(pid)
        await call()
        c1 = Cpu.read(pid)
        spent.append((c1.sched_ns - c0.sched_ns) / 1e9)
    return spent


async def plugin_costs(local: LocalNode, node: AppNode, probe: Probe, runs: int) -> list[str]:
    """Each plugin that applies on the node, alone, against no plugin."""
    info = await agents.ensure_loaded(local, node.name)
    applying = sorted(name for name, on in info.plugins.items() if on)

    async def collect(opts: dict[str, Any]) -> None:
        await agents.collect(local, node.name, opts, timeout=30)

    def size(plugins: list[str]) -> int:
        listed = "[" + ", ".join(plugins) + "]"
        return int(
            probe.eval(
                "{ok, S} = beamside_agent:collect(#{sections => [plugins], plugins => "
                + listed + "}), erlang:external_size(maps:get(plugins, S))."
            )
        )  # fmt: skip

    none = await node_cpu(
        node.os_pid, lambda: collect({"sections": ["plugins"], "plugins": []}), runs
    )
    lines = [
        f"plugins on {node.kind}, {runs} collects each (node CPU p50; the section's size):",
        "",
        "| plugin section | node CPU | over no plugin | size |",
        "|---|---:|---:|---:|",
        f"| none (sections: [plugins]) | {ms(none)} ms | | {size([])} B |",
    ]
    for name in applying:
        cpu = await node_cpu(
            node.os_pid, lambda n=name: collect({"sections": ["plugins"], "plugins": [n]}), runs
        )
        extra = statistics.median(cpu) - statistics.median(none)
        lines.append(f"| {name} | {ms(cpu)} ms | {extra * 1000:+.2f} ms | {size([name]):,} B |")
    tick = await node_cpu(node.os_pid, lambda: collect(PLAIN_TICK), runs)
    share = statistics.median(tick) / 15 * 100
    lines += ["", f"whole plain tick, every plugin: node CPU p50 {ms(tick)} ms = {share:.3f} % "
              "of one scheduler at 15 s"]  # fmt: skip
    if node.kind == "rabbitmq":
        port = node.ports["prometheus"]
        with httpx.Client(timeout=30) as client:
            client.get(f"http://127.0.0.1:{port}/metrics")  # its collectors registered

            async def scrape_once() -> None:
                client.get(f"http://127.0.0.1:{port}/metrics")

            theirs = await node_cpu(node.os_pid, scrape_once, runs)
        ratio = statistics.median(tick) / statistics.median(theirs)
        lines.append(
            f"one rabbitmq_prometheus scrape (prometheus.erl 4.9): node CPU p50 {ms(theirs)} ms; "
            f"beamside's tick / its scrape = {ratio:.2f}"
        )
    return lines


async def bench_app(app: RealApp, collects: int) -> list[str]:
    node = app.start()
    out = [f"### {node.kind} ({node.name}, started in {node.start_seconds:.1f} s)"]
    probe = app.probe()
    local = LocalNode(f"bench-{node.kind}@localhost", node.cookie, epmd_port=node.epmd_port)
    try:
        pid = node.os_pid
        t0 = time.perf_counter()
        await agents.ensure_loaded(local, node.name, timeout=30)
        await agents.attach(local, node.name, EVENTS, timeout=30)
        attach_s = time.perf_counter() - t0
        out.append(f"attach (connect, load agents, attach): {attach_s * 1000:.0f} ms")
        await agents.collect(local, node.name, FULL_TICK, timeout=30)  # baselines
        for label, opts in (("plain tick", PLAIN_TICK), ("full tick", FULL_TICK)):
            cpu: list[float] = []
            on_node: list[float] = []
            rtt: list[float] = []
            for _ in range(collects):
                await asyncio.sleep(1.0)
                c0 = Cpu.read(pid)
                t1 = time.perf_counter()
                data = await agents.collect(local, node.name, opts, timeout=30)
                rtt.append(time.perf_counter() - t1)
                c1 = Cpu.read(pid)
                cpu.append((c1.sched_ns - c0.sched_ns) / 1e9)
                on_node.append(data["duration_us"] / 1e6)
            size = int(
                probe.eval(
                    "{ok, S} = beamside_agent:collect(" + erl_opts(opts) + "), "
                    "erlang:external_size({ok, S})."
                )
            )
            out.append(
                f"{label} ({collects} collects): node-side p50 {ms(on_node)} ms "
                f"(max {max(on_node) * 1000:.1f}), round trip p50 {ms(rtt)} ms, "
                f"node CPU p50 {ms(cpu)} ms (max {max(cpu) * 1000:.1f}), "
                f"reply {size / 1024:.1f} KiB"
            )
        out.append("")
        out.extend(await plugin_costs(local, node, probe, runs=collects))
        if node.kind == "rabbitmq":
            out.append("")
            out.extend(await compare_rabbitmq(local, node, probe, rounds=collects))
        await agents.detach(local, node.name, timeout=30)
    finally:
        await local.close()
        probe.stop()
        app.stop()
    return out


def erl_opts(opts: Mapping[str, Any]) -> str:
    return "#{" + ", ".join(f"{k} => {str(v).lower()}" for k, v in opts.items()) + "}"


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f}"


@dataclass
class _PlainNode:
    """A plain node as plugin_costs reads an application's."""

    name: str
    os_pid: int
    kind: str = "libraries"
    ports: dict[str, int] = field(default_factory=dict)


RABBIT_PLUGINS = "/usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins"
LIBRARIES = (
    "{ok, _} = application:ensure_all_started(folsom),"
    ' [ok = folsom_metrics:new_counter(list_to_atom("bench_c" ++ integer_to_list(I)))'
    " || I <- lists:seq(1, 20)],"
    " ok = folsom_metrics:new_histogram(bench_h),"
    " [folsom_metrics:notify(bench_h, N) || N <- lists:seq(1, 100)],"
    " {ok, _} = application:ensure_all_started(poolboy),"
    " Me = self(), spawn(fun() -> {ok, _} = poolboy:start_link([{name, {local, bench_pool}},"
    " {worker_module, bench_worker}, {size, 5}, {max_overflow, 0}], []),"
    " Me ! up, receive stop -> ok end end), receive up -> ok end,"
    " {ok, _} = application:ensure_all_started(prometheus), ok."
)
WORKER = [
    "-module(bench_worker).",
    "-export([start_link/1, init/1, handle_call/3, handle_cast/2]).",
    "start_link(_) -> gen_server:start_link(bench_worker, [], []).",
    "init([]) -> {ok, #{}}.",
    "handle_call(_, _, S) -> {reply, ok, S}.",
    "handle_cast(_, S) -> {noreply, S}.",
]


async def bench_libraries(collects: int) -> list[str]:
    """poolboy (5 workers) and folsom (20 counters, a histogram) on a plain OTP 25
    node, with prometheus.erl 4.9 (RabbitMQ's bundled copy on the code path)
    rendering its default collectors: the plugin sections' costs, and one
    beamside tick against one prometheus.erl scrape on the same node."""
    from tests.agents.conftest import load_source
    from tests.support.nodes import Epmd, ErlangNode

    (prometheus,) = glob.glob(f"{RABBIT_PLUGINS}/prometheus-*/ebin")
    (quantile,) = glob.glob(f"{RABBIT_PLUGINS}/quantile_estimator-*/ebin")
    with Epmd() as epmd, tempfile.TemporaryDirectory() as tmp:
        node = ErlangNode(
            "otp25",
            epmd_port=epmd.port,
            log_dir=tmp,
            extra_args=["-pa", prometheus, "-pa", quantile],
        ).start()
        local = LocalNode(f"bench-libs@{node.host}", node.cookie, epmd_port=epmd.port)
        try:
            load_source(node, WORKER)
            assert node.eval(LIBRARIES) == "ok"
            pid = node.os_pid
            assert pid is not None
            out = [f"### poolboy, folsom and prometheus.erl on a plain OTP 25 node ({node.name})"]
            out += await plugin_costs(local, _PlainNode(node.name, pid), node, collects)  # type: ignore[arg-type]

            async def evaluate(expr: str) -> None:
                await asyncio.to_thread(node.eval, expr)

            idle = await node_cpu(pid, lambda: evaluate("ok."), collects)
            scrape = await node_cpu(
                pid, lambda: evaluate("_ = prometheus_text_format:format(), ok."), collects
            )
            tick = await node_cpu(
                pid, lambda: agents.collect(local, node.name, PLAIN_TICK, timeout=30), collects
            )
            theirs = statistics.median(scrape) - statistics.median(idle)
            out.append(
                f"one prometheus.erl 4.9 scrape of its default collectors: node CPU p50 "
                f"{theirs * 1000:.1f} ms (the evaluation's own {ms(idle)} ms taken off); "
                f"one beamside plain tick {ms(tick)} ms; ratio "
                f"{statistics.median(tick) / theirs:.2f}"
            )
            return out
        finally:
            await local.close()
            node.kill()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--apps", nargs="+", choices=[*APP_KINDS, "libraries"],
                    default=[*APP_KINDS, "libraries"])  # fmt: skip
    ap.add_argument("--collects", type=int, default=10, help="collects of each kind (10)")
    args = ap.parse_args()
    for kind in args.apps:
        lines = (
            await bench_libraries(args.collects)
            if kind == "libraries"
            else await bench_app(launcher(kind), args.collects)
        )
        for line in lines:
            print(line, flush=True)
        print(flush=True)


if __name__ == "__main__":
    asyncio.run(main())
