"""Loki client: choose on evidence.  python-logging-loki against our LokiSink.

    python bench/bench_loki.py                  # about 1.5 min
    python bench/bench_loki.py --duration 5 --rates 20000,40000

Both clients push to the same strict Loki double (``tests/support/loki_double.py``),
run in its own process (:class:`~tests.support.loki_double.LokiDoubleProcess`) so it
does not share the clients' GIL.  In the same run:

1. **Reference: python-logging-loki 0.3.1** (``pip install
   python-logging-loki==0.3.1``; a bench-only dependency), the usual Python
   Loki client: a ``logging.Handler`` that sends one synchronous JSON
   ``requests`` POST per record.  ``--ref-count`` records through
   ``logger.info``; events/s = records / time until the last ``emit``
   returned (each emit returns after Loki answered, so that is delivery).
2. **LokiSink, as fast as it goes**: ``--count`` entries built with
   ``make_entry`` (JSON details, as beamside does) and published as fast as
   the loop allows (yielding every 1,000), default config (1 MiB batches,
   1 s batch wait, protobuf + snappy); events/s = entries / time from the
   first publish until the double has stored the last one.  The ratio of
   the two is the headline.
3. **Sustained throughput with zero loss**: each rate of ``--rates`` is
   held for ``--duration`` s (paced every 10 ms); it passes when every entry
   is stored, none dropped, and the backlog is gone within
   ``--catch-up`` s of the end.  Target: 20,000 events/s.
4. **End-to-end latency at 1,000 events/s** for ``--latency-duration`` s:
   each line carries ``time.time_ns()`` at publish; the double stamps the
   time it stored the entry; p50/p99/max of the difference.  Target: p99 <
   2 s.  With the default ``batch_wait`` of 1 s a batch leaves at most 1 s
   after its oldest entry, so p99 is just above 1 s by design.

Every figure also checks that the double stored what was sent, exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sidecar.loki import LokiConfig, LokiSink, make_entry  # noqa: E402
from tests.support.loki_double import LokiDoubleProcess  # noqa: E402

NODES = ("a@h1", "b@h2", "c@h3", "d@h4")


def details(i: int, kind: str) -> dict[str, Any]:
    # what a typical logger event looks like once beamside has it
    return {
        "msg": f"request {i} handled in 12 ms",
        "mfa": "my_app_handler:handle/3",
        "pid": "<0.1234.0>",
        "seq": i,
        "bench": kind,
        "pub_ns": time.time_ns(),
    }


def wait_stored(double: LokiDoubleProcess, target: int, timeout: float) -> tuple[int, float]:
    """Poll the double until ``target`` entries are stored; (stored, when)."""
    deadline = time.monotonic() + timeout
    while True:
        stored = int(double.stats()["stored"])
        now = time.monotonic()
        if stored >= target or now >= deadline:
            return stored, now
        time.sleep(0.01)


# ------------------------------------------------------------- reference


def bench_reference(double: LokiDoubleProcess, count: int) -> float:
    import logging_loki  # bench-only dependency

    handler = logging_loki.LokiHandler(
        url=double.url + "/loki/api/v1/push",
        tags={"job": "bench-ref", "cluster": "c1"},
        version="1",
    )
    logger = logging.getLogger("bench.loki.reference")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    errors: list[str] = []
    handler.handleError = lambda record: errors.append(str(sys.exc_info()[1]))  # type: ignore[method-assign]
    double.reset()
    try:
        t0 = time.perf_counter()
        for i in range(count):
            logger.info("%s", details(i, "reference"))
        elapsed = time.perf_counter() - t0
    finally:
        logger.removeHandler(handler)
        handler.close()
    stats = double.stats()
    if errors or stats["stored"] != count or stats["duplicates"]:
        raise SystemExit(f"reference lost entries: {stats} errors={errors[:3]}")
    return count / elapsed


# ------------------------------------------------------------------ ours


def sink_config(double: LokiDoubleProcess) -> LokiConfig:
    return LokiConfig(double.url)  # the defaults, as shipped


async def bench_sink_max(double: LokiDoubleProcess, count: int) -> tuple[float, float]:
    double.reset()
    sink = LokiSink(sink_config(double))
    await sink.start()
    try:
        t0 = time.perf_counter()
        for i in range(count):
            sink.publish(
                make_entry(
                    "log", "info", NODES[i % 4], "fam", "c1", time.time_ns(), details(i, "max")
                )
            )
            if i % 1000 == 999:
                await asyncio.sleep(0)
        published = time.perf_counter() - t0
        stored, _ = await asyncio.to_thread(wait_stored, double, count, 60.0)
        elapsed = time.perf_counter() - t0
    finally:
        await sink.stop()
    stats = double.stats()
    if stored != count or sink.dropped or stats["duplicates"]:
        raise SystemExit(f"sink lost entries: {stats} dropped={sink.dropped_total}")
    return count / elapsed, count / published


async def bench_sink_rate(
    double: LokiDoubleProcess, rate: int, duration: float, catch_up: float
) -> dict[str, Any]:
    double.reset()
    sink = LokiSink(sink_config(double))
    await sink.start()
    count = int(rate * duration)
    max_queue = 0
    try:
        t0 = time.monotonic()
        i = 0
        while i < count:
            # publish what is due, then sleep until the next 10 ms tick
            due = min(count, int((time.monotonic() - t0) * rate) + 1)
            while i < due:
                sink.publish(
                    make_entry(
                        "log", "info", NODES[i % 4], "fam", "c1", time.time_ns(), details(i, "rate")
                    )
                )
                i += 1
            max_queue = max(max_queue, sink.queue_bytes)
            await asyncio.sleep(0.01)
        publish_time = time.monotonic() - t0
        stored, when = await asyncio.to_thread(wait_stored, double, count, catch_up)
        lag = when - (t0 + publish_time)
    finally:
        await sink.stop()
    stats = double.stats()
    ok = stored == count and not sink.dropped and not stats["duplicates"]
    return {
        "rate": rate,
        "achieved": count / publish_time,
        "stored": stored,
        "count": count,
        "dropped": sink.dropped,
        "duplicates": stats["duplicates"],
        "lag": lag,
        "max_queue": max_queue,
        "ok": ok,
    }


async def bench_latency(double: LokiDoubleProcess, rate: int, duration: float) -> dict[str, float]:
    import json

    double.reset()
    sink = LokiSink(sink_config(double))
    await sink.start()
    count = int(rate * duration)
    try:
        t0 = time.monotonic()
        for i in range(count):
            await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
            sink.publish(
                make_entry(
                    "log", "info", NODES[i % 4], "fam", "c1", time.time_ns(), details(i, "lat")
                )
            )
        await asyncio.to_thread(wait_stored, double, count, 30.0)
    finally:
        await sink.stop()
    rows = await asyncio.to_thread(double.dump)
    if len(rows) != count:
        raise SystemExit(f"latency run lost entries: {len(rows)} of {count}")
    lat = sorted((arrival - json.loads(line)["pub_ns"]) / 1e9 for _, _, line, arrival in rows)
    q = statistics.quantiles(lat, n=100)
    return {"p50": q[49], "p99": q[98], "max": lat[-1], "count": float(count)}


# ------------------------------------------------------------------ main


async def run(args: argparse.Namespace) -> None:
    print(
        f"# bench_loki {datetime.date.today()} CPython {platform.python_version()}"
        f" {platform.machine()} {os.cpu_count()} cores"
    )
    with LokiDoubleProcess() as double:
        ref = await asyncio.to_thread(bench_reference, double, args.ref_count)
        ours, publish_rate = await bench_sink_max(double, args.count)
        print()
        print("== 1-2. events/s, same load (JSON details, 4 streams), same Loki double ==")
        print(
            f"python-logging-loki 0.3.1 (1 sync POST/record): {ref:>10,.0f} events/s"
            f"  ({args.ref_count:,} records)"
        )
        print(
            f"LokiSink (batched, protobuf+snappy, async):     {ours:>10,.0f} events/s"
            f"  ({args.count:,} entries; publish alone {publish_rate:,.0f}/s)"
        )
        print(f"ratio LokiSink / python-logging-loki: {ours / ref:.1f}x")
        print()
        print(f"== 3. sustained, zero loss, {args.duration:.0f} s per rate ==")
        print("   rate/s  achieved/s    stored   dropped  dups  lag s  max queue  result")
        best = 0
        for rate in args.rates:
            r = await bench_sink_rate(double, rate, args.duration, args.catch_up)
            print(
                f"{r['rate']:>9,} {r['achieved']:>11,.0f} {r['stored']:>9,} {r['dropped']:>9,}"
                f" {r['duplicates']:>5} {r['lag']:>6.2f} {r['max_queue']:>10,}"
                f"  {'ok' if r['ok'] else 'FAIL'}"
            )
            if r["ok"]:
                best = max(best, rate)
        print(f"highest sustained rate with zero loss: {best:,} events/s (target >= 20,000)")
        print()
        lat = await bench_latency(double, args.latency_rate, args.latency_duration)
        print(f"== 4. end-to-end latency at {args.latency_rate:,} events/s, publish -> stored ==")
        print(
            f"p50 {lat['p50']:.3f} s   p99 {lat['p99']:.3f} s   max {lat['max']:.3f} s"
            f"   ({lat['count']:,.0f} entries; target p99 < 2 s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--ref-count", type=int, default=3000)
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument(
        "--rates",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[20_000, 40_000, 60_000],
    )
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--catch-up", type=float, default=5.0)
    parser.add_argument("--latency-rate", type=int, default=1000)
    parser.add_argument("--latency-duration", type=float, default=15.0)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
