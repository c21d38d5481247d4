"""A strict in-repo double of Loki's push and query APIs, for tests and benchmarks.

Loki cannot be installed here (SPEC §9), so :class:`LokiDouble` plays it: a
``ThreadingHTTPServer`` on a free 127.0.0.1 port serving

``POST /loki/api/v1/push``
    JSON (``{"streams":[{"stream":{...},"values":[["<ns>","line"],...]}]}``,
    optionally gzip-compressed) and protobuf compressed with raw snappy (the
    wire format of Promtail, Alloy and our sink).  The protobuf is decoded by
    hand here, field by field, from the field numbers of Loki's
    ``pkg/push/push.proto``: it does not reuse ``sidecar/loki/gen/push_pb2.py``,
    so a wrong field number in our ``.proto`` fails the tests.
``GET /loki/api/v1/query_range``
    The Loki JSON result shape (``resultType: streams``) for a LogQL stream
    selector (``=``, ``!=``, ``=~``, ``!~``) optionally followed by line
    filters (``|=``, ``!=``, ``|~``, ``!~``) and ``| json``.
``GET /ready``
    ``ready``.

Strict like Loki's distributor and ingester, with their default limits
(:class:`LokiLimits`): label names must match ``[a-zA-Z_][a-zA-Z0-9_]*`` and
not start with ``__``; a stream needs a label; no duplicate label names; at
most 15 label names, values at most 2048 characters; entries older than
``reject_old_samples_max_age`` (7 d) or newer than now +
``creation_grace_period`` (10 min) are rejected, as are lines over
``max_line_size`` (256 KiB).  Out-of-order entries are accepted (Loki 2.4+)
unless ``unordered_writes=False``.  As in Loki, the valid entries of a
request are stored even when others are rejected, and the answer is then a
400 listing the reasons.  Bodies Loki could not read (bad JSON, corrupt
snappy, malformed protobuf) are 400 with nothing stored.

An entry identical to one its stream already has (same timestamp and line)
is ignored, as Loki's ingester does; the double counts such duplicates
(:attr:`LokiDouble.duplicate_entries`) so a test can assert that nothing was
delivered twice.

Failure modes (:meth:`LokiDouble.set_mode`): ``ok``, ``429`` and ``503`` (every
push answered so, body read first), ``down`` (listener closed and every open
connection cut; the next mode restarts it on the same port).

``python -m tests.support.loki_double`` runs one as a process (prints
``LOKI_DOUBLE_READY <port>``, takes ``mode <m>`` and ``reset`` lines on stdin); the
``/double/stats`` and ``/double/dump`` endpoints read its counters and entries.
:class:`LokiDoubleProcess` drives that from a test or a benchmark, so the
double does not share the benchmark's GIL.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import re
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import cramjam
import httpx

LOOPBACK = "127.0.0.1"
PUSH_PATH = "/loki/api/v1/push"
QUERY_RANGE_PATH = "/loki/api/v1/query_range"
MODES = ("ok", "429", "503", "down")
NS = 1_000_000_000
DEFAULT_TENANT = "fake"  # what single-tenant Loki calls its tenant

Labels = tuple[tuple[str, str], ...]

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@dataclass(frozen=True)
class LokiLimits:
    """Loki's limits_config / ingester settings the double enforces."""

    reject_old_samples: bool = True
    reject_old_samples_max_age: float = 7 * 86400.0  # seconds
    creation_grace_period: float = 600.0  # seconds
    max_line_size: int = 256 * 1024  # bytes, 0 = no limit
    max_label_names_per_series: int = 15
    max_label_name_length: int = 1024
    max_label_value_length: int = 2048
    unordered_writes: bool = True
    max_body_bytes: int = 64 << 20  # decompressed request body
    require_tenant: bool = False  # auth_enabled: X-Scope-OrgID required


@dataclass(frozen=True)
class StoredEntry:
    labels: Labels
    ts: int
    line: str
    arrival_ns: int  # time.time_ns() when the double stored it

    @property
    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)


@dataclass
class RequestRecord:
    """One push request as the double saw it."""

    status: int
    content_type: str
    content_encoding: str
    body_bytes: int  # as received
    decoded_bytes: int  # after decompression
    entries: int  # entries in the request (0 when unreadable)
    stored: int
    duplicates: int
    tenant: str
    error: str = ""
    arrival_ns: int = 0  # time.time_ns() when the request was read
    # the first and last entry of the request that the stream already had
    # (timestamp, line): what a test reports when something was re-sent
    duplicate_span: tuple[tuple[int, str], tuple[int, str]] | None = None


@dataclass
class _Stream:
    labels: Labels
    entries: list[StoredEntry] = field(default_factory=list)
    seen: set[tuple[int, str]] = field(default_factory=set)
    last_ts: int = -1


class BadRequest(Exception):
    """A push body Loki could not read at all: 400, nothing stored."""


# --------------------------------------------------------------- protobuf


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise BadRequest("proto: unexpected EOF")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 64:
            raise BadRequest("proto: integer overflow")


def _fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of a protobuf message; value is an int
    for varint/fixed fields, bytes for length-delimited ones."""
    pos = 0
    end = len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise BadRequest("proto: illegal tag 0")
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise BadRequest("proto: unexpected EOF")
            value = buf[pos : pos + length]
            pos += length
        elif wire == 1:
            if pos + 8 > end:
                raise BadRequest("proto: unexpected EOF")
            value = int.from_bytes(buf[pos : pos + 8], "little")
            pos += 8
        elif wire == 5:
            if pos + 4 > end:
                raise BadRequest("proto: unexpected EOF")
            value = int.from_bytes(buf[pos : pos + 4], "little")
            pos += 4
        else:
            raise BadRequest(f"proto: illegal wireType {wire}")
        yield number, wire, value


def _expect(name: str, wire: int, want: int) -> None:
    if wire != want:
        raise BadRequest(f"proto: wrong wireType = {wire} for field {name}")


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest(f"proto: {what}: invalid UTF-8") from e


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def decode_push_proto(buf: bytes) -> list[tuple[str, list[tuple[int, str]]]]:
    """logproto.PushRequest -> [(labels text, [(ts ns, line), ...]), ...].

    PushRequest: streams = 1 (StreamAdapter), format = 2.
    StreamAdapter: labels = 1, entries = 2 (EntryAdapter), hash = 3.
    EntryAdapter: timestamp = 1 (google.protobuf.Timestamp: seconds = 1,
    nanos = 2), line = 2, structuredMetadata = 3 (name = 1, value = 2)."""
    streams: list[tuple[str, list[tuple[int, str]]]] = []
    for number, wire, value in _fields(buf):
        if number == 1:
            _expect("PushRequest.streams", wire, 2)
            streams.append(_decode_stream(value))
        elif number == 2:
            _expect("PushRequest.format", wire, 2)
    return streams


def _decode_stream(buf: bytes) -> tuple[str, list[tuple[int, str]]]:
    labels = ""
    entries: list[tuple[int, str]] = []
    for number, wire, value in _fields(buf):
        if number == 1:
            _expect("StreamAdapter.labels", wire, 2)
            labels = _text(value, "labels")
        elif number == 2:
            _expect("StreamAdapter.entries", wire, 2)
            entries.append(_decode_entry(value))
        elif number == 3:
            _expect("StreamAdapter.hash", wire, 0)
    return labels, entries


def _decode_entry(buf: bytes) -> tuple[int, str]:
    seconds = nanos = 0
    line = ""
    for number, wire, value in _fields(buf):
        if number == 1:
            _expect("EntryAdapter.timestamp", wire, 2)
            for n2, w2, v2 in _fields(value):
                if n2 == 1:
                    _expect("Timestamp.seconds", w2, 0)
                    seconds = _signed64(v2)
                elif n2 == 2:
                    _expect("Timestamp.nanos", w2, 0)
                    nanos = _signed64(v2)
            if not 0 <= nanos < NS:
                raise BadRequest(f"proto: timestamp nanos out of range: {nanos}")
        elif number == 2:
            _expect("EntryAdapter.line", wire, 2)
            line = _text(value, "line")
        elif number == 3:
            _expect("EntryAdapter.structuredMetadata", wire, 2)
    return seconds * NS + nanos, line


def decode_push_json(body: bytes) -> list[tuple[str | dict[str, Any], list[tuple[int, str]]]]:
    """Loki's JSON push body -> [(labels mapping, [(ts ns, line), ...]), ...]."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"loghttp.PushRequest: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("streams"), list):
        raise BadRequest("loghttp.PushRequest.Streams: expects an array of streams")
    out: list[tuple[str | dict[str, Any], list[tuple[int, str]]]] = []
    for s in doc["streams"]:
        if not isinstance(s, dict):
            raise BadRequest("loghttp.PushRequest.Streams: expects an object per stream")
        labels = s.get("stream", {})
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise BadRequest("loghttp.Stream.stream: expects an object of string values")
        values = s.get("values", [])
        if not isinstance(values, list):
            raise BadRequest("loghttp.Stream.values: expects an array")
        entries: list[tuple[int, str]] = []
        for v in values:
            if not isinstance(v, list) or len(v) not in (2, 3):
                raise BadRequest(
                    'loghttp.Stream.values: expects ["<unix epoch in ns>", "<log line>"]'
                    f" (optionally with structured metadata), got {json.dumps(v)[:100]}"
                )
            ts, line = v[0], v[1]
            if not isinstance(ts, str):
                raise BadRequest(f'ReadString: expects " or n, but found {json.dumps(ts)[:30]}')
            if not isinstance(line, str):
                raise BadRequest(f'ReadString: expects " or n, but found {json.dumps(line)[:30]}')
            if not ts.isdigit():
                raise BadRequest(f'strconv.ParseInt: parsing "{ts[:40]}": invalid syntax')
            entries.append((int(ts), line))
        out.append((labels, entries))
    return out


# ----------------------------------------------------------------- labels


_STRING = r'"(?:[^"\\]|\\.)*"|`[^`]*`'
_MATCHER = re.compile(
    r"\s*([a-zA-Z_][a-zA-Z0-9_]*|[^\s=!~,{}\"]+)\s*(=~|!~|!=|=)\s*(" + _STRING + r")\s*"
)


def _unquote(text: str) -> str:
    if text.startswith("`"):
        return text[1:-1]
    try:
        value = json.loads(text)
    except ValueError as e:
        raise ValueError(f"bad string literal {text}") from e
    if not isinstance(value, str):
        raise ValueError(f"bad string literal {text}")
    return value


def parse_selector(text: str) -> tuple[list[tuple[str, str, str]], str]:
    """``{a="b", c=~"d.*"} rest`` -> ([(name, op, value), ...], rest)."""
    s = text.strip()
    if not s.startswith("{"):
        raise ValueError("syntax error: unexpected input, expecting {")
    pos = 1
    matchers: list[tuple[str, str, str]] = []
    while True:
        rest = s[pos:].lstrip()
        if rest.startswith("}"):
            pos = len(s) - len(rest) + 1
            break
        m = _MATCHER.match(s, pos)
        if m is None:
            raise ValueError(f"syntax error: unexpected input at {s[pos : pos + 20]!r}")
        matchers.append((m.group(1), m.group(2), _unquote(m.group(3))))
        pos = m.end()
        if s.startswith(",", pos):
            pos += 1
        elif not s.startswith("}", pos):
            raise ValueError(f"syntax error: unexpected input at {s[pos : pos + 20]!r}")
    return matchers, s[pos:]


def parse_push_labels(text: str) -> list[tuple[str, str]]:
    """The labels of a pushed stream (selector text with ``=`` only)."""
    matchers, rest = parse_selector(text)
    if rest.strip():
        raise ValueError(f"unexpected input after the selector: {rest.strip()[:40]!r}")
    pairs = []
    for name, op, value in matchers:
        if op != "=":
            raise ValueError(f"unexpected {op} in stream labels, expecting =")
        pairs.append((name, value))
    return pairs


def selector_of(labels: Labels) -> str:
    return "{" + ", ".join(f"{n}={json.dumps(v, ensure_ascii=False)}" for n, v in labels) + "}"


class Query:
    """A LogQL log query: stream selector, line filters, optional ``| json``."""

    def __init__(self, text: str) -> None:
        matchers, rest = parse_selector(text)
        if not matchers:
            raise ValueError("syntax error: unexpected }, expecting IDENTIFIER")
        self.matchers: list[tuple[str, str, Callable[[str], bool]]] = []
        empty_ok = True
        for name, op, value in matchers:
            if op in ("=~", "!~"):
                try:
                    rx = re.compile(value)
                except re.error as e:
                    raise ValueError(f"error parsing regexp: {e}") from e
                if op == "=~":
                    self.matchers.append((name, op, lambda v, rx=rx: rx.fullmatch(v) is not None))
                else:
                    self.matchers.append((name, op, lambda v, rx=rx: rx.fullmatch(v) is None))
            elif op == "=":
                self.matchers.append((name, op, lambda v, want=value: v == want))
            else:
                self.matchers.append((name, op, lambda v, want=value: v != want))
            if not self.matchers[-1][2](""):
                empty_ok = False
        if empty_ok:
            raise ValueError(
                "queries require at least one regexp or equality matcher that does not have"
                ' an empty-compatible value. For instance, app=~".*" does not meet this'
                ' requirement, but app=~".+" will'
            )
        self.line_filters: list[Callable[[str], bool]] = []
        self.json = False
        stage = re.compile(r"\s*(\|=|!=|\|~|!~|\|\s*json\b)\s*(" + _STRING + r")?")
        pos = 0
        rest = rest.rstrip()
        while pos < len(rest):
            m = stage.match(rest, pos)
            if m is None:
                raise ValueError(f"parse error: unexpected input {rest[pos : pos + 30]!r}")
            op, arg = m.group(1), m.group(2)
            pos = m.end()
            if op.startswith("|") and op[1:].strip() == "json":
                if arg is not None:
                    raise ValueError("parse error: json takes no argument here")
                self.json = True
                continue
            if arg is None:
                raise ValueError(f"parse error: {op} needs a string")
            needle = _unquote(arg)
            if op == "|=":
                self.line_filters.append(lambda line, n=needle: n in line)
            elif op == "!=":
                self.line_filters.append(lambda line, n=needle: n not in line)
            else:
                try:
                    rx = re.compile(needle)
                except re.error as e:
                    raise ValueError(f"error parsing regexp: {e}") from e
                if op == "|~":
                    self.line_filters.append(lambda line, rx=rx: rx.search(line) is not None)
                else:
                    self.line_filters.append(lambda line, rx=rx: rx.search(line) is None)

    def matches_stream(self, labels: Labels) -> bool:
        d = dict(labels)
        return all(test(d.get(name, "")) for name, _, test in self.matchers)

    def matches_line(self, line: str) -> bool:
        return all(f(line) for f in self.line_filters)

    def output_labels(self, labels: Labels, line: str) -> Labels:
        if not self.json:
            return labels
        out = dict(labels)
        try:
            doc = json.loads(line)
        except ValueError:
            out["__error__"] = "JSONParserErr"
            return tuple(sorted(out.items()))
        if isinstance(doc, dict):
            for k, v in _flatten(doc, ""):
                name = re.sub(r"[^a-zA-Z0-9_]", "_", k)
                if name in out:
                    name += "_extracted"
                out[name] = v
        return tuple(sorted(out.items()))


def _flatten(doc: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, str]]:
    for k, v in doc.items():
        key = prefix + k
        if isinstance(v, dict):
            yield from _flatten(v, key + "_")
        elif isinstance(v, str):
            yield key, v
        elif isinstance(v, bool):
            yield key, "true" if v else "false"
        elif isinstance(v, int | float):
            yield key, json.dumps(v)
        # arrays and null are skipped, as Loki's json parser does


def parse_time(text: str | None, default: int) -> int:
    """Loki's start/end: ns integer, float seconds or RFC3339."""
    if text is None or text == "":
        return default
    if text.isdigit():
        value = int(text)
        return value if value > 10**15 else value * NS  # seconds given as an integer
    try:
        return int(float(text) * NS)
    except ValueError:
        pass
    from datetime import datetime

    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * NS)
    except ValueError as e:
        raise ValueError(f'cannot parse "{text}" to a valid timestamp') from e


# ----------------------------------------------------------------- server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__(addr, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.conn_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.conn_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def cut_connections(self) -> None:
        with self.conn_lock:
            conns = list(self.connections)
            self.connections.clear()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)


class LokiDouble:
    """The double.  ``start()``/``stop()`` (or use as a context manager);
    ``url`` is the base URL to give a client."""

    def __init__(self, limits: LokiLimits | None = None, *, port: int = 0) -> None:
        self.limits = limits or LokiLimits()
        self._port = port
        self._lock = threading.Lock()
        self._streams: dict[tuple[str, Labels], _Stream] = {}
        self.requests: list[RequestRecord] = []
        self.received_entries = 0  # entries in readable push requests
        self.stored_entries = 0
        self.duplicate_entries = 0
        self.rejected_entries = 0
        self._mode = "ok"
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.clock: Callable[[], int] = time.time_ns  # what "now" is for age limits

    # ------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._port}"

    @property
    def push_url(self) -> str:
        return self.url + PUSH_PATH

    @property
    def mode(self) -> str:
        return self._mode

    def start(self) -> Self:
        self._listen()
        return self

    def _listen(self) -> None:
        server = _Server((LOOPBACK, self._port), _make_handler(self))
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def _unlisten(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.cut_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def stop(self) -> None:
        self._unlisten()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_mode(self, mode: str) -> None:
        """``ok``, ``429``, ``503`` or ``down`` (see the module doc)."""
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        with self._lock:
            previous, self._mode = self._mode, mode
        if mode == "down" and previous != "down":
            self._unlisten()
        elif mode != "down" and previous == "down":
            self._listen()

    # ------------------------------------------------------------- reading

    def entries(
        self, selector: str | Mapping[str, str] | None = None, *, tenant: str | None = None
    ) -> list[StoredEntry]:
        """Stored entries of the matching streams, each stream in arrival
        order, streams in creation order."""
        query = self._query(selector)
        with self._lock:
            out: list[StoredEntry] = []
            for (t, labels), stream in self._streams.items():
                if tenant is not None and t != tenant:
                    continue
                if query is None or query.matches_stream(labels):
                    out.extend(stream.entries)
            return out

    def lines(self, selector: str | Mapping[str, str] | None = None) -> list[str]:
        return [e.line for e in self.entries(selector)]

    def streams(self) -> list[Labels]:
        with self._lock:
            return [labels for _, labels in self._streams]

    @staticmethod
    def _query(selector: str | Mapping[str, str] | None) -> Query | None:
        if selector is None:
            return None
        if not isinstance(selector, str):
            selector = selector_of(tuple(sorted(selector.items())))
        return Query(selector)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {
                "requests": len(self.requests),
                "received": self.received_entries,
                "stored": self.stored_entries,
                "duplicates": self.duplicate_entries,
                "rejected": self.rejected_entries,
                "streams": len(self._streams),
            }

    def wait_for(self, n: int, timeout: float = 10.0, selector: str | None = None) -> int:
        """Poll until ``n`` entries (matching ``selector``) are stored; returns
        how many are, which may be fewer after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            have = len(self.entries(selector)) if selector else self.stored_entries
            if have >= n or time.monotonic() >= deadline:
                return have
            time.sleep(0.02)

    def reset(self) -> None:
        with self._lock:
            self._streams.clear()
            self.requests.clear()
            self.received_entries = self.stored_entries = 0
            self.duplicate_entries = self.rejected_entries = 0

    # --------------------------------------------------------------- push

    def handle_push(self, headers: Mapping[str, str], body: bytes) -> tuple[int, str]:
        """Validate and store one push; returns (HTTP status, body text)."""
        ctype = (headers.get("content-type") or "").split(";")[0].strip().lower()
        encoding = (headers.get("content-encoding") or "").strip().lower()
        tenant = headers.get("x-scope-orgid") or ""
        record = RequestRecord(
            0, ctype, encoding, len(body), 0, 0, 0, 0, tenant, arrival_ns=time.time_ns()
        )
        try:
            status, text = self._push(ctype, encoding, tenant, body, record)
        except BadRequest as e:
            status, text = 400, str(e)
        record.status = status
        record.error = text if status >= 300 else ""
        with self._lock:
            self.requests.append(record)
        return status, text

    def _push(
        self, ctype: str, encoding: str, tenant: str, body: bytes, record: RequestRecord
    ) -> tuple[int, str]:
        if self.limits.require_tenant and not tenant:
            return 401, "no org id"
        tenant = tenant or DEFAULT_TENANT
        if self._mode == "429":
            return 429, (
                f"Ingestion rate limit exceeded for user {tenant} (limit: 4194304 bytes/sec)"
                " while attempting to ingest lines, reduce log volume or contact your Loki"
                " administrator to see if the limit can be increased"
            )
        if self._mode == "503":
            return 503, "at least 2 live replicas required, could only find 0"
        if ctype == "application/x-protobuf":
            if encoding not in ("", "snappy"):
                return 415, f"unsupported Content-Encoding {encoding!r} for protobuf"
            try:
                raw = bytes(cramjam.snappy.decompress_raw(body))
            except Exception as e:  # cramjam raises its own DecompressionError
                raise BadRequest(f"snappy: corrupt input ({e})") from e
            record.decoded_bytes = len(raw)
            self._check_size(len(raw))
            streams: list[tuple[Any, list[tuple[int, str]]]] = list(decode_push_proto(raw))
        elif ctype in ("application/json", ""):
            if encoding == "gzip":
                try:
                    raw = gzip.decompress(body)
                except (OSError, EOFError, zlib.error) as e:
                    raise BadRequest(f"gzip: invalid header or data ({e})") from e
            elif encoding in ("", "identity"):
                raw = body
            else:
                return 415, f"unsupported Content-Encoding {encoding!r}"
            record.decoded_bytes = len(raw)
            self._check_size(len(raw))
            streams = list(decode_push_json(raw))
        else:
            return 415, f"unsupported Content-Type {ctype!r}"
        return self._ingest(tenant, streams, record)

    def _check_size(self, n: int) -> None:
        if n > self.limits.max_body_bytes:
            raise BadRequest(
                f"request body too large: {n} bytes, limit: {self.limits.max_body_bytes} bytes"
            )

    def _ingest(
        self,
        tenant: str,
        streams: list[tuple[Any, list[tuple[int, str]]]],
        record: RequestRecord,
    ) -> tuple[int, str]:
        lim = self.limits
        now = self.clock()
        oldest = now - int(lim.reject_old_samples_max_age * NS)
        newest = now + int(lim.creation_grace_period * NS)
        errors: list[str] = []
        total = sum(len(e) for _, e in streams)
        record.entries = total
        ignored = 0
        arrival = time.time_ns()
        with self._lock:
            self.received_entries += total
            for raw_labels, entries in streams:
                labels, error = self._validate_labels(raw_labels)
                if labels is None:
                    errors.append(error)
                    ignored += len(entries)
                    continue
                shown = selector_of(labels)
                stream = self._streams.get((tenant, labels))
                for ts, line in entries:
                    if lim.reject_old_samples and ts < oldest:
                        errors.append(
                            f"entry for stream '{shown}' has timestamp too old: {_iso(ts)},"
                            f" oldest acceptable timestamp is: {_iso(oldest)}"
                        )
                    elif ts > newest:
                        errors.append(
                            f"entry for stream '{shown}' has timestamp too new: {_iso(ts)}"
                        )
                    elif lim.max_line_size and len(line.encode("utf-8")) > lim.max_line_size:
                        errors.append(
                            f"Max entry size '{lim.max_line_size}' bytes exceeded for stream"
                            f" '{shown}' while adding an entry with length"
                            f" '{len(line.encode('utf-8'))}' bytes"
                        )
                    else:
                        if stream is None:
                            stream = self._streams[(tenant, labels)] = _Stream(labels)
                        key = (ts, line)
                        if key in stream.seen:
                            self.duplicate_entries += 1
                            record.duplicates += 1
                            span = record.duplicate_span
                            record.duplicate_span = (span[0] if span else key, key)
                            continue
                        if not lim.unordered_writes and ts < stream.last_ts:
                            errors.append(
                                f"entry with timestamp {_iso(ts)} ignored, reason:"
                                f" 'entry out of order' for stream: {shown}"
                            )
                        else:
                            stream.seen.add(key)
                            stream.entries.append(StoredEntry(labels, ts, line, arrival))
                            stream.last_ts = max(stream.last_ts, ts)
                            self.stored_entries += 1
                            record.stored += 1
                            continue
                    ignored += 1
            self.rejected_entries += ignored
        if errors:
            shown_errors = errors[:10]
            if len(errors) > 10:
                shown_errors.append(f"... and {len(errors) - 10} more errors")
            shown_errors.append(f"user '{tenant}', total ignored: {ignored} out of {total}")
            return 400, "\n".join(shown_errors)
        return 204, ""

    def _validate_labels(self, raw: Any) -> tuple[Labels | None, str]:
        lim = self.limits
        if isinstance(raw, str):
            try:
                pairs = parse_push_labels(raw)
            except ValueError as e:
                return None, f"Error parsing labels '{raw}' with error: {e}"
            shown = raw
        else:
            pairs = [(str(k), str(v)) for k, v in raw.items()]
            shown = "{" + ", ".join(f'{k}="{v}"' for k, v in pairs) + "}"
        pairs = [(n, v) for n, v in pairs if v != ""]  # empty value = absent label
        if not pairs:
            return None, "error at least one label pair is required per stream"
        names = [n for n, _ in pairs]
        for name in names:
            if not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
                return None, (
                    f"Error parsing labels '{shown}' with error: invalid label name {name!r}"
                )
        if len(pairs) > lim.max_label_names_per_series:
            return None, (
                f"entry for stream '{shown}' has {len(pairs)} label names;"
                f" limit {lim.max_label_names_per_series}"
            )
        seen: set[str] = set()
        for name, value in pairs:
            if name in seen:
                return None, f"stream '{shown}' has duplicate label name: '{name}'"
            seen.add(name)
            if len(name) > lim.max_label_name_length:
                return None, f"stream '{shown}' has label name too long: '{name}'"
            if len(value) > lim.max_label_value_length:
                return None, f"stream '{shown}' has label value too long: '{value}'"
        return tuple(sorted(pairs)), ""

    # -------------------------------------------------------------- query

    def query_range(self, params: Mapping[str, str]) -> dict[str, Any]:
        """The ``query_range`` answer for a log query (raises ValueError → 400)."""
        text = params.get("query")
        if not text:
            raise ValueError("query: parameter missing")
        query = Query(text)
        now = time.time_ns()
        end = parse_time(params.get("end"), now)
        start = parse_time(params.get("start"), end - 3600 * NS)
        if end < start:
            raise ValueError("end timestamp must not be before start time")
        limit = int(params.get("limit") or 100)
        if limit <= 0:
            raise ValueError("limit must be a positive value")
        direction = (params.get("direction") or "backward").lower()
        if direction not in ("forward", "backward"):
            raise ValueError(f"invalid direction {direction!r}")
        tenant = params.get("tenant") or DEFAULT_TENANT
        hits: list[tuple[int, Labels, str]] = []
        with self._lock:
            for (t, labels), stream in self._streams.items():
                if t != tenant or not query.matches_stream(labels):
                    continue
                for e in stream.entries:
                    if start <= e.ts < end and query.matches_line(e.line):
                        hits.append((e.ts, labels, e.line))
        hits.sort(key=lambda h: h[0], reverse=direction == "backward")
        hits = hits[:limit]
        result: dict[Labels, list[list[str]]] = {}
        for ts, labels, line in hits:
            result.setdefault(query.output_labels(labels, line), []).append([str(ts), line])
        return {
            "status": "success",
            "data": {
                "resultType": "streams",
                "result": [{"stream": dict(k), "values": v} for k, v in result.items()],
                "stats": {"summary": {"totalEntriesReturned": len(hits)}},
            },
        }

    # ------------------------------------------------------- process side

    def stats_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = dict(self.counts())
        doc["mode"] = self._mode
        return doc

    def dump_doc(self) -> list[list[Any]]:
        return [[e.label_dict, e.ts, e.line, e.arrival_ns] for e in self.entries()]


def _iso(ns: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ns / NS, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _make_handler(double: LokiDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body:
                self.wfile.write(body)

        def _json(self, status: int, doc: Any) -> None:
            self._reply(status, json.dumps(doc).encode(), "application/json")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            path = urlsplit(self.path).path
            if path != PUSH_PATH:
                self._reply(404, b"404 page not found\n")
                return
            if double.mode == "down":  # a request that slipped in while going down
                self.close_connection = True
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, text = double.handle_push(headers, body)
            self._reply(status, (text + "\n").encode() if text else b"")

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            if parts.path == "/ready":
                self._reply(200, b"ready\n")
            elif parts.path == QUERY_RANGE_PATH:
                tenant = self.headers.get("X-Scope-OrgID")
                if tenant:
                    params["tenant"] = tenant
                try:
                    doc = double.query_range(params)
                except ValueError as e:
                    self._reply(400, (str(e) + "\n").encode())
                    return
                self._json(200, doc)
            elif parts.path == "/double/stats":
                self._json(200, double.stats_doc())
            elif parts.path == "/double/dump":
                self._json(200, double.dump_doc())
            else:
                self._reply(404, b"404 page not found\n")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


# ----------------------------------------------------------- as a process


class LokiDoubleProcess:
    """A :class:`LokiDouble` in its own Python process (``python -m
    tests.support.loki_double``), for benchmarks: the double then has its own GIL."""

    def __init__(self, *, max_line_size: int = 256 * 1024) -> None:
        self._args = ["--max-line-size", str(max_line_size)]
        self._proc: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self, timeout: float = 20.0) -> Self:
        root = Path(__file__).resolve().parents[2]
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.loki_double", *self._args],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = self._proc.stdout.readline()
        if not line.startswith("LOKI_DOUBLE_READY ") or time.monotonic() > deadline:
            self.stop()
            raise RuntimeError(f"loki double process did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def _command(self, text: str) -> None:
        assert self._proc is not None and self._proc.stdin and self._proc.stdout
        self._proc.stdin.write(text + "\n")
        self._proc.stdin.flush()
        answer = self._proc.stdout.readline().strip()
        if answer != "OK":
            raise RuntimeError(f"loki double: {text}: {answer}")

    def set_mode(self, mode: str) -> None:
        self._command(f"mode {mode}")

    def reset(self) -> None:
        """Forget every entry and counter."""
        self._command("reset")

    def stats(self) -> dict[str, Any]:
        doc: dict[str, Any] = httpx.get(self.url + "/double/stats", timeout=30).json()
        return doc

    def dump(self) -> list[list[Any]]:
        doc: list[list[Any]] = httpx.get(self.url + "/double/dump", timeout=120).json()
        return doc

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin:
                proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-line-size", type=int, default=256 * 1024)
    args = parser.parse_args(argv)
    double = LokiDouble(LokiLimits(max_line_size=args.max_line_size), port=args.port).start()
    print(f"LOKI_DOUBLE_READY {double.port}", flush=True)
    try:
        for line in sys.stdin:  # runs until stdin closes
            cmd = line.split()
            if len(cmd) == 2 and cmd[0] == "mode" and cmd[1] in MODES:
                double.set_mode(cmd[1])
                print("OK", flush=True)
            elif cmd == ["reset"]:
                double.reset()
                print("OK", flush=True)
            else:
                print(f"ERROR unknown command {line.strip()!r}", flush=True)
    finally:
        double.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
