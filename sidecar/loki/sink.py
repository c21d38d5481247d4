"""Loki sink: delivers :class:`~sidecar.loki.model.LogEntry` values to Loki's push API.

:meth:`LokiSink.publish` is synchronous, cheap and never raises for a full
queue: it appends to an in-memory queue that one asyncio task drains into
``POST /loki/api/v1/push`` requests.  Call it from the event loop's thread
(:meth:`LokiSink.publish_threadsafe` from others).

Wire format
    protobuf ``logproto.PushRequest`` (``gen/push.proto``)
    compressed with raw snappy (block format, no framing): what Promtail and
    Grafana Alloy send, ``Content-Type: application/x-protobuf``,
    ``Content-Encoding: snappy``.  ``X-Scope-OrgID`` carries the tenant.

Batches
    A batch is sent when the queue holds ``batch_bytes`` or when its oldest
    entry has waited ``batch_wait``.  Entries are grouped by label set (one
    stream each); within a stream they keep the order :meth:`publish` saw.
    ``publish`` makes timestamps strictly increasing per stream (an entry not
    later than the previous one of its stream gets the previous timestamp +
    1 ns): old Loki versions reject out-of-order entries, and two distinct
    entries of a stream never share a timestamp, so Loki's de-duplication
    (below) can never merge them.
    A batch cut short by ``batch_bytes`` ends at the last durability mark
    inside it (below), so a node's event batch lies whole in one push or
    spool record whenever it fits in one.

Retries
    429, 5xx, 408, timeouts and transport errors are retried, the same batch
    byte for byte, with exponential backoff (``min_backoff`` doubling up to
    ``max_backoff``, equal jitter: :mod:`sidecar.backoff`; ``Retry-After``
    honoured up to ``max_backoff``)
    for as long as the sink runs.  Other 4xx answers are final for that batch:
    its entries are counted as dropped (``reason="rejected"``) and Loki's
    reason is logged - a poison batch is never retried forever.  Note that
    Loki answers 400 when *any* entry of a request is invalid, having stored
    the valid ones; the whole batch is counted (an upper bound).  Batches are
    delivered in order: one is retried until it is settled before the next is
    sent.

Memory, spool, order
    The memory queue is bounded by ``memory_bytes``.  Without ``spool_dir``
    the oldest entries are dropped past that bound (``reason="queue_full"``).
    With a spool, when the queue passes half of the bound (Loki down or
    slower than the input), its oldest entries are encoded into batches and
    appended to the disk spool (:mod:`sidecar.loki.spool`) - the batch in
    flight first, since it is the oldest.  The same happens to the whole
    queue after ``spill_after`` seconds of failed pushes, so a crash during
    an outage loses at most that much.  The sender always takes from the
    spool before memory, so the spool holds only entries older than memory's
    and delivery order is publish order.  A full spool drops its oldest
    segment (``reason="spool_full"``).  :meth:`LokiSink.stop` pushes what it
    can within ``drain_timeout`` and spools the rest; the next sink started
    on the same ``spool_dir`` delivers it first.  Spool I/O (fsync included)
    runs in one worker thread, never in the event loop.

Nothing delivered twice
    An entry leaves memory or the spool only after Loki answered 2xx for its
    batch (for the spool: the acknowledgement is fsynced before the record
    is deleted).  Two windows remain where a batch Loki already stored is
    sent again, unchanged: a push that timed out after Loki stored it, and a
    crash between Loki's answer and the acknowledgement's fsync (at most the
    one batch in flight).  Both are harmless: Loki's ingester ignores an
    entry identical (same stream, timestamp and line) to one the stream
    already has, and its queries merge identical entries; because of the
    strictly increasing timestamps above, only a true re-send can be
    identical.  The test double (``tests/support/loki_double.py``) behaves the same
    and counts such duplicates, so tests can assert none were sent.

Durability marks (node event acknowledgements)
    :meth:`LokiSink.mark` notes the publish position under a key (a node
    event batch: ``"<node> <session>"`` and its sequence number);
    :attr:`LokiSink.durable_marks` has it once every entry published
    before it is durable: fsynced in the spool (the mark is inside that
    record: both survive a crash together) or accepted by Loki (then the mark
    is written to the spool's marks file first, :meth:`LokiSink.settle_marks`),
    or counted as dropped.  :meth:`LokiSink.make_durable` spools memory at
    once while Loki fails and marks wait.  A crash between Loki's answer and
    the marks file write makes the node send that batch again: identical
    entries, which Loki ignores (as above).

Losses are counted (``beamside_loki_entries_dropped_total{reason}``) and
logged, at most one line per reason every :data:`LOG_INTERVAL` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Final, TypeVar

import cramjam
import httpx
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from ..backoff import Backoff, BackoffPolicy, wait_event
from .config import LokiConfig
from .gen import push_pb2
from .model import Labels, LogEntry
from .spool import AppendResult, Spool, SpoolError, SpoolPosition, SpoolRecord

log = logging.getLogger(__name__)

LOG_INTERVAL: Final = 30.0
_ENTRY_OVERHEAD: Final = 32  # bytes counted per entry besides its line
_BODY_QUOTE: Final = 500  # characters of Loki's answer kept in logs and errors

T = TypeVar("T")

DROP_REASONS: Final = ("queue_full", "spool_full", "spool_error", "rejected", "shutdown")
FAILURE_REASONS: Final = (
    "rate_limited",
    "server_error",
    "timeout",
    "connection",
    "transport",
    "rejected",
)


class LokiPushError(Exception):
    """One push failed: what httpx errors and non-2xx answers become."""

    def __init__(
        self,
        reason: str,
        detail: str,
        *,
        status: int | None = None,
        retryable: bool = True,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason  # one of FAILURE_REASONS (a metric label)
        self.detail = detail
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


# ---------------------------------------------------------------- encoding


@functools.lru_cache(maxsize=4096)
def selector_text(labels: Labels) -> str:
    """``{a="x", b="y"}``: the stream's labels as Loki's push API wants them."""
    return "{" + ", ".join(f'{n}="{_escape(v)}"' for n, v in labels) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def encode_batch(entries: Sequence[LogEntry]) -> bytes:
    """The push request body for ``entries``: snappy-compressed protobuf, one
    stream per label set, entries in the given order within a stream."""
    request = push_pb2.PushRequest()
    streams: dict[Labels, push_pb2.StreamAdapter] = {}
    for entry in entries:
        stream = streams.get(entry.labels)
        if stream is None:
            stream = request.streams.add()
            stream.labels = selector_text(entry.labels)
            streams[entry.labels] = stream
        item = stream.entries.add()
        item.timestamp.seconds, item.timestamp.nanos = divmod(entry.time_ns, 1_000_000_000)
        item.line = entry.line
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def entry_size(entry: LogEntry) -> int:
    """Bytes an entry is counted for in the memory bound and batch size."""
    return len(entry.line) + _ENTRY_OVERHEAD


class _Batch:
    """One push request body and where its entries are kept until delivered."""

    __slots__ = ("count", "delivered", "first", "nbytes", "payload", "persist", "pos")

    def __init__(
        self,
        payload: bytes,
        count: int,
        nbytes: int,
        pos: SpoolPosition | None,
        first: int | None = None,
    ) -> None:
        self.payload = payload
        self.first = first  # publish index of its first entry (memory batches)
        self.count = count
        self.nbytes = nbytes  # memory bytes it holds (0 when it came from the spool)
        self.pos = pos  # its spool record, when it came from the spool
        # a copy being written to the spool (memory batch, Loki failing)
        self.persist: asyncio.Future[AppendResult] | None = None
        self.delivered = False


class _RateLimitedLog:
    """At most one line per key every ``interval`` seconds, with a count of
    what was held back."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def __call__(self, key: str, level: int, msg: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._held[key] = self._held.get(key, 0) + 1
            return
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            msg += " (%d similar messages suppressed)"
            args = (*args, held)
        log.log(level, msg, *args)


# -------------------------------------------------------------------- sink


class LokiSink:
    """Delivers log entries to one Loki.  Pass ``client`` to choose the
    transport (tests, proxies, TLS); otherwise the sink makes and closes its
    own.  ``clock`` (monotonic seconds) times batching and backoff."""

    def __init__(
        self,
        config: LokiConfig,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._client = client
        self._own_client = client is None
        self._clock = clock
        self._headers = {
            "Content-Type": "application/x-protobuf",
            "Content-Encoding": "snappy",
            "User-Agent": "beamside",
            **dict(config.headers),
        }
        if config.tenant is not None:
            self._headers["X-Scope-OrgID"] = config.tenant
        # memory queue: (entry, counted bytes), oldest first
        self._mem: deque[tuple[LogEntry, int]] = deque()
        self._mem_bytes = 0
        self._pending_since = 0.0  # clock() when the oldest unbatched entry could start a batch
        self._last_ts: dict[Labels, int] = {}
        self._spill_at = config.memory_bytes // 2
        self._spool: Spool | None = None
        self._io: ThreadPoolExecutor | None = None
        # spool appends of entries taken out of memory, not finished yet: entry counts
        self._spills: dict[asyncio.Future[AppendResult], int] = {}
        self._spilling_bytes = 0  # bytes of those entries
        self._spilling_lock = threading.Lock()
        # publish index of the first entry of each of those appends
        self._spill_first: dict[asyncio.Future[AppendResult], int] = {}
        # marks (see mark()): not durable yet, in publish index order
        self._marks: deque[tuple[int, str, int]] = deque()
        self.durable_marks: dict[str, int] = {}
        self._inflight: _Batch | None = None
        # Spool record of the in-flight batch, if any (I/O thread only): the
        # sender holds it in memory, so if a full spool evicts it, it is not
        # lost (yet) and not counted as dropped (see _save_leftovers).
        self._held: SpoolPosition | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._stopped = False
        self._failing_since: float | None = None
        self._failure_reason: str | None = None
        self._failed_attempts = 0
        self._ratelog = _RateLimitedLog(LOG_INTERVAL)
        # counters
        self.accepted_total = 0
        self.sent_total = 0
        self.failures_total: dict[str, int] = dict.fromkeys(FAILURE_REASONS, 0)
        self.dropped_total: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)

    # --------------------------------------------------------------- state

    @property
    def queue_bytes(self) -> int:
        """Bytes of entries held in memory (queued, being spooled, in flight)."""
        inflight = self._inflight.nbytes if self._inflight is not None else 0
        return self._mem_bytes + self._spilling_bytes + inflight

    @property
    def spool_bytes(self) -> int:
        return self._spool.total_bytes if self._spool is not None else 0

    @property
    def spool_entries(self) -> int:
        """Entries on disk (fsynced) and not yet delivered: what survives a crash."""
        return self._spool.pending_entries if self._spool is not None else 0

    @property
    def pending_entries(self) -> int:
        """Entries accepted and not yet settled (delivered, rejected or dropped)."""
        inflight = self._inflight
        count = len(self._mem)
        if inflight is not None and inflight.pos is None and inflight.persist is None:
            count += inflight.count
        if self._spool is not None:
            count += self._spool.pending_entries
            if inflight is not None and inflight.delivered and inflight.pos is not None:
                count -= inflight.count
        return count + sum(self._spills.values())

    @property
    def durable_index(self) -> int:
        """Every entry published before this index (0 for the first
        :meth:`publish`) is settled: delivered, fsynced in the spool, or
        counted as dropped."""
        first = [self.accepted_total]
        if self._mem:
            first.append(self.accepted_total - len(self._mem))
        b = self._inflight
        if (
            b is not None
            and b.first is not None
            and not b.delivered
            and (b.persist is None or not b.persist.done())
        ):
            first.append(b.first)
        first.extend(self._spill_first.values())
        return min(first)

    def mark(self, key: str, seq: int) -> None:
        """Mark the publish position: once every entry published so far is
        durable (delivered or fsynced) and the mark itself is (inside the
        spool record that holds the last of them, or the spool's marks file),
        ``durable_marks[key]`` becomes ``seq`` (see :meth:`settle_marks`).
        A restarted sink starts with the marks its spool kept."""
        self._marks.append((self.accepted_total, key, seq))

    def _take_marks(self, end: int) -> dict[str, int]:
        """The pending marks at or before publish index ``end``, off the queue."""
        out: dict[str, int] = {}
        while self._marks and self._marks[0][0] <= end:
            _, key, seq = self._marks.popleft()
            if seq > out.get(key, -1):
                out[key] = seq
        return out

    def _merge_durable(self, marks: dict[str, int]) -> None:
        for key, seq in marks.items():
            if seq > self.durable_marks.get(key, -1):
                self.durable_marks[key] = seq

    def make_durable(self) -> None:
        """While Loki fails and marks wait, spool what memory holds now (the
        node keeps its batches until they are durable: no point waiting for
        ``spill_after``)."""
        if (
            self._spool is not None
            and self._marks
            and self._failing_since is not None
            and not self._stopping
            and not self._stopped
        ):
            self._spill(0)

    async def settle_marks(self) -> None:
        """Make durable the marks whose entries all are (delivered to Loki
        straight from memory, or dropped): written to the spool's marks file
        first, when there is a spool."""
        ready = self._take_marks(self.durable_index)
        if not ready:
            return
        spool = self._spool
        if spool is not None and self._io is not None and not self._stopped:
            await self._io_call(lambda: spool.save_marks(ready))
        self._merge_durable(ready)

    @property
    def idle(self) -> bool:
        """Nothing left to deliver."""
        return self._inflight is None and self.pending_entries == 0

    @property
    def dropped(self) -> int:
        return sum(self.dropped_total.values())

    # ------------------------------------------------------------- publish

    def publish(self, entry: LogEntry) -> None:
        """Queue ``entry``.  Never blocks, never raises for a full queue."""
        if self._stopped:
            self._drop("shutdown", 1)
            return
        labels = entry.labels
        last = self._last_ts.get(labels)
        if last is not None and entry.time_ns <= last:
            entry = LogEntry(labels, last + 1, entry.line)
        self._last_ts[labels] = entry.time_ns
        size = len(entry.line) + _ENTRY_OVERHEAD
        if not self._mem:
            self._pending_since = self._clock()
            self._wake.set()
        self._mem.append((entry, size))
        self._mem_bytes += size
        self.accepted_total += 1
        if self._mem_bytes >= self.config.batch_bytes:
            self._wake.set()
        if self._mem_bytes > self._spill_at and self._spool is not None and not self._stopping:
            self._spill(self._spill_at // 2)
        excess = self.queue_bytes - self.config.memory_bytes
        if excess > 0:
            self._drop_oldest(excess)

    def publish_threadsafe(self, entry: LogEntry) -> None:
        """:meth:`publish` from a thread other than the event loop's."""
        if self._loop is None:
            raise RuntimeError("LokiSink.publish_threadsafe: the sink is not started")
        self._loop.call_soon_threadsafe(self.publish, entry)

    def _drop_oldest(self, nbytes: int) -> None:
        count = 0
        while nbytes > 0 and self._mem:
            _, size = self._mem.popleft()
            self._mem_bytes -= size
            nbytes -= size
            count += 1
        self._drop("queue_full", count)

    def _drop(self, reason: str, count: int) -> None:
        if count <= 0:
            return
        self.dropped_total[reason] += count
        self._ratelog(
            "drop:" + reason,
            logging.WARNING,
            "loki: dropped %d entries (%s); %d dropped for this reason so far",
            count,
            reason,
            self.dropped_total[reason],
        )

    # --------------------------------------------------------------- spill

    def _spill(self, target: int) -> None:
        """Move the oldest queued entries to the spool until memory holds at
        most ``target`` bytes.  The in-flight batch goes first: it is older."""
        assert self._spool is not None and self._loop is not None
        batch = self._inflight
        if (
            batch is not None
            and batch.pos is None
            and batch.persist is None
            and not batch.delivered
        ):
            end = batch.first + batch.count if batch.first is not None else 0
            batch.persist = self._spool_append(
                batch.payload, batch.count, 0, hold=True, marks=self._take_marks(end)
            )
        while self._mem and self._mem_bytes > target:
            first = self.accepted_total - len(self._mem)
            chunk, nbytes = self._take_chunk()
            # Every entry before this chunk's end is settled once it is on
            # disk (appends run in order), so the marks up to there go with it.
            marks = self._take_marks(first + len(chunk))
            self._spool_append(None, chunk, nbytes, first=first, marks=marks)
        if self._mem:
            self._pending_since = self._clock()

    def _take_chunk(self) -> tuple[list[LogEntry], int]:
        """The oldest entries of memory, at most ``batch_bytes`` (at least
        one), off the queue, with their counted bytes.  A chunk cut short by
        the size ends at the last mark inside it when there is one: a node
        batch then lies whole in one push or spool record, and a crash after
        that record is durable but before the next one cannot make the node
        send again entries that are already delivered or spooled."""
        limit = self.config.batch_bytes
        count = nbytes = 0
        for _, size in self._mem:
            if count and nbytes + size > limit:
                break
            count += 1
            nbytes += size
        if count < len(self._mem):
            first = self.accepted_total - len(self._mem)
            end = max(
                (pos for pos, _, _ in self._marks if first < pos < first + count),
                default=first + count,
            )
            count = end - first
        chunk: list[LogEntry] = []
        nbytes = 0
        for _ in range(count):
            entry, size = self._mem.popleft()
            chunk.append(entry)
            nbytes += size
        self._mem_bytes -= nbytes
        return chunk, nbytes

    def _spool_append(
        self,
        payload: bytes | None,
        what: int | list[LogEntry],
        nbytes: int,
        *,
        hold: bool = False,
        first: int | None = None,
        marks: dict[str, int] | None = None,
    ) -> asyncio.Future[AppendResult]:
        """Append in the I/O thread; I/O jobs run one at a time, in order.
        ``hold``: the record is a copy of the in-flight batch."""
        spool = self._spool
        assert spool is not None and self._loop is not None

        def job() -> AppendResult:
            try:
                if payload is None:
                    assert isinstance(what, list)
                    body, count = encode_batch(what), len(what)
                else:
                    assert isinstance(what, int)
                    body, count = payload, what
                result = spool.append(body, count, keep=self._held, marks=marks)
                if hold:
                    self._held = result.pos
                return result
            finally:
                # Here rather than in the done callback: the memory is free now,
                # even if the loop is busy with a burst of publish() calls.
                if nbytes:
                    with self._spilling_lock:
                        self._spilling_bytes -= nbytes

        count = len(what) if isinstance(what, list) else what
        if nbytes:  # entries taken out of memory: tracked until written
            with self._spilling_lock:
                self._spilling_bytes += nbytes
        future = self._loop.run_in_executor(self._io, job)
        if nbytes:
            self._spills[future] = count
            if first is not None:
                self._spill_first[future] = first
        future.add_done_callback(functools.partial(self._spill_done, count, nbytes, marks or {}))
        return future

    def _spill_done(
        self,
        count: int,
        nbytes: int,
        marks: dict[str, int],
        future: asyncio.Future[AppendResult],
    ) -> None:
        self._spills.pop(future, None)
        self._spill_first.pop(future, None)
        # On disk with its entries (or those entries are counted as lost).
        self._merge_durable(marks)
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            if nbytes:  # the entries existed only in that job
                self._drop("spool_error", count)
            self._ratelog("spool_error", logging.ERROR, "loki spool: append failed: %s", error)
            return
        self._drop("spool_full", future.result().evicted_entries)

    async def _io_call(self, fn: Callable[[], T]) -> T:
        assert self._loop is not None
        return await self._loop.run_in_executor(self._io, fn)

    # ----------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Open the spool (if any; :class:`~sidecar.loki.spool.SpoolError` if it
        is unusable) and start delivering, spooled entries first."""
        if self._task is not None:
            raise RuntimeError("LokiSink already started")
        self._loop = asyncio.get_running_loop()
        if self.config.spool_dir is not None:
            self._io = ThreadPoolExecutor(1, thread_name_prefix="loki-spool")
            spool = Spool(self.config.spool_dir, self.config.spool_bytes)
            try:
                report = await self._io_call(spool.open)
            except BaseException:
                self._io.shutdown(wait=False)
                self._io = None
                raise
            self._spool = spool
            self._merge_durable(spool.marks)
            if report.torn_records:
                self._drop("spool_error", report.torn_entries)
            if report.records:
                log.info(
                    "loki spool %s: resuming %d entries (%d batches, %d bytes) left by the"
                    " previous run",
                    self.config.spool_dir,
                    report.entries,
                    report.records,
                    report.bytes,
                )
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.config.timeout)
        self._task = asyncio.create_task(self._run(), name="loki-sink")

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Deliver what can be delivered within ``drain_timeout`` seconds, spool
        the rest (or count it dropped, without a spool), release everything."""
        if self._stopped:
            return
        self._stopping = True
        self._wake.set()
        task = self._task
        if task is not None:
            done, _ = await asyncio.wait({task}, timeout=max(0.0, drain_timeout))
            if not done:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("loki sink task failed", exc_info=task.exception())
        self._stopped = True
        try:
            await self._save_leftovers()
        finally:
            if self._spool is not None:
                with contextlib.suppress(Exception):
                    await self._io_call(self._spool.close)
            if self._io is not None:
                self._io.shutdown(wait=True)
            if self._own_client and self._client is not None:
                await self._client.aclose()
                self._client = None

    async def _save_leftovers(self) -> None:
        batch, self._inflight = self._inflight, None
        if self._spool is None:
            if batch is not None and not batch.delivered:
                self._drop("shutdown", batch.count)
            self._drop("shutdown", len(self._mem))
            self._mem.clear()
            self._mem_bytes = 0
            return
        if batch is not None:
            if batch.delivered:
                await self._settle(batch)
            elif batch.pos is None and batch.persist is None:
                # Nothing was spooled since this batch was taken (a spill
                # copies it first), so it goes in before everything else.
                batch.persist = self._spool_append(batch.payload, batch.count, 0, hold=True)
        self._spill(0)
        if self._spills:
            await asyncio.wait(set(self._spills))
        if batch is not None and not batch.delivered:
            pos = batch.pos
            if pos is None and batch.persist is not None:
                with contextlib.suppress(Exception):
                    pos = (await batch.persist).pos
            spool = self._spool
            if pos is None or not await self._io_call(lambda: spool.contains(pos)):
                # the spool evicted (or could not take) the one copy left
                self._drop("spool_full" if pos is not None else "spool_error", batch.count)

    # ------------------------------------------------------------- sending

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            if batch is None:
                return
            self._inflight = batch
            await self._deliver(batch)
            self._inflight = None

    async def _next_batch(self) -> _Batch | None:
        while True:
            spool = self._spool
            if spool is not None and (self._spills or spool.pending_records):
                if self._spills:  # what memory handed over must go first
                    await asyncio.wait(set(self._spills))
                record = await self._spool_head(spool)
                if record is not None:
                    return _Batch(record.payload, record.count, 0, record.pos)
                continue
            batch = self._take_memory_batch()
            if batch is not None:
                return batch
            if self._stopping:
                return None
            self._wake.clear()
            timeout = None
            if self._mem:
                timeout = max(0.0, self._pending_since + self.config.batch_wait - self._clock())
            await wait_event(self._wake, timeout)

    async def _spool_head(self, spool: Spool) -> SpoolRecord | None:
        def job() -> SpoolRecord | None:
            record = spool.head()
            self._held = record.pos if record is not None else None
            return record

        try:
            return await self._io_call(job)
        except (SpoolError, OSError) as e:
            log.error("loki spool: cannot read the oldest record (%s): discarding its segment", e)
            self._drop("spool_error", await self._io_call(spool.discard_head_segment))
            return None

    def _take_memory_batch(self) -> _Batch | None:
        if not self._mem:
            return None
        full = self._mem_bytes >= self.config.batch_bytes
        due = self._clock() - self._pending_since >= self.config.batch_wait
        if not (full or due or self._stopping):
            return None
        first = self.accepted_total - len(self._mem)
        entries, nbytes = self._take_chunk()
        if self._mem:
            self._pending_since = self._clock()
        batch = _Batch(encode_batch(entries), len(entries), nbytes, None, first)
        # Set before any await so a spill sees it and spools it first.
        self._inflight = batch
        return batch

    async def _deliver(self, batch: _Batch) -> None:
        backoff = Backoff(BackoffPolicy(self.config.min_backoff, self.config.max_backoff))
        while True:
            try:
                await self._push(batch.payload)
            except LokiPushError as e:
                self.failures_total[e.reason] += 1
                if not e.retryable:
                    self._drop("rejected", batch.count)
                    self._ratelog(
                        "rejected",
                        logging.ERROR,
                        "loki rejected a batch of %d entries (HTTP %s), not retrying it: %s",
                        batch.count,
                        e.status,
                        e.detail,
                    )
                    await self._settle(batch)
                    return
                self._note_failure(e)
                delay = backoff.next()
                if e.retry_after is not None:
                    delay = max(delay, min(e.retry_after, self.config.max_backoff))
                if (
                    self._spool is not None
                    and self._failing_since is not None
                    and self._clock() - self._failing_since >= self.config.spill_after
                ):
                    self._spill(0)
                await asyncio.sleep(delay)
                continue
            batch.delivered = True
            self.sent_total += batch.count
            self._note_success()
            await self._settle(batch)
            if self._marks and batch.first is not None:
                # At once: a crash before the marks are written makes the node
                # send these entries again (identical, ignored by Loki).
                await self.settle_marks()
            return

    async def _settle(self, batch: _Batch) -> None:
        """The batch is done with (delivered or rejected): forget its spool record."""
        pos = batch.pos
        if pos is None and batch.persist is not None:
            try:
                pos = (await batch.persist).pos
            except Exception:  # the copy failed: nothing to forget
                pos = None
        if pos is not None and self._spool is not None:
            spool = self._spool

            def job() -> bool:
                self._held = None
                return spool.ack(pos)

            await self._io_call(job)
        batch.pos = batch.persist = None

    def _note_failure(self, e: LokiPushError) -> None:
        self._failed_attempts += 1
        if self._failing_since is None:
            self._failing_since = self._clock()
        if self._failure_reason != e.reason:
            self._failure_reason = e.reason
            log.warning(
                "loki push to %s failing (%s): %s; retrying with backoff, entries are kept",
                self.config.push_url,
                e.reason,
                e.detail,
            )

    def _note_success(self) -> None:
        if self._failing_since is not None:
            log.warning(
                "loki push to %s works again after %.1f s (%d failed attempts)",
                self.config.push_url,
                self._clock() - self._failing_since,
                self._failed_attempts,
            )
        self._failing_since = None
        self._failure_reason = None
        self._failed_attempts = 0

    async def _push(self, payload: bytes) -> None:
        """One POST; every failure comes out as :class:`LokiPushError`."""
        client = self._client
        assert client is not None
        try:
            resp = await client.post(
                self.config.push_url,
                content=payload,
                headers=self._headers,
                timeout=self.config.timeout,
            )
        except httpx.TimeoutException as e:
            raise LokiPushError("timeout", f"no answer within {self.config.timeout} s") from e
        except httpx.ConnectError as e:
            raise LokiPushError("connection", f"cannot connect: {e}") from e
        except httpx.HTTPError as e:  # other transport and protocol errors
            raise LokiPushError("transport", f"{type(e).__name__}: {e}") from e
        status = resp.status_code
        if 200 <= status < 300:
            return
        detail = f"HTTP {status}: {resp.text.strip()[:_BODY_QUOTE]}"
        retry_after = _retry_after(resp.headers.get("Retry-After"))
        if status == 429:
            raise LokiPushError("rate_limited", detail, status=status, retry_after=retry_after)
        if status >= 500:
            raise LokiPushError("server_error", detail, status=status, retry_after=retry_after)
        if status == 408:
            raise LokiPushError("timeout", detail, status=status)
        raise LokiPushError("rejected", detail, status=status, retryable=False)

    # ------------------------------------------------------------- metrics

    def metric_families(self) -> list[Metric]:
        """The sink's own series."""
        sent = CounterMetricFamily(
            "beamside_loki_entries_sent",
            "Log entries Loki acknowledged (2xx)",
        )
        sent.add_metric([], float(self.sent_total))
        failures = CounterMetricFamily(
            "beamside_loki_push_failures",
            "Failed pushes to Loki, by reason (retried unless reason is rejected)",
            labels=["reason"],
        )
        for reason, n in self.failures_total.items():
            failures.add_metric([reason], float(n))
        dropped = CounterMetricFamily(
            "beamside_loki_entries_dropped",
            "Log entries that will never reach Loki, by reason",
            labels=["reason"],
        )
        for reason, n in self.dropped_total.items():
            dropped.add_metric([reason], float(n))
        queue = GaugeMetricFamily(
            "beamside_loki_queue_bytes",
            "Bytes of log entries held in memory for Loki",
        )
        queue.add_metric([], float(self.queue_bytes))
        spool = GaugeMetricFamily(
            "beamside_loki_spool_bytes",
            "Bytes of the disk spool of undelivered Loki batches",
        )
        spool.add_metric([], float(self.spool_bytes))
        spooled = GaugeMetricFamily(
            "beamside_loki_spool_entries",
            "Log entries in the disk spool not yet delivered (what a crash cannot lose)",
        )
        spooled.add_metric([], float(self.spool_entries))
        return [sent, failures, dropped, queue, spool, spooled]

    def collect(self) -> Iterator[Metric]:
        """So the sink can be registered as a prometheus_client collector."""
        yield from self.metric_families()


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare from Loki, backoff applies
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
