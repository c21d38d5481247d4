"""Disk spool for Loki batches that could not be delivered yet.

The spool is a FIFO of records kept in a directory:

``<seq>.seg`` segment files
    Records appended in order, each ``magic | payload length | entry count |
    CRC-32 | payload`` (little-endian, 16-byte header; the CRC covers length,
    count and payload).  A payload is one ready-to-send push request body
    (snappy-compressed protobuf), so a record is delivered exactly as it was
    written.  Every append is fsynced before :meth:`Spool.append` returns: a
    record that was appended survives SIGKILL and power loss.  A new segment
    is started when the current one would exceed ``segment_bytes``.

Marks
    A record may carry marks: ``{key: seq}`` (for the node event stream:
    ``"<node> <session>"`` to the highest batch sequence number whose
    entries are all in this record or older ones).  They are inside the
    record (magic ``BSL2``, payload ``meta length | meta JSON | body``,
    one CRC over all): a record and its marks are durable together.
    :attr:`Spool.marks` is the highest seq per key of every record ever
    appended or found, and of the ``marks`` file: written (temporary file,
    fsync, rename) before a segment is deleted (delivered or evicted) and
    by :meth:`Spool.save_marks` (marks of entries Loki took straight from
    memory).  A restarted sidecar thus knows which node batches it already
    has, and drops them when a node sends them again.

``ack``
    Where delivery has got to: (segment, offset) of the first record not yet
    acknowledged.  Two 32-byte slots, written alternately, each with a
    generation number and a CRC; the valid slot with the higher generation
    wins.  A torn write therefore leaves the previous position readable, and
    one fsync per acknowledgement is enough.  Segments wholly before the
    acknowledged position are deleted (a crash before the delete is repaired
    on the next open).

``lock``
    ``flock``-ed while a :class:`Spool` is open: two processes never share a
    spool (the kernel releases it when the holder dies, even by SIGKILL).

Crash safety
    A crash while appending leaves a torn record at the end of the last
    segment: :meth:`Spool.open` checks every record of that segment and cuts
    the file at the first bad one (reported in :class:`OpenReport`).  A crash
    between a successful push and the acknowledgement's fsync leaves that one
    record unacknowledged, so it is pushed again after a restart: at most
    one batch, the one in flight, is sent twice, and byte for byte the same
    (Loki ignores an entry identical - same stream, timestamp and line - to
    one it already has; see :mod:`sidecar.loki.sink`).

Bounds
    The segment files never add up to more than ``max_bytes``: an append
    that would go over first evicts the oldest segments whole, and returns
    how many entries were lost so the caller counts them.

Not thread-safe: the sink calls it from one I/O thread only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final

log = logging.getLogger(__name__)

MAGIC: Final = b"BSL1"
MAGIC_MARKS: Final = b"BSL2"  # a record whose payload starts with marks
_META_LEN = struct.Struct("<I")
_HEADER = struct.Struct("<4sIII")  # magic, payload length, entry count, crc32
HEADER_BYTES: Final = _HEADER.size
_ACK_MAGIC: Final = b"BSA1"
_ACK_SLOT = struct.Struct("<4sQQQI4x")  # magic, generation, seq, offset, crc32
_SUFFIX: Final = ".seg"
MAX_RECORD_PAYLOAD: Final = 1 << 30


class SpoolError(Exception):
    """The spool directory cannot be used (in use, unwritable, record too big)."""


@dataclass(frozen=True, slots=True)
class SpoolPosition:
    """Where a record is: segment ``seq``, bytes ``offset`` to ``end``."""

    seq: int
    offset: int
    end: int


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    pos: SpoolPosition
    payload: bytes
    count: int
    marks: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AppendResult:
    pos: SpoolPosition
    evicted_entries: int
    evicted_records: int


@dataclass(slots=True)
class OpenReport:
    """What :meth:`Spool.open` found: pending work and what it had to discard."""

    records: int = 0
    entries: int = 0
    bytes: int = 0
    torn_records: int = 0  # bad records cut off the end of the last segment
    torn_entries: int = 0  # their entry counts, when their header was readable
    torn_bytes: int = 0


@dataclass(slots=True)
class _Segment:
    seq: int
    path: Path
    size: int = 0
    # entry counts of the records not yet acknowledged, by offset
    records: dict[int, int] = field(default_factory=dict)


def _crc(length: int, count: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(struct.pack("<II", length, count)))


def encode_record(payload: bytes, count: int, marks: Mapping[str, int] | None = None) -> bytes:
    magic = MAGIC
    if marks:
        meta = json.dumps(dict(marks), separators=(",", ":")).encode()
        payload = _META_LEN.pack(len(meta)) + meta + payload
        magic = MAGIC_MARKS
    length = len(payload)
    return _HEADER.pack(magic, length, count, _crc(length, count, payload)) + payload


def split_payload(magic: bytes, payload: bytes) -> tuple[bytes, dict[str, int]]:
    """(push body, marks) of a record's payload."""
    if magic != MAGIC_MARKS:
        return payload, {}
    (n,) = _META_LEN.unpack_from(payload)
    return payload[4 + n :], _parse_marks(payload[4 : 4 + n])


def _parse_marks(data: bytes) -> dict[str, int]:
    try:
        raw = json.loads(data)
    except ValueError:
        return {}
    if not isinstance(raw, dict):
        return {}
    return {str(k): v for k, v in raw.items() if type(v) is int}


def merge_marks(into: dict[str, int], marks: Mapping[str, int]) -> None:
    for key, seq in marks.items():
        if seq > into.get(key, -1):
            into[key] = seq


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """A bounded, crash-safe FIFO of records on disk.  See the module doc."""

    def __init__(
        self, directory: Path, max_bytes: int, *, segment_bytes: int | None = None
    ) -> None:
        if max_bytes < 4 * HEADER_BYTES:
            raise ValueError(f"max_bytes: too small ({max_bytes})")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or max(64 * 1024, min(16 << 20, max_bytes // 16))
        self._segments: list[_Segment] = []  # oldest first
        self._head_offset = 0  # first unacknowledged byte in _segments[0]
        self._ack_generation = 0
        self._ack_fd: int | None = None
        self._lock_fd: int | None = None
        self._writer: BinaryIO | None = None  # appends to _segments[-1]
        self._writer_seq = -1
        self._reader: BinaryIO | None = None
        self._reader_seq = -1
        self._next_seq = 1
        self.total_bytes = 0
        self.pending_entries = 0
        self.pending_records = 0
        self.marks: dict[str, int] = {}
        self._marks_saved: dict[str, int] = {}

    # ----------------------------------------------------------------- open

    def open(self) -> OpenReport:
        """Lock the directory, repair a torn tail, find where delivery got to."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            lock_fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise SpoolError(f"spool {self.directory}: {e.strerror or e}") from e
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(lock_fd)
            raise SpoolError(f"spool {self.directory} is in use by another process") from e
        self._lock_fd = lock_fd
        try:
            return self._load()
        except BaseException:
            self.close()
            raise

    def _load(self) -> OpenReport:
        report = OpenReport()
        self.marks = (
            _parse_marks(self._marks_path().read_bytes()) if self._marks_path().exists() else {}
        )
        self._marks_saved = dict(self.marks)
        ack_seq, ack_offset = self._read_ack()
        seqs = sorted(
            int(p.name[: -len(_SUFFIX)])
            for p in self.directory.iterdir()
            if p.name.endswith(_SUFFIX) and p.name[: -len(_SUFFIX)].isdigit()
        )
        self._next_seq = max([ack_seq, *seqs]) + 1
        gone: list[Path] = []
        for seq in seqs:
            path = self._path(seq)
            seg = _Segment(seq, path, path.stat().st_size)
            if seq < ack_seq:  # acknowledged, delete was lost in a crash
                self._read_marks(seg)
                gone.append(path)
                continue
            start = ack_offset if seq == ack_seq else 0
            # Only the last segment can be torn by a crash: check its CRCs now;
            # the others are checked as they are read.
            self._scan(seg, start, verify=seq == seqs[-1], report=report)
            self._read_marks(seg)
            if seg.records:
                self._segments.append(seg)
            else:
                gone.append(path)
        if gone:
            self.save_marks()  # before their marks' records go
        for path in gone:
            path.unlink(missing_ok=True)
        for seg in self._segments:
            self.total_bytes += seg.size
            self.pending_records += len(seg.records)
            self.pending_entries += sum(seg.records.values())
        report.records = self.pending_records
        report.entries = self.pending_entries
        report.bytes = self.total_bytes
        if self._segments:
            self._head_offset = min(self._segments[0].records)
        if report.torn_records:
            log.warning(
                "loki spool %s: discarded a torn tail of %d bytes (%d records, %d entries)"
                " left by a crash while writing",
                self.directory,
                report.torn_bytes,
                report.torn_records,
                report.torn_entries,
            )
        return report

    def _scan(self, seg: _Segment, start: int, *, verify: bool, report: OpenReport) -> None:
        """Index the records of ``seg`` from ``start`` and cut the file at the
        first bad one (with ``verify``, CRCs are checked too)."""
        with open(seg.path, "r+b") as f:
            offset = start
            f.seek(offset)
            while offset < seg.size:
                header = f.read(HEADER_BYTES)
                bad = len(header) < HEADER_BYTES
                count = 0
                if not bad:
                    magic, length, count, crc = _HEADER.unpack(header)
                    end = offset + HEADER_BYTES + length
                    bad = (
                        magic not in (MAGIC, MAGIC_MARKS)
                        or length > MAX_RECORD_PAYLOAD
                        or end > seg.size
                    )
                    if not bad and verify:
                        payload = f.read(length)
                        bad = len(payload) < length or _crc(length, count, payload) != crc
                    elif not bad:
                        f.seek(end)
                if bad:
                    report.torn_records += 1
                    report.torn_entries += count if header[:4] in (MAGIC, MAGIC_MARKS) else 0
                    report.torn_bytes += seg.size - offset
                    f.truncate(offset)
                    f.flush()
                    os.fsync(f.fileno())
                    seg.size = offset
                    return
                seg.records[offset] = count
                offset = end

    def _read_marks(self, seg: _Segment) -> None:
        """Merge the marks of every record of ``seg`` (delivered ones too: they
        stay until the segment goes, and the marks file has them then)."""
        with open(seg.path, "rb") as f:
            offset = 0
            while offset + HEADER_BYTES <= seg.size:
                f.seek(offset)
                magic, length, _, _ = _HEADER.unpack(f.read(HEADER_BYTES))
                if magic not in (MAGIC, MAGIC_MARKS):
                    return
                if magic == MAGIC_MARKS and length >= 4:
                    (n,) = _META_LEN.unpack(f.read(4))
                    merge_marks(self.marks, _parse_marks(f.read(min(n, length - 4))))
                offset += HEADER_BYTES + length

    def _marks_path(self) -> Path:
        return self.directory / "marks"

    def save_marks(self, marks: Mapping[str, int] | None = None) -> None:
        """Merge ``marks`` and make all marks durable in the ``marks`` file
        (nothing is written when it holds them already)."""
        if marks:
            merge_marks(self.marks, marks)
        if self.marks == self._marks_saved:
            return
        tmp = self.directory / "marks.tmp"
        with open(tmp, "wb") as f:
            f.write(json.dumps(self.marks, separators=(",", ":")).encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._marks_path())
        _fsync_dir(self.directory)
        self._marks_saved = dict(self.marks)

    # ------------------------------------------------------------ write side

    def append(
        self,
        payload: bytes,
        count: int,
        *,
        keep: SpoolPosition | None = None,
        marks: Mapping[str, int] | None = None,
    ) -> AppendResult:
        """Append one record (with its ``marks``) and fsync it; evict the
        oldest segments first if the bound would be exceeded.  The record at
        ``keep`` (one the caller holds in memory, in flight) is not counted in
        the evicted totals."""
        record = encode_record(payload, count, marks)
        if len(record) > self.max_bytes or len(payload) > MAX_RECORD_PAYLOAD:
            raise SpoolError(f"record of {len(record)} bytes exceeds the spool bound")
        evicted_entries = evicted_records = 0
        while self._segments and self.total_bytes + len(record) > self.max_bytes:
            seg = self._segments[0]
            for offset, n in seg.records.items():
                if keep is None or (keep.seq, keep.offset) != (seg.seq, offset):
                    evicted_entries += n
                    evicted_records += 1
            self._drop_head_segment()
        if evicted_records:
            log.warning(
                "loki spool %s full (%d bytes): dropped the oldest %d records (%d entries)",
                self.directory,
                self.max_bytes,
                evicted_records,
                evicted_entries,
            )
        tail = self._segments[-1] if self._segments else None
        if tail is None or (tail.size and tail.size + len(record) > self.segment_bytes):
            tail = self._new_segment()
        writer = self._writer_for(tail)
        offset = tail.size
        try:
            writer.write(record)
            writer.flush()
            os.fsync(writer.fileno())
        except OSError as e:
            # Leave no half record behind: later appends go after it.
            with contextlib.suppress(OSError):
                writer.truncate(offset)
            raise SpoolError(f"spool {self.directory}: write failed: {e.strerror or e}") from e
        tail.size += len(record)
        tail.records[offset] = count
        if marks:
            merge_marks(self.marks, marks)
        self.total_bytes += len(record)
        self.pending_records += 1
        self.pending_entries += count
        if len(self._segments) == 1 and len(tail.records) == 1:
            self._head_offset = offset
        pos = SpoolPosition(tail.seq, offset, tail.size)
        return AppendResult(pos, evicted_entries, evicted_records)

    def _new_segment(self) -> _Segment:
        seq = self._next_seq
        self._next_seq += 1
        path = self._path(seq)
        path.touch(exist_ok=False)
        _fsync_dir(self.directory)  # the new file's name must survive a crash too
        seg = _Segment(seq, path)
        self._segments.append(seg)
        return seg

    def _writer_for(self, seg: _Segment) -> BinaryIO:
        if self._writer is None or self._writer_seq != seg.seq:
            self._close_writer()
            self._writer = open(seg.path, "r+b")  # noqa: SIM115 - kept open across calls
            self._writer.seek(seg.size)
            self._writer_seq = seg.seq
        return self._writer

    # ------------------------------------------------------------- read side

    def head(self) -> SpoolRecord | None:
        """The oldest record not yet acknowledged, or None."""
        if not self._segments:
            return None
        seg = self._segments[0]
        offset = self._head_offset
        count = seg.records[offset]
        if self._reader is None or self._reader_seq != seg.seq:
            self._close_reader()
            self._reader = open(seg.path, "rb")  # noqa: SIM115 - kept open across calls
            self._reader_seq = seg.seq
        self._reader.seek(offset)
        header = self._reader.read(HEADER_BYTES)
        magic, length, count, crc = _HEADER.unpack(header)
        payload = self._reader.read(length)
        if (
            magic not in (MAGIC, MAGIC_MARKS)
            or len(payload) != length
            or _crc(length, count, payload) != crc
        ):
            raise SpoolError(f"spool segment {seg.path} is corrupt at offset {offset}")
        end = offset + HEADER_BYTES + length
        body, marks = split_payload(magic, payload)
        return SpoolRecord(SpoolPosition(seg.seq, offset, end), body, count, marks)

    def contains(self, pos: SpoolPosition) -> bool:
        """Whether the record at ``pos`` is still pending (not acknowledged or evicted)."""
        return any(s.seq == pos.seq and pos.offset in s.records for s in self._segments)

    def ack(self, pos: SpoolPosition) -> bool:
        """Mark the record at ``pos`` delivered (durably).  False if it is not
        pending any more (evicted, or acknowledged already)."""
        if not self._segments:
            return False
        seg = self._segments[0]
        if pos.seq < seg.seq or (pos.seq == seg.seq and pos.offset < self._head_offset):
            return False
        if pos.seq != seg.seq or pos.offset != self._head_offset:
            raise ValueError(f"ack {pos}: not the oldest pending record")
        count = seg.records.pop(pos.offset)
        self.pending_records -= 1
        self.pending_entries -= count
        self._write_ack(seg.seq, pos.end)
        if seg.records:
            self._head_offset = min(seg.records)
            return True
        is_tail = len(self._segments) == 1
        if is_tail and seg.size > pos.end:
            # Cannot happen: the tail's records are all indexed.
            raise SpoolError(f"spool segment {seg.path}: unindexed bytes after {pos.end}")
        self._drop_head_segment()
        return True

    def discard_head_segment(self) -> int:
        """Give up the oldest segment (it is unreadable); returns its pending
        entry count, for the caller to count as lost."""
        if not self._segments:
            return 0
        seg = self._segments[0]
        lost = sum(seg.records.values())
        log.error("loki spool %s: discarding corrupt segment %s", self.directory, seg.path.name)
        self._drop_head_segment()
        return lost

    def _drop_head_segment(self) -> None:
        # The marks its records carry must outlive it.
        self.save_marks()
        seg = self._segments.pop(0)
        if self._reader_seq == seg.seq:
            self._close_reader()
        if self._writer_seq == seg.seq:
            self._close_writer()
        self.total_bytes -= seg.size
        self.pending_records -= len(seg.records)
        self.pending_entries -= sum(seg.records.values())
        seg.path.unlink(missing_ok=True)
        self._head_offset = min(self._segments[0].records) if self._segments else 0

    # ------------------------------------------------------------------ ack

    def _read_ack(self) -> tuple[int, int]:
        path = self.directory / "ack"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = b""
        best = (0, 0, 0)  # generation, seq, offset
        for i in range(2):
            slot = data[i * _ACK_SLOT.size : (i + 1) * _ACK_SLOT.size]
            if len(slot) < _ACK_SLOT.size:
                continue
            magic, gen, seq, offset, crc = _ACK_SLOT.unpack(slot)
            if magic != _ACK_MAGIC or crc != zlib.crc32(slot[:28]):
                continue
            if gen > best[0]:
                best = (gen, seq, offset)
        self._ack_generation = best[0]
        return best[1], best[2]

    def _write_ack(self, seq: int, offset: int) -> None:
        if self._ack_fd is None:
            self._ack_fd = os.open(self.directory / "ack", os.O_RDWR | os.O_CREAT, 0o644)
        self._ack_generation += 1
        body = struct.pack("<4sQQQ", _ACK_MAGIC, self._ack_generation, seq, offset)
        slot = _ACK_SLOT.pack(_ACK_MAGIC, self._ack_generation, seq, offset, zlib.crc32(body))
        os.pwrite(self._ack_fd, slot, (self._ack_generation % 2) * _ACK_SLOT.size)
        os.fsync(self._ack_fd)

    # ----------------------------------------------------------------- misc

    def _path(self, seq: int) -> Path:
        return self.directory / f"{seq:020d}{_SUFFIX}"

    def _close_writer(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(OSError):
                self._writer.close()
        self._writer = None
        self._writer_seq = -1

    def _close_reader(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(OSError):
                self._reader.close()
        self._reader = None
        self._reader_seq = -1

    def close(self) -> None:
        self._close_writer()
        self._close_reader()
        for name in ("_ack_fd", "_lock_fd"):
            fd = getattr(self, name)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)  # closing the lock fd releases the flock
                setattr(self, name, None)

    def __enter__(self) -> Spool:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_records(directory: Path) -> list[SpoolRecord]:
    """Every pending record of a spool, oldest first (for tests and
    inspection).  Opens the spool, so it must not be open elsewhere, and a torn
    tail is cut as :meth:`Spool.open` does."""
    spool = Spool(directory, max_bytes=1 << 62)
    spool.open()
    try:
        out: list[SpoolRecord] = []
        for seg in spool._segments:
            with open(seg.path, "rb") as f:
                for offset in sorted(seg.records):
                    f.seek(offset)
                    magic, length, count, _ = _HEADER.unpack(f.read(HEADER_BYTES))
                    body, marks = split_payload(magic, f.read(length))
                    pos = SpoolPosition(seg.seq, offset, offset + HEADER_BYTES + length)
                    out.append(SpoolRecord(pos, body, count, marks))
        return out
    finally:
        spool.close()
