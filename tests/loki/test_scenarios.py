"""End-to-end delivery scenarios: Loki down during a burst, beamside SIGKILLed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cramjam

from sidecar.loki import LokiConfig, LokiSink
from sidecar.loki.spool import read_records
from tests.loki.helpers import assert_in_order, entry, seqs, wait_until
from tests.support.loki_double import LokiDouble, decode_push_proto

ROOT = Path(__file__).resolve().parents[2]


async def test_loki_down_during_a_burst_of_50k(loki: LokiDouble, tmp_path: Path) -> None:
    """50,000 entries at ~20,000/s; Loki goes down 0.5 s in, for 5 s.  All
    arrive once, in order per stream, with memory small enough that most of
    the outage goes through the disk spool."""
    n = 50_000
    cfg = LokiConfig(
        loki.url,
        batch_bytes=64 * 1024,
        batch_wait=0.2,
        memory_bytes=1 << 20,
        spool_dir=tmp_path / "spool",
        min_backoff=0.1,
        max_backoff=1.0,
    )
    sink = LokiSink(cfg)
    await sink.start()
    max_spool = 0

    async def outage() -> None:
        await asyncio.sleep(0.5)
        await asyncio.to_thread(loki.set_mode, "down")
        await asyncio.sleep(5.0)
        await asyncio.to_thread(loki.set_mode, "ok")

    down = asyncio.create_task(outage())
    try:
        t0 = time.monotonic()
        for i in range(n):
            sink.publish(entry(i))
            if i % 200 == 199:
                max_spool = max(max_spool, sink.spool_bytes)
                await asyncio.sleep(max(0.0, t0 + (i + 1) / 20_000 - time.monotonic()))
        await down
        assert await wait_until(lambda: loki.stored_entries >= n, timeout=60)
        assert await wait_until(lambda: sink.idle, timeout=10)
    finally:
        down.cancel()
        await sink.stop()
    assert max_spool > 0  # the outage did go through the spool
    assert sink.failures_total["connection"] + sink.failures_total["transport"] > 0
    assert sink.dropped == 0
    assert sorted(seqs(loki.entries())) == list(range(n))
    assert loki.stored_entries == n
    assert loki.duplicate_entries == 0  # nothing delivered twice
    assert_in_order(loki)


def spooled_seqs(spool_dir: Path) -> list[int]:
    out = []
    for rec in read_records(spool_dir):
        raw = bytes(cramjam.snappy.decompress_raw(rec.payload))
        for _, entries in decode_push_proto(raw):
            out.extend(int(json.loads(line)["seq"]) for _, line in entries)
    return out


def test_sigkill_mid_burst_then_restart_delivers_the_spool(
    loki: LokiDouble, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    loki.set_mode("down")
    cmd = [sys.executable, "-m", "tests.loki.sink_proc", loki.url, str(spool_dir)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(
        [*cmd, "--count", "1000000", "--rate", "20000"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout is not None
        for line in first.stdout:  # kill it in the middle of the burst
            if line.startswith("PUBLISHED") and int(line.split()[1]) >= 30_000:
                break
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        if first.stdout:
            first.stdout.close()
    assert first.returncode == -signal.SIGKILL

    spooled = spooled_seqs(spool_dir)
    assert len(spooled) > 10_000  # most of what was published reached the disk
    # the oldest entries, each once: memory spills oldest first (what was
    # still in memory at the kill is lost, by design)
    assert sorted(spooled) == list(range(len(spooled)))
    assert loki.stored_entries == 0

    loki.set_mode("ok")
    second = subprocess.run(
        [*cmd, "--count", "0"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("IDLE"), second.stdout + second.stderr
    delivered = seqs(loki.entries())
    assert sorted(delivered) == sorted(spooled)  # all of it, nothing else
    assert loki.duplicate_entries == 0
    assert_in_order(loki)
    assert read_records(spool_dir) == []
