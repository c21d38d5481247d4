"""A LokiSink in its own process, for the SIGKILL test (test_scenarios.py).

``python -m tests.loki.sink_proc URL SPOOL_DIR --count N --rate R`` publishes
N entries (``{"seq": i}``, three streams) at R per second and prints
``PUBLISHED i`` every 1000; with ``--count 0`` it only delivers what the spool
holds, then stops and prints ``IDLE``.  Small memory and batch bounds make it
spool early.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from sidecar.loki import LokiConfig, LokiSink
from tests.loki.helpers import entry


async def run(args: argparse.Namespace) -> None:
    cfg = LokiConfig(
        args.url,
        batch_bytes=16 * 1024,
        batch_wait=0.1,
        memory_bytes=256 * 1024,
        spool_dir=Path(args.spool_dir),
        min_backoff=0.05,
        max_backoff=0.5,
        spill_after=0.5,
    )
    sink = LokiSink(cfg)
    await sink.start()
    t0 = time.monotonic()
    for i in range(args.count):
        sink.publish(entry(i))
        if i % 100 == 99:
            # pace to the rate; sleeping also lets the spool thread run
            await asyncio.sleep(max(0.0, t0 + (i + 1) / args.rate - time.monotonic()))
        if i % 1000 == 999:
            print(f"PUBLISHED {i + 1}", flush=True)
    deadline = time.monotonic() + args.idle_timeout
    while not sink.idle and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await sink.stop(drain_timeout=1.0)
    print("IDLE" if sink.idle else "NOT IDLE", sink.sent_total, sink.dropped, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("spool_dir")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--rate", type=float, default=20_000.0)
    parser.add_argument("--idle-timeout", type=float, default=30.0)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
