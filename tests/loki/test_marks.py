"""Durability marks: the spool keeps them with their records (and in its
marks file once those go); the sink reports a mark durable only once every
entry published before it is delivered or fsynced; the notifier drops a node
batch it already has and acknowledges what is durable."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sidecar.agents.events import EventBatch, NodeEvent
from sidecar.erldist.term import Atom
from sidecar.loki import LokiConfig, LokiSink
from sidecar.loki.spool import MAGIC_MARKS, Spool, read_records
from sidecar.notify import Notifier
from tests.loki.helpers import entry, seqs, wait_until
from tests.support.loki_double import LokiDouble


def config(loki: LokiDouble, **kw: Any) -> LokiConfig:
    base: dict[str, Any] = {
        "batch_wait": 0.05,
        "min_backoff": 0.05,
        "max_backoff": 0.2,
        "timeout": 2.0,
    }
    base.update(kw)
    return LokiConfig(loki.url, **base)


def test_marks_live_in_records_then_in_the_marks_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20, segment_bytes=64 * 1024)
    spool.open()
    first = spool.append(b"a" * 40_000, 3, marks={"n 1": 4})
    spool.append(b"b" * 40_000, 2, marks={"n 1": 7, "m 2": 1})  # a second segment
    spool.append(b"c", 1)
    spool.close()
    records = read_records(tmp_path)
    assert [r.marks for r in records] == [{"n 1": 4}, {"n 1": 7, "m 2": 1}, {}]
    assert [r.payload[:1] for r in records] == [b"a", b"b", b"c"]
    assert (tmp_path / f"{first.pos.seq:020d}.seg").read_bytes()[:4] == MAGIC_MARKS
    # Reopened: the marks are known; delivering (acking) deletes the first
    # segment, whose marks go to the marks file first.
    spool = Spool(tmp_path, 1 << 20, segment_bytes=64 * 1024)
    spool.open()
    assert spool.marks == {"n 1": 7, "m 2": 1}
    head = spool.head()
    assert head is not None and head.marks == {"n 1": 4} and head.count == 3
    assert spool.ack(head.pos)
    spool.save_marks({"x 9": 3})
    spool.close()
    for seg in tmp_path.glob("*.seg"):
        seg.unlink()  # even with every record gone, the marks file has them all
    spool = Spool(tmp_path, 1 << 20)
    spool.open()
    assert spool.marks == {"n 1": 7, "m 2": 1, "x 9": 3}
    spool.close()


async def test_mark_durable_only_when_its_entries_are(loki: LokiDouble, tmp_path: Path) -> None:
    loki.set_mode("down")
    sink = LokiSink(config(loki, spool_dir=tmp_path, spill_after=60.0))
    await sink.start()
    try:
        for i in range(50):
            sink.publish(entry(i))
        sink.mark("n 1", 1)
        await sink.settle_marks()
        assert sink.durable_marks == {}  # in memory, Loki down: not durable
        assert await wait_until(lambda: sink.failures_total["connection"] > 0, timeout=5)
        sink.make_durable()  # Loki failing, a mark waits: spool it now
        assert await wait_until(lambda: sink.durable_marks.get("n 1") == 1, timeout=5)
        assert sink.spool_entries == 50
        # Loki back: delivered straight from memory, the mark via the marks file.
        loki.set_mode("ok")
        for i in range(50, 60):
            sink.publish(entry(i))
        sink.mark("n 1", 2)

        async def settled() -> bool:
            await sink.settle_marks()
            return sink.durable_marks.get("n 1") == 2

        for _ in range(200):
            if await settled():
                break
            await asyncio.sleep(0.02)
        assert sink.durable_marks["n 1"] == 2
        assert sorted(seqs(loki.entries())) == list(range(60))
    finally:
        await sink.stop(drain_timeout=3)
    # A new sink on the same spool knows both.
    again = LokiSink(config(loki, spool_dir=tmp_path))
    await again.start()
    try:
        assert again.durable_marks == {"n 1": 2}
    finally:
        await again.stop()


def _batch(seq: int, session: int = 5, n: int = 2) -> EventBatch:
    events = tuple(
        NodeEvent("log", "log", "error", 1_000 + seq * 10 + i, "a@h", f"b{seq}.{i}")
        for i in range(n)
    )
    return EventBatch("a@h", seq, events, {}, session)


class _FakeLocal:
    name = "me@h"

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any]] = []

    def is_connected(self, peer: str) -> bool:
        return True

    async def send_to_name(self, peer: str, name: str, message: Any) -> None:
        self.sent.append((peer, name, message))


async def test_notifier_drops_what_it_has_and_acknowledges_durable(
    loki: LokiDouble, tmp_path: Path
) -> None:
    sink = LokiSink(config(loki, spool_dir=tmp_path))
    await sink.start()
    local = _FakeLocal()
    notifier = Notifier("c", lambda n: "f", sink.publish)
    notifier.enable_acks(local, sink)  # type: ignore[arg-type]
    try:
        for seq in (1, 2, 3, 2, 3):  # 2 and 3 again: a resend after a reconnect
            notifier.node_events(_batch(seq))
        assert await wait_until(lambda: any(m[2][3] == 3 for m in local.sent), timeout=5)
        peer, name, ack = local.sent[-1]
        assert (peer, name) == ("a@h", "beamside_events")
        assert ack == (Atom("beamside_events_ack"), Atom("me@h"), 5, 3)
        assert notifier._nodes["a@h"].duplicate_batches == 2
        assert sink.accepted_total == 6  # three batches of two, once each
    finally:
        await notifier.aclose()
        await sink.stop(drain_timeout=3)
    # Restarted: the spool remembers batch 3 was made durable.
    sink = LokiSink(config(loki, spool_dir=tmp_path))
    await sink.start()
    notifier = Notifier("c", lambda n: "f", sink.publish)
    notifier.enable_acks(local, sink)  # type: ignore[arg-type]
    try:
        for seq in (3, 4):
            notifier.node_events(_batch(seq))
        assert sink.accepted_total == 2  # only batch 4
        assert notifier._nodes["a@h"].duplicate_batches == 1
        assert await wait_until(lambda: local.sent[-1][2][3] == 4, timeout=5)
    finally:
        await notifier.aclose()
        await sink.stop(drain_timeout=3)


async def test_pushes_and_spool_records_end_where_a_node_batch_ends(
    loki: LokiDouble, tmp_path: Path
) -> None:
    """A push or spool record cut by ``batch_bytes`` ends at the last mark
    inside it: a crash once that record is durable never leaves part of a
    node batch durable and the rest not (the node would send the whole batch
    again: the durable part twice).  Seen as 372 identical re-sends after a
    SIGKILL mid-burst."""
    per_batch = 7

    def publish_batches(sink: LokiSink, first: int, batches: int) -> None:
        for b in range(batches):
            for i in range(per_batch):
                sink.publish(entry(first + b * per_batch + i, node="a@h1", pad=300))
            sink.mark("n 1", first // per_batch + b + 1)

    # Loki down: make_durable spills memory in records of at most batch_bytes.
    loki.set_mode("down")
    cfg = config(loki, spool_dir=tmp_path, spill_after=60.0, batch_bytes=8 * 1024)
    sink = LokiSink(cfg)
    await sink.start()
    try:
        publish_batches(sink, 0, 30)  # 210 entries of ~400 bytes: about 10 records
        assert await wait_until(lambda: sink.failures_total["connection"] > 0, timeout=5)
        sink.make_durable()
        assert await wait_until(lambda: sink.spool_entries == 30 * per_batch, timeout=5)
    finally:
        await sink.stop(drain_timeout=0)
    records = read_records(tmp_path)
    assert len(records) > 5
    end = 0
    for record in records:
        end += record.count
        assert end % per_batch == 0, [r.count for r in records]
        assert record.marks == {"n 1": end // per_batch}

    # Loki up: pushes straight from memory end at batch ends too.
    loki.set_mode("ok")
    loki.reset()
    sink = LokiSink(config(loki, batch_bytes=8 * 1024, batch_wait=5.0))
    await sink.start()
    try:
        publish_batches(sink, 0, 30)
        assert await wait_until(lambda: loki.counts()["stored"] == 30 * per_batch, timeout=10)
    finally:
        await sink.stop(drain_timeout=3)
    sizes = [r.entries for r in loki.requests]
    assert len(sizes) > 5 and all(n % per_batch == 0 for n in sizes), sizes
