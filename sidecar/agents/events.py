"""Decoding what the agents send about logs and notifications.

A node attached with event options (see :class:`sidecar.agents.EventOptions`)
sends batches to the mailbox registered as ``beamside_events`` on our node
(:data:`EVENTS_MAILBOX`)::

    {beamside_events, Node, Seq, Events, Dropped}

``Seq`` counts batches per sidecar from 1 (a gap is a batch the node could not
send; its events are counted in a later ``Dropped``); ``Events`` is a list of
maps (``kind``, ``level``, ``time`` in ns, ``node``, ``msg`` and the
kind-specific keys documented in ``erl_agents/beamside_events.erl``,
``beamside_logger.erl`` and ``beamside_lager.erl``); ``Dropped`` maps a
reason to the events lost since the previous batch that reached us.

:func:`decode_batch` turns one such message into an :class:`EventBatch` of
frozen :class:`NodeEvent` values whose ``fields`` hold only JSON-ready values
(``str``, ``int``, ``float``, ``bool``, ``None``, lists and ``str``-keyed
mappings).  A malformed message raises :class:`EventDecodeError`; a malformed
event inside a good batch is skipped and counted in ``dropped["malformed"]``,
so nothing is lost silently.

Module events (loaded, reloaded, purged, deleted) come in the ``code_events``
section of a collect snapshot instead; :func:`code_notifications` turns that
section into the same :class:`NodeEvent` values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal, TypeAlias

from sidecar.agents.config import LEVELS
from sidecar.erldist.term import Atom, BitBinary, ImproperList, Pid, Port, Reference

__all__ = [
    "EVENTS_MAILBOX",
    "LEVELS",
    "EventBatch",
    "EventDecodeError",
    "EventKind",
    "JsonValue",
    "NodeEvent",
    "code_notifications",
    "decode_batch",
    "decode_event",
]

EVENTS_MAILBOX: Final = "beamside_events"
"""The name the node sends event batches to, on our node."""

EventKind = Literal["log", "notification"]
JsonValue: TypeAlias = "str | int | float | bool | list[JsonValue] | Mapping[str, JsonValue] | None"

_TAG = "beamside_events"
_TOP_KEYS = frozenset({"kind", "type", "level", "time", "node", "msg"})
_MAX_DEPTH = 16
_CODE_TYPES = frozenset({"module_loaded", "module_reloaded", "module_purged", "module_deleted"})


class EventDecodeError(ValueError):
    """A message or event from a node does not have the documented shape."""


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """One log line or notification from a node.

    ``type`` is ``"log"`` for log events, else the notification type
    (``shell_command``, ``sysmon``, ``module_loaded`` ...).  ``message`` is the
    formatted text (bounded on the node).  ``fields`` holds every other key
    the node sent (``pid``, ``mfa``, ``report``, ``command`` ...), as JSON-ready
    values.
    """

    kind: EventKind
    type: str
    level: str
    time_ns: int
    node: str
    message: str
    fields: Mapping[str, JsonValue] = field(default_factory=lambda: MappingProxyType({}))

    def to_json(self) -> dict[str, JsonValue]:
        """A flat dict for a JSON log line (the top-level keys win)."""
        out: dict[str, JsonValue] = dict(self.fields)
        out.update(
            kind=self.kind,
            type=self.type,
            level=self.level,
            time_ns=self.time_ns,
            node=self.node,
            message=self.message,
        )
        return out


@dataclass(frozen=True, slots=True)
class EventBatch:
    """One ``{beamside_events, Node, Seq, Events, Dropped}`` message."""

    node: str
    seq: int
    events: tuple[NodeEvent, ...]
    dropped: Mapping[str, int]

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


def decode_batch(message: object) -> EventBatch:
    """Decode one message received in the ``beamside_events`` mailbox."""
    if not (type(message) is tuple and len(message) == 5 and message[0] == _TAG):
        raise EventDecodeError(f"not a {_TAG} batch: {_short(message)}")
    _, node, seq, events, dropped = message
    if not isinstance(node, Atom) or not node:
        raise EventDecodeError(f"batch node is not an atom: {_short(node)}")
    if type(seq) is not int or seq < 0:
        raise EventDecodeError(f"batch seq is not a non-negative integer: {_short(seq)}")
    if not isinstance(events, list):
        raise EventDecodeError(f"batch events is not a list: {_short(events)}")
    if not isinstance(dropped, dict):
        raise EventDecodeError(f"batch dropped is not a map: {_short(dropped)}")
    drops: dict[str, int] = {}
    for reason, count in dropped.items():
        if not isinstance(reason, Atom) or type(count) is not int or count < 0:
            raise EventDecodeError(f"bad dropped entry {_short(reason)} => {_short(count)}")
        drops[str(reason)] = count
    decoded: list[NodeEvent] = []
    malformed = 0
    for term in events:
        try:
            decoded.append(decode_event(term, str(node)))
        except EventDecodeError:
            malformed += 1
    if malformed:
        drops["malformed"] = drops.get("malformed", 0) + malformed
    return EventBatch(str(node), seq, tuple(decoded), MappingProxyType(drops))


def decode_event(term: object, node: str) -> NodeEvent:
    """One event map; ``node`` is used when the event does not name its node."""
    if not isinstance(term, dict):
        raise EventDecodeError(f"event is not a map: {_short(term)}")
    kind = term.get("kind")
    if kind == "log":
        event_kind: EventKind = "log"
        event_type = "log"
    elif kind == "notification":
        event_kind = "notification"
        raw_type = term.get("type")
        if not isinstance(raw_type, Atom) or not raw_type:
            raise EventDecodeError(f"notification without a type: {_short(term)}")
        event_type = str(raw_type)
    else:
        raise EventDecodeError(f"event kind is {_short(kind)}")
    level = term.get("level")
    if not isinstance(level, Atom) or not level:
        raise EventDecodeError(f"event level is {_short(level)}")
    time_ns = term.get("time")
    if type(time_ns) is not int or time_ns < 0:
        raise EventDecodeError(f"event time is {_short(time_ns)}")
    event_node = term.get("node", node)
    fields = {
        _key(k): json_value(v)
        for k, v in term.items()
        if not (isinstance(k, str) and k in _TOP_KEYS)
    }
    return NodeEvent(
        kind=event_kind,
        type=event_type,
        level=str(level),
        time_ns=time_ns,
        node=str(event_node) if isinstance(event_node, Atom) else node,
        message=_text(term.get("msg")),
        fields=MappingProxyType(fields),
    )


def code_notifications(node: str, section: object, time_ns: int) -> list[NodeEvent]:
    """The ``code_events`` section of a snapshot as notifications.

    ``section`` is ``snapshot["code_events"]``; a baseline, ``not_attached``
    or an ``{error, _}`` gives no events (an error is for the caller to count).
    A section reporting ``truncated`` events adds one ``code_events_truncated``
    notification so the loss is visible.
    """
    if not isinstance(section, dict) or section.get("baseline") is not False:
        return []
    events = section.get("events")
    if not isinstance(events, list):
        raise EventDecodeError(f"code_events.events is not a list: {_short(events)}")
    out: list[NodeEvent] = []
    for ev in events:
        if not isinstance(ev, dict):
            raise EventDecodeError(f"code event is not a map: {_short(ev)}")
        kind = ev.get("type")
        module = ev.get("module")
        if kind not in _CODE_TYPES or not isinstance(module, Atom):
            raise EventDecodeError(f"bad code event: {_short(ev)}")
        verb = str(kind).removeprefix("module_")
        fields: dict[str, JsonValue] = {"module": str(module)}
        md5 = ev.get("md5")
        if isinstance(md5, bytes):
            fields["md5"] = md5.decode("ascii", "replace")
        out.append(
            NodeEvent(
                kind="notification",
                type=str(kind),
                level="notice",
                time_ns=time_ns,
                node=node,
                message=f"module {module} {verb}",
                fields=MappingProxyType(fields),
            )
        )
    truncated = section.get("truncated")
    if type(truncated) is int and truncated > 0:
        out.append(
            NodeEvent(
                kind="notification",
                type="code_events_truncated",
                level="warning",
                time_ns=time_ns,
                node=node,
                message=f"{truncated} more module events not listed",
                fields=MappingProxyType({"count": truncated}),
            )
        )
    return out


def config_notifications(node: str, section: object, time_ns: int) -> list[NodeEvent]:
    """The ``config_events`` section of a snapshot as notifications.

    Like :func:`code_notifications`: a baseline, ``not_attached`` or an error
    gives no events; ``truncated`` adds one ``config_events_truncated``.
    ``old``/``new`` are the printed values (``None`` when unset,
    ``"redacted"`` for keys that look like secrets: the node never sends those).
    """
    if not isinstance(section, dict) or section.get("baseline") is not False:
        return []
    events = section.get("events")
    if not isinstance(events, list):
        raise EventDecodeError(f"config_events.events is not a list: {_short(events)}")
    out: list[NodeEvent] = []
    for ev in events:
        if not isinstance(ev, dict) or ev.get("type") != "config_changed":
            raise EventDecodeError(f"bad config event: {_short(ev)}")
        app, key = ev.get("app"), ev.get("key")
        if not isinstance(app, Atom):
            raise EventDecodeError(f"bad config event: {_short(ev)}")
        key_text = str(key) if isinstance(key, Atom) else _text(key) or _short(key)
        old, new = _env_value(ev.get("old")), _env_value(ev.get("new"))
        what = "set" if old is None else "unset" if new is None else "changed"
        out.append(
            NodeEvent(
                kind="notification",
                type="config_changed",
                level="notice",
                time_ns=time_ns,
                node=node,
                message=f"{app}.{key_text} {what}",
                fields=MappingProxyType(
                    {"app": str(app), "key": key_text, "old": old, "new": new, "change": what}
                ),
            )
        )
    truncated = section.get("truncated")
    if type(truncated) is int and truncated > 0:
        out.append(
            NodeEvent(
                kind="notification",
                type="config_events_truncated",
                level="warning",
                time_ns=time_ns,
                node=node,
                message=f"{truncated} more configuration changes not listed",
                fields=MappingProxyType({"count": truncated}),
            )
        )
    return out


def _env_value(value: object) -> str | None:
    if value is None or value == "undefined":
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


# --------------------------------------------------------------------------- values


def json_value(value: object, depth: int = 0) -> JsonValue:
    """An Erlang term as a JSON-ready value: atoms and binaries become text
    (``true``/``false`` stay booleans), pids and ports their printed form,
    tuples lists, maps ``str``-keyed dicts (plain ones: ``json.dumps`` takes
    the result as it is)."""
    if depth > _MAX_DEPTH:
        return "..."
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Atom):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, Pid):
        return f"<{value.node}.{value.id}.{value.serial}>"
    if isinstance(value, Port | Reference | BitBinary):
        return repr(value)
    if isinstance(value, list | tuple):
        return [json_value(v, depth + 1) for v in value]
    if isinstance(value, ImproperList):
        return [json_value(v, depth + 1) for v in (*value.elements, value.tail)]
    if isinstance(value, dict):
        return {_key(k): json_value(v, depth + 1) for k, v in value.items()}
    return repr(value)


def _key(key: object) -> str:
    if isinstance(key, str):
        return str(key)
    if isinstance(key, bytes):
        return key.decode("utf-8", "replace")
    return repr(key)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list) and all(type(c) is int and 0 <= c < 0x110000 for c in value):
        return "".join(chr(c) for c in value)
    return ""


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."
