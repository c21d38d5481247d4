"""What beamside sends to Loki: one :class:`LogEntry` per log event or notification.

Labels are the stream's identity in Loki and every distinct label set is a
stream Loki indexes, so only low-cardinality labels are allowed (SPEC §5):
``job``, ``cluster``, ``family``, ``node``, ``kind`` (``log``,
``notification``, ``alarm``, ``audit``, ``trace``) and ``level``.  Everything else -
the message, the metadata, who did what - goes in the line, as compact JSON.

Label values are sanitized rather than rejected (a log event must never be
lost because a node name has an odd character): control characters become
``_``, values are cut to :data:`MAX_LABEL_VALUE` characters, and an empty
value leaves the label out (Loki, like Prometheus, treats an empty label as
an absent one).  ``kind`` is checked strictly: it is set by our code, never by
a node.  Unknown levels map to ``unknown`` so a misbehaving node cannot create
streams at will.

Lines are bounded by :data:`MAX_LINE_BYTES` (UTF-8).  A longer JSON text is
shrunk by cutting long strings and long lists, and if that is not enough it
is replaced by a prefix of the original text held in a string; either way the
result is valid JSON with a ``"_truncated"`` field giving the original size.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

Kind = Literal["log", "notification", "alarm", "audit", "trace"]
KINDS: Final[frozenset[str]] = frozenset(get_args(Kind))

# syslog severities (what Erlang's logger uses), plus "unknown"
LEVELS: Final[frozenset[str]] = frozenset(
    {"emergency", "alert", "critical", "error", "warning", "notice", "info", "debug", "unknown"}
)
_LEVEL_ALIASES: Final[Mapping[str, str]] = {
    "warn": "warning",
    "err": "error",
    "crit": "critical",
    "emerg": "emergency",
    "information": "info",
}

LABEL_NAMES: Final = ("job", "cluster", "family", "node", "kind", "level")
DEFAULT_JOB: Final = "beamside"
MAX_LABEL_VALUE: Final = 256  # far below Loki's 2048: these are names, not data
MAX_LINE_BYTES: Final = 64 * 1024
TRUNCATED_FIELD: Final = "_truncated"
_MAX_DEPTH: Final = 32
_MIN_STRING_CUT: Final = 16
_ELLIPSIS: Final = "…"

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One line for Loki.  ``labels`` are (name, value) pairs sorted by name;
    ``time_ns`` is Unix time in nanoseconds; ``line`` is the JSON text."""

    labels: Labels
    time_ns: int
    line: str

    def __post_init__(self) -> None:
        if not isinstance(self.time_ns, int) or isinstance(self.time_ns, bool):
            raise TypeError(f"time_ns: expected int nanoseconds, got {self.time_ns!r}")
        if self.time_ns < 0:
            raise ValueError(f"time_ns: negative timestamp {self.time_ns}")
        if not self.labels:
            raise ValueError("labels: a Loki stream needs at least one label")
        names = [n for n, _ in self.labels]
        if names != sorted(set(names)):
            raise ValueError(f"labels: names must be unique and sorted, got {names}")

    @property
    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)


def sanitize_label_value(value: object) -> str:
    """A label value safe for Loki and for a stream selector: printable, bounded."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_LABEL_VALUE:
        text = text[:MAX_LABEL_VALUE]
    if not text.isprintable():
        text = "".join(c if c.isprintable() else "_" for c in text)
    return text


def normalize_level(level: object) -> str:
    text = str(level).strip().lower()
    text = _LEVEL_ALIASES.get(text, text)
    return text if text in LEVELS else "unknown"


def make_labels(
    *, kind: str, level: object, node: object, family: object, cluster: object, job: str
) -> Labels:
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {sorted(KINDS)}, got {kind!r}")
    values = {
        "job": sanitize_label_value(job),
        "cluster": sanitize_label_value(cluster),
        "family": sanitize_label_value(family),
        "node": sanitize_label_value(node),
        "kind": kind,
        "level": normalize_level(level),
    }
    return tuple(sorted((n, v) for n, v in values.items() if v))


def make_entry(
    kind: str,
    level: object,
    node: object,
    family: object,
    cluster: object,
    time_ns: int,
    details: Mapping[str, Any],
    *,
    job: str = DEFAULT_JOB,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> LogEntry:
    """Build an entry: labels from the arguments, the line from ``details``."""
    labels = make_labels(kind=kind, level=level, node=node, family=family, cluster=cluster, job=job)
    return LogEntry(labels, time_ns, details_line(details, max_line_bytes))


def details_line(details: Mapping[str, Any], max_bytes: int = MAX_LINE_BYTES) -> str:
    """Compact JSON of ``details``, at most ``max_bytes`` UTF-8 bytes."""
    if max_bytes < 256:
        raise ValueError(f"max_bytes: at least 256 needed for the truncation marker: {max_bytes}")
    obj = _jsonable(details, 0, None)
    if not isinstance(obj, dict):
        obj = {"value": obj}
    text = _dumps(obj)
    size = _utf8_len(text)
    if size <= max_bytes:
        return text
    marker = {"original_bytes": size}
    # Cut strings and lists to ever smaller lengths; keeps the structure.
    limit = max_bytes // 2
    while limit >= _MIN_STRING_CUT:
        shrunk = _jsonable(details, 0, limit)
        if not isinstance(shrunk, dict):
            shrunk = {"value": shrunk}
        shrunk[TRUNCATED_FIELD] = marker
        candidate = _dumps(shrunk)
        if _utf8_len(candidate) <= max_bytes:
            return candidate
        limit //= 2
    # Too many keys: keep a prefix of the text, as a string.
    cut = max_bytes // 2
    while True:
        candidate = _dumps({TRUNCATED_FIELD: marker, "prefix": text[:cut] + _ELLIPSIS})
        if _utf8_len(candidate) <= max_bytes:
            return candidate
        cut //= 2


def _utf8_len(text: str) -> int:
    # Four bytes per character at most: skip encoding when that already fits.
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _jsonable(value: object, depth: int, limit: int | None) -> Any:
    """``value`` as plain JSON types; strings and lists cut to ``limit``."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        text = value
    elif isinstance(value, bytes | bytearray):
        text = bytes(value).decode("utf-8", "backslashreplace")
    elif depth >= _MAX_DEPTH:
        text = repr(value)
    elif isinstance(value, Mapping):
        items = list(value.items())
        if limit is not None and len(items) > limit:
            items = items[:limit]
        out = {str(k): _jsonable(v, depth + 1, limit) for k, v in items}
        return out
    elif isinstance(value, list | tuple | set | frozenset):
        seq = list(value)
        if limit is not None and len(seq) > limit:
            seq = [*seq[:limit], _ELLIPSIS]
        return [_jsonable(v, depth + 1, limit) for v in seq]
    else:
        text = str(value)
    # Lone surrogates would make the UTF-8 encoding fail later.
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if limit is not None and len(text) > limit:
        text = text[:limit] + _ELLIPSIS
    return text
