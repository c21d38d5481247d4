"""Tracing a hot function: node CPU with beamside's Trace/Start and with recon_trace, same run.

    python bench/bench_trace.py [--seconds 8] [--rate 100000]

Starts a private EPMD and a real OTP 25 node on 127.0.0.1 running one process
that calls ``bench_trace_busy:f/1`` ``--rate`` times a second (paced every
millisecond; the achieved rate is measured).  beamside runs in-process (node
manager attached, gRPC server on loopback) and the node's CPU is read from
``/proc/<pid>/stat`` (user + system time of the whole beam process, as a
share of one core) over ``--seconds`` for each phase:

  baseline        the calls, nothing traced
  beamside all    Trace/Start of every call, rate_events 100 / rate_ms 1000
  recon all       recon_trace:calls({bench_trace_busy, f, '_'}, {100, 1000})
  beamside 1/2000 a match spec keeping one call in 2,000 (50 events/s: the
                  rate is never hit, the trace runs the whole phase and the
                  other 99.95 % of the calls are dropped by the match spec)
  recon 1/2000    the same match spec through recon_trace, {100, 1000}
  baseline again  (the base is the mean of the two baselines)

recon_trace is Debian's RabbitMQ copy (its plugins directory, added to the
node's code path); its output goes to a process that discards it.  After each
phase the bench checks what the trace left: ``erlang:trace_info`` of the
function and of the calling process.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grpc import aio

from sidecar.alarms.checks import AlarmChecker
from sidecar.alarms.engine import AlarmEngine
from sidecar.config import parse_config
from sidecar.control.config import GrpcConfig
from sidecar.control.gen.beamside.v1 import trace_pb2, trace_pb2_grpc
from sidecar.control.server import Deps, bound_port, create_server
from sidecar.erldist.node import LocalNode
from sidecar.manager import NodeManager
from sidecar.model import NodeState
from tests.support.nodes import Epmd, ErlangNode, random_cookie

RECON = "/usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins/recon-*/ebin"
MATCH_SPEC = "[{['$1'], [{'=:=', {'rem', '$1', 2000}, 0}], []}]"
TICKS = os.sysconf("SC_CLK_TCK")

BUSY_MODULE = r"""
-module(bench_trace_busy).
-export([f/1, start/1, calls/0, null_io/0]).
f(X) -> X + 1.
%% Rate calls a second, caught up every millisecond; the count in a counter.
start(Rate) ->
    C = counters:new(1, [write_concurrency]),
    persistent_term:put(bench_trace_calls, C),
    T0 = erlang:monotonic_time(microsecond),
    Pid = spawn(fun() -> loop(C, Rate, T0, 0) end),
    register(bench_trace_loop, Pid),
    Pid.
loop(C, Rate, T0, Done) ->
    Due = (erlang:monotonic_time(microsecond) - T0) * Rate div 1000000,
    burst(Done, Due),
    counters:add(C, 1, Due - Done),
    receive after 1 -> ok end,
    loop(C, Rate, T0, Due).
burst(N, Due) when N < Due -> _ = bench_trace_busy:f(N), burst(N + 1, Due);
burst(_, _) -> ok.
calls() -> counters:get(persistent_term:get(bench_trace_calls), 1).
%% An io server that discards what recon_trace prints.
null_io() ->
    spawn(fun Loop() ->
              receive {io_request, From, Ref, _} -> From ! {io_reply, Ref, ok} end,
              Loop()
          end).
"""

COMPILE = (
    'Src = os:getenv("BENCH_TRACE_SRC"),'
    " {ok, Ts, _} = erl_scan:string(Src),"
    " Split = fun S([], Cur, Acc) -> lists:reverse(Acc);"
    "             S([{dot, _} = D | R], Cur, Acc) -> S(R, [], [lists:reverse([D | Cur]) | Acc]);"
    "             S([T | R], Cur, Acc) -> S(R, [T | Cur], Acc) end,"
    " Forms = [begin {ok, F} = erl_parse:parse_form(F0), F end || F0 <- Split(Ts, [], [])],"
    " {ok, M, Bin} = compile:forms(Forms),"
    ' {module, M} = code:load_binary(M, "bench_trace_busy.erl", Bin).'
)


def cpu_seconds(os_pid: int) -> float:
    fields = Path(f"/proc/{os_pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


class Phase:
    def __init__(self, node: ErlangNode, os_pid: int) -> None:
        self.node, self.os_pid = node, os_pid

    async def measure(self, seconds: float) -> tuple[float, float]:
        """(node CPU as a share of one core, calls a second) over ``seconds``."""
        calls0 = int(await self.node.aeval("bench_trace_busy:calls()."))
        cpu0, t0 = cpu_seconds(self.os_pid), time.monotonic()
        await asyncio.sleep(seconds)
        cpu1, t1 = cpu_seconds(self.os_pid), time.monotonic()
        calls1 = int(await self.node.aeval("bench_trace_busy:calls()."))
        return (cpu1 - cpu0) / (t1 - t0), (calls1 - calls0) / (t1 - t0)

    async def left(self) -> str:
        return await self.node.aeval(
            "{erlang:trace_info({bench_trace_busy, f, 1}, traced),"
            " erlang:trace_info(whereis(bench_trace_loop), flags)}."
        )


async def beamside_phase(
    stub: trace_pb2_grpc.TraceStub, phase: Phase, node: str, seconds: float, match_spec: str
) -> tuple[float, float, str]:
    request = trace_pb2.StartTraceRequest(
        node=node,
        module="bench_trace_busy",
        function="f",
        arity=1,
        match_spec=match_spec,
        rate_events=100,
        rate_ms=1000,
        max_events_per_node=100000,
        budget=100000,
        max_duration_ms=int(seconds * 1000),
    )
    call = stub.Start(request, timeout=seconds + 30)
    started = time.monotonic()

    async def consume() -> tuple[int, trace_pb2.TraceEnd | None, float]:
        events = 0
        async for message in call:
            if message.WhichOneof("item") == "event":
                events += 1
            elif message.WhichOneof("item") == "end":
                return events, message.end, time.monotonic() - started
        return events, None, 0.0

    reader = asyncio.create_task(consume())
    cpu, rate = await phase.measure(seconds)
    events, end, took = await reader
    assert end is not None
    (node_end,) = end.nodes
    return cpu, rate, f"{events} events, stopped: {node_end.reason}, stream ended at {took:.2f} s"


async def recon_phase(phase: Phase, seconds: float, spec: str) -> tuple[float, float, str]:
    matched = await phase.node.aeval(
        f"recon_trace:calls({{bench_trace_busy, f, {spec}}}, {{100, 1000}},"
        " [{io_server, bench_trace_busy:null_io()}])."
    )
    cpu, rate = await phase.measure(seconds)
    left = await phase.left()  # before clear/0: what recon leaves by itself
    await phase.node.aeval("recon_trace:clear().")
    return cpu, rate, f"matched {matched}; before recon_trace:clear(): {left}"


async def run(node: ErlangNode, epmd_port: int, seconds: float, rate: int) -> None:
    config = parse_config(
        {
            "cluster": "bench",
            "node_name": "beamside-bench-trace@127.0.0.1",
            "targets": [{"nodes": [node.name], "cookie": node.cookie}],
            "intervals": {"metrics": "10m"},  # no collect in the measured windows
        }
    )
    local = LocalNode(config.node_name or "", "unused", epmd_port=epmd_port)
    engine = AlarmEngine(config.cluster)
    checker = AlarmChecker(engine, interval=config.intervals.metrics)
    manager = NodeManager(config.manager_config(), local, checker)
    server = create_server(Deps(manager, engine, checker), GrpcConfig(("127.0.0.1", 0)))
    await server.start()
    await manager.start()
    channel = aio.insecure_channel(f"127.0.0.1:{bound_port(server)}")
    try:
        deadline = time.monotonic() + 60
        while (s := manager.status(node.name)) is None or s.state is not NodeState.UP:
            if time.monotonic() > deadline:
                raise SystemExit(f"{node.name} not attached: {s}")
            await asyncio.sleep(0.1)
        os_pid = int((await node.aeval("os:getpid().")).strip('"'))
        phase = Phase(node, os_pid)
        await node.aeval(f"bench_trace_busy:start({rate}).")
        await asyncio.sleep(1)
        stub = trace_pb2_grpc.TraceStub(channel)
        rows: list[tuple[str, float, float, str, str]] = []
        cpu, calls = await phase.measure(seconds)
        rows.append(("baseline", cpu, calls, "", await phase.left()))
        for name, work in (
            ("beamside all", beamside_phase(stub, phase, node.name, seconds, "")),
            ("recon all", recon_phase(phase, seconds, "'_'")),
            ("beamside 1/2000", beamside_phase(stub, phase, node.name, seconds, MATCH_SPEC)),
            ("recon 1/2000", recon_phase(phase, seconds, MATCH_SPEC)),
        ):
            cpu, calls, note = await work
            rows.append((name, cpu, calls, note, await phase.left()))
            await asyncio.sleep(0.5)
        cpu, calls = await phase.measure(seconds)
        rows.append(("baseline again", cpu, calls, "", await phase.left()))
    finally:
        await channel.close()
        await server.stop(0)
        await manager.stop()
    base = (rows[0][1] + rows[-1][1]) / 2
    print(
        f"\ntracing bench_trace_busy:f/1 called {rate:,}/s on an OTP 25 node, "
        f"{seconds:g} s a phase; node CPU as a share of one core (/proc; "
        "schedulers without busy-wait)"
    )
    print(f"{'phase':16} {'CPU %':>7} {'over base':>10} {'calls/s':>10}  notes; left after")
    for name, cpu, calls, note, left in rows:
        print(
            f"{name:16} {cpu * 100:7.2f} {(cpu - base) * 100:+9.2f}% {calls:10,.0f}  {note}; {left}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=int, default=100_000)
    args = parser.parse_args()
    recon = sorted(glob.glob(RECON))
    if not recon:
        raise SystemExit(f"recon not found ({RECON}): apt-get install rabbitmq-server")
    with Epmd() as epmd:
        node = ErlangNode(
            "otp25",
            cookie=random_cookie(),
            epmd_port=epmd.port,
            env={"BENCH_TRACE_SRC": BUSY_MODULE},
            # no scheduler busy-waiting: its spinning would hide the work measured
            extra_args=["+sbwt", "none", "+sbwtdcpu", "none", "+sbwtdio", "none"],
        )
        with node:
            node.eval(COMPILE)
            node.eval(
                f'true = code:add_path("{recon[-1]}"),'
                " {module, _} = code:ensure_loaded(recon_trace)."
            )
            asyncio.run(run(node, epmd.port, args.seconds, args.rate))


if __name__ == "__main__":
    main()
