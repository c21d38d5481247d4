"""Decoding what the agents send about logs and notifications.

A node attached with event options (see :class:`sidecar.agents.EventOptions`)
sends batches to the mailbox registered as ``beamside_events`` on our node
(:data:`EVENTS_MAILBOX`)::

    {beamside_events, Node, Seq, Events, Dropped, Session}

``Session`` (agent version 7; absent from older agents) names the node's
forwarder run, ``Seq`` counts batches per sidecar from 1: ``(Node, Session,
Seq)`` names a batch.  The node keeps each batch until we acknowledge it
(:func:`ack_message`, sent to the node's ``beamside_events``) and sends the
unacknowledged ones again after a reconnect, so a batch may arrive twice:
the receiver drops a ``Seq`` it already has (:mod:`sidecar.notify`).  A gap
is batches the node dropped (its retention bound: ``retain_overflow`` in a
later ``Dropped``); ``Events`` is a list of
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

Module and configuration changes come in the ``code_events`` and
``config_events`` sections of a collect reply instead (decoded by
:mod:`sidecar.model`); :class:`sidecar.notify.Notifier` turns them into the
same :class:`NodeEvent` values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal, TypeAlias

from sidecar.agents.config import LEVELS
from sidecar.agents.terms import text
from sidecar.erldist.term import Atom, BitBinary, ImproperList, Pid, Port, Reference

__all__ = [
    "EVENTS_MAILBOX",
    "LEVELS",
    "EventBatch",
    "EventDecodeError",
    "EventKind",
    "JsonValue",
    "NodeEvent",
    "ack_message",
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
#: characters kept of a message (the node bounds it in bytes, logs.max_message_bytes)
_MAX_MESSAGE = 65536


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
    session: int | None = None  # None: an agent before version 7 (no acknowledgements)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


def decode_batch(message: object) -> EventBatch:
    """Decode one message received in the ``beamside_events`` mailbox."""
    if not (type(message) is tuple and len(message) in (5, 6) and message[0] == _TAG):
        raise EventDecodeError(f"not a {_TAG} batch: {_short(message)}")
    node, seq, events, dropped = message[1:5]
    session = message[5] if len(message) == 6 else None
    if session is not None and (type(session) is not int or session < 0):
        raise EventDecodeError(f"batch session is not a non-negative integer: {_short(session)}")
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
    return EventBatch(str(node), seq, tuple(decoded), MappingProxyType(drops), session)


def ack_message(sidecar: str, session: int, seq: int) -> tuple[Atom, Atom, int, int]:
    """``{beamside_events_ack, Sidecar, Session, Seq}``: every batch of that
    session up to ``seq`` is durable here (send it to the node's
    ``beamside_events``)."""
    return (Atom("beamside_events_ack"), Atom(sidecar), session, seq)


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
        message=text(term.get("msg"), _MAX_MESSAGE),
        fields=MappingProxyType(fields),
    )


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


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."
