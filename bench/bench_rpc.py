"""rpc round trip on loopback: beamside's hidden node vs Erlang's own rpc, same run.

    python bench/bench_rpc.py [--calls 3000]

Starts a private EPMD and two real OTP 25 nodes (A and B) on 127.0.0.1.  The
reference is what Erlang itself achieves on this machine: node A timing
``rpc:call(B, erlang, node, [])`` in a loop.  Then beamside calls the same
function on B through ``rex`` (what ``rpc:call`` does), sequentially (latency)
and with 64 concurrent callers (throughput).  Prints percentiles and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sidecar.erldist.node import LocalNode
from tests.support.nodes import Epmd, ErlangNode, random_cookie


def percentiles(samples_us: list[float]) -> dict[str, float]:
    ordered = sorted(samples_us)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "p50": pick(0.50),
        "p90": pick(0.90),
        "p99": pick(0.99),
        "mean": statistics.mean(ordered),
    }


def erlang_reference(a: ErlangNode, b: ErlangNode, calls: int) -> list[float]:
    text = a.eval(
        f"B = '{b.name}', rpc:call(B, erlang, node, []), "
        f"[begin T0 = erlang:monotonic_time(nanosecond), B = rpc:call(B, erlang, node, []), "
        f"erlang:monotonic_time(nanosecond) - T0 end || _ <- lists:seq(1, {calls})].",
        timeout=120,
    )
    return [int(x) / 1000 for x in text.strip("[]").split(",")]


async def ours(b: ErlangNode, epmd_port: int, calls: int) -> tuple[list[float], float]:
    local = LocalNode("bench@127.0.0.1", b.cookie, epmd_port=epmd_port)
    try:
        await local.rpc(b.name, "erlang", "node", [])
        samples = []
        for _ in range(calls):
            t0 = time.perf_counter_ns()
            await local.rpc(b.name, "erlang", "node", [])
            samples.append((time.perf_counter_ns() - t0) / 1000)
        concurrency = 64
        per_worker = max(1, calls // concurrency)

        async def worker() -> None:
            for _ in range(per_worker):
                await local.rpc(b.name, "erlang", "node", [])

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        rate = concurrency * per_worker / (time.perf_counter() - t0)
        return samples, rate
    finally:
        await local.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    with Epmd() as epmd:
        cookie = random_cookie()
        a = ErlangNode("otp25", cookie=cookie, epmd_port=epmd.port)
        b = ErlangNode("otp25", cookie=cookie, epmd_port=epmd.port)
        try:
            a.start()
            b.start()
            reference = percentiles(erlang_reference(a, b, args.calls))
            samples, rate = asyncio.run(ours(b, epmd.port, args.calls))
            mine = percentiles(samples)
        finally:
            a.stop()
            b.stop()
    print(f"rpc erlang:node/0 on loopback, {args.calls} sequential calls (microseconds)")
    print(f"{'':28}{'p50':>9}{'p90':>9}{'p99':>9}{'mean':>9}")
    for label, row in (
        ("Erlang rpc:call (reference)", reference),
        ("beamside LocalNode.rpc", mine),
    ):
        print(f"{label:28}" + "".join(f"{row[k]:9.0f}" for k in ("p50", "p90", "p99", "mean")))
    print(f"ratio beamside/Erlang p50: {mine['p50'] / reference['p50']:.2f}")
    print(f"beamside p50 {mine['p50'] / 1000:.3f} ms (target < 1 ms)")
    print(f"beamside throughput with 64 concurrent callers: {rate:,.0f} calls/s")


if __name__ == "__main__":
    main()
