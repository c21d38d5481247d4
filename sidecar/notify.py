"""Node logs and notifications, turned into Loki entries.

The one place that decides what a Loki line says for each thing beamside
reports: node log events and node notifications (shell commands, code
loaded/reloaded/purged, system monitor events) as the node agents send them,
alarm raises/changes/clears from the alarm engine's bus, configuration
changes, and audit records from the control plane.  Streams carry only the
low-cardinality labels of :mod:`sidecar.loki.model`; everything else goes in
the JSON line.  Every line goes through the one redaction rule
(:func:`sidecar.redact.redact_json`) on its way out, whatever its kind: a
node's log message and fields, a config change's old and new values, an
alarm's cause and details, an audit record.

It also keeps the counts that make losses visible: events received per node
and kind, events a node dropped (and why) before they reached us, and
batches that never arrived (gaps in a node's batch sequence numbers).

Acknowledgements (:meth:`Notifier.enable_acks`, agents since version 7): a
node keeps every event batch until we acknowledge it, and we acknowledge a
batch only once it is durable: every entry it produced is fsynced in the
Loki sink's spool or accepted by Loki (:meth:`LokiSink.mark
<sidecar.loki.sink.LokiSink.mark>`, checked every :data:`ACK_INTERVAL`
seconds, acknowledgements grouped per node).  A batch is named by
(node, session, seq); one we already have (received in this run, or made
durable by a previous run: the spool keeps the marks) is dropped and
acknowledged again - a node re-sends what it had not seen acknowledged when
we come back after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from prometheus_client.core import CounterMetricFamily, Metric

from .agents import EventOptions
from .agents.events import (
    EVENTS_MAILBOX,
    EventBatch,
    EventDecodeError,
    JsonValue,
    NodeEvent,
    ack_message,
    decode_batch,
)
from .alarms.model import AlarmEvent, EventKind, Severity
from .audit import AuditRecord, log_audit
from .config import LogsConfig, NotificationsConfig
from .erldist.term import Atom
from .loki.model import LogEntry, make_entry
from .model import CodeChange, ConfigChange, EventSection, NodeSnapshot
from .redact import redact_json

if TYPE_CHECKING:
    from .erldist.node import LocalNode
    from .loki.sink import LokiSink

log = logging.getLogger(__name__)

Publish = Callable[[LogEntry], None]

ACK_INTERVAL: Final = 0.02  # seconds between two looks at what became durable
_SPOOL_EVERY: Final = 5  # ... and every this many, spool memory if Loki fails
_ACK_TIMEOUT: Final = 2.0
LOSS_LOG_INTERVAL: Final = 60.0  # seconds between two log lines about one node's losses

# Loki's level label for an alarm event: the alarm's weight in syslog terms.
_ALARM_LEVEL = {
    Severity.CRITICAL: "critical",
    Severity.MAJOR: "error",
    Severity.MINOR: "warning",
    Severity.WARNING: "warning",
}


@dataclass(slots=True)
class _NodeCounts:
    received: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    dropped: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    missing_batches: int = 0
    duplicate_batches: int = 0
    malformed: int = 0
    last_seq: int | None = None
    #: (name, version) of the permanent release the last snapshot showed
    permanent: tuple[str, str] | None = None


class Notifier:
    """Routes everything beamside reports to ``publish`` (the Loki sink), if any.

    It is also the node manager's :class:`~sidecar.manager.NodeHooks`: it asks
    each node's agents for logs and notifications (only when there is a sink
    to ship them to: nothing is installed on a node for nothing), and turns
    the code events of each snapshot into notifications.
    """

    def __init__(
        self,
        cluster: str,
        family_of: Callable[[str], str],
        publish: Publish | None,
        *,
        logs: LogsConfig | None = None,
        notifications: NotificationsConfig | None = None,
    ) -> None:
        self.cluster = cluster
        self._family_of = family_of
        self._publish = publish
        self.logs = logs or LogsConfig()
        self.notifications = notifications or NotificationsConfig()
        self._nodes: dict[str, _NodeCounts] = defaultdict(_NodeCounts)
        # acknowledgements (enable_acks): "<node> <session>" keys of this run
        self._local: LocalNode | None = None
        self._sink: LokiSink | None = None
        self._keys: dict[str, tuple[str, int]] = {}
        self._received: dict[str, int] = {}  # highest seq published, per key
        self._acked: dict[str, int] = {}
        self._reack: set[str] = set()
        self._ack_task: asyncio.Task[None] | None = None
        self._loss_logged: dict[str, float] = {}  # node -> monotonic time of the last line

    def enable_acks(self, local: LocalNode, sink: LokiSink) -> None:
        """Acknowledge node event batches once ``sink`` has made them durable
        (the acknowledgements go out from ``local``)."""
        self._local = local
        self._sink = sink

    async def aclose(self) -> None:
        """Stop acknowledging (what is durable by now is acknowledged first)."""
        task, self._ack_task = self._ack_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- node manager hooks ---------------------------------------------------

    def attach_options(self, node: str) -> Mapping[str, Any] | None:
        if self._publish is None:
            return None
        n = self.notifications
        return EventOptions(
            log_level=self.logs.level_for(node),
            max_bytes=self.logs.max_message_bytes,
            max_rate=self.logs.rate_limit,
            grace_s=self.logs.crash_grace,
            shell_events=n.shell,
            sysmon_events=n.system_monitor,
            sysmon_events_rate=n.system_monitor_rate,
        ).to_attach_opts()

    def collect_options(self, node: str) -> Mapping[str, Any]:
        if self._publish is None:
            return {}
        opts: dict[str, Any] = {}
        if self.notifications.code:
            opts["code_events"] = True
        if self.notifications.config:
            opts["config_events"] = True
        return opts

    def on_snapshot(self, snapshot: NodeSnapshot) -> None:
        """Module and configuration changes the node's collect reported."""
        for key in ("code_events", "config_events"):
            error = snapshot.errors.get(key)
            if error is not None and error.malformed:
                self._malformed(snapshot.node, error)
        self._node_events(snapshot.node, snapshot_notifications(snapshot))
        self._release(snapshot)

    def _release(self, snapshot: NodeSnapshot) -> None:
        """``release_changed`` when the node's permanent release is another one
        than at its previous snapshot (a release upgrade made permanent)."""
        versions = snapshot.versions
        if versions is None or versions.releases is None:
            return
        permanent = versions.permanent
        now = (permanent.name, permanent.version) if permanent is not None else None
        counts = self._nodes[snapshot.node]
        before, counts.permanent = counts.permanent, now
        if before is None or now is None or now == before:
            return
        event = NodeEvent(
            kind="notification",
            type="release_changed",
            level="info",
            time_ns=int(snapshot.taken_at * 1e9),
            node=snapshot.node,
            message=f"permanent release {before[0]} {before[1]} -> {now[0]} {now[1]}",
            fields=MappingProxyType(
                {"old_release": before[0], "old_version": before[1],
                 "release": now[0], "version": now[1]}
            ),
        )  # fmt: skip
        self._node_events(snapshot.node, [event])

    def on_node_state(self, node: str, event: str, detail: str) -> None:
        if event == "attached":
            self._nodes[node].last_seq = None  # the node numbers batches anew
        level = "warning" if event == "lost" else "info"
        what = {"attached": "beamside attached", "lost": "beamside lost the node"}.get(event, event)
        details = {"event": event, "detail": detail, "message": f"{what} ({detail})"}
        self._emit("notification", level, node, self._family_of(node), time.time_ns(), details)

    def on_message(self, message: object) -> None:
        """A message in our ``beamside_events`` mailbox (never raises)."""
        try:
            batch = decode_batch(message)
        except EventDecodeError as exc:
            sender = message[1] if isinstance(message, tuple) and len(message) > 1 else None
            self._malformed(str(sender) if isinstance(sender, Atom) else "unknown", exc)
            return
        self.node_events(batch)

    def _malformed(self, node: str, exc: object) -> None:
        counts = self._nodes[node]
        counts.malformed += 1
        if counts.malformed == 1 or counts.malformed % 1000 == 0:
            log.warning(
                "malformed events from %s (%d so far): %s",
                node,
                counts.malformed,
                exc,
                extra={"node": node},
            )

    def _emit(
        self,
        kind: str,
        level: str,
        node: str,
        family: str,
        time_ns: int,
        details: Mapping[str, Any],
    ) -> None:
        if self._publish is None:
            return
        entry = make_entry(
            kind, level, node, family, self.cluster, time_ns, redact_json(dict(details))
        )
        self._publish(entry)

    # -- from the nodes -------------------------------------------------------

    def node_events(self, batch: EventBatch) -> None:
        """A batch a node's agent pushed: log events and notifications."""
        counts = self._nodes[batch.node]
        sink = self._sink
        key = None
        missing = 0
        if batch.session is not None and sink is not None:
            key = f"{batch.node} {batch.session}"
            self._keys[key] = (batch.node, batch.session)
            have = max(self._received.get(key, 0), sink.durable_marks.get(key, 0))
            if batch.seq <= have:  # sent again after a reconnect: we have it
                counts.duplicate_batches += 1
                self._reack.add(key)
                self._ensure_acks()
                return
            if have and batch.seq > have + 1:  # the node's retention bound evicted them
                missing = batch.seq - have - 1
            self._received[key] = batch.seq
        # Sequence numbers count batches per attach from 1: a gap is batches
        # the node sent that never arrived.
        if key is None and counts.last_seq is not None and batch.seq > counts.last_seq + 1:
            missing = batch.seq - counts.last_seq - 1
        counts.last_seq = batch.seq
        counts.missing_batches += missing
        for reason, n in batch.dropped.items():
            counts.dropped[reason] += n
        if missing or any(batch.dropped.values()):
            self._events_lost(batch, missing)
        self._node_events(batch.node, batch.events)
        if key is not None and sink is not None:
            sink.mark(key, batch.seq)
            self._ensure_acks()

    def _events_lost(self, batch: EventBatch, missing: int) -> None:
        """Events the node could not get to us: a notification in the node's
        stream (durable with the batch that reported them) and a log line at
        most every :data:`LOSS_LOG_INTERVAL` seconds per node."""
        dropped = {reason: n for reason, n in sorted(batch.dropped.items()) if n}
        parts = [f"{n} {reason}" for reason, n in dropped.items()]
        if missing:
            first = batch.seq - missing
            parts.append(f"{missing} batches missing (seq {first} to {batch.seq - 1})")
        message = "events lost before reaching beamside: " + ", ".join(parts)
        details: dict[str, Any] = {
            "type": "events_lost",
            "message": message,
            "dropped": dropped,
            "missing_batches": missing,
        }
        family = self._family_of(batch.node)
        self._emit("notification", "warning", batch.node, family, time.time_ns(), details)
        now = time.monotonic()
        if now - self._loss_logged.get(batch.node, -LOSS_LOG_INTERVAL) >= LOSS_LOG_INTERVAL:
            self._loss_logged[batch.node] = now
            counts = self._nodes[batch.node]
            log.warning(
                "%s: %s (so far: %s dropped, %d batches missing)",
                batch.node,
                message,
                dict(counts.dropped),
                counts.missing_batches,
                extra={"node": batch.node},
            )

    def _ensure_acks(self) -> None:
        if self._ack_task is None or self._ack_task.done():
            self._ack_task = asyncio.get_running_loop().create_task(
                self._ack_loop(), name="event acks"
            )

    async def _ack_loop(self) -> None:
        sink = self._sink
        assert sink is not None
        rounds = 0
        while True:
            await asyncio.sleep(ACK_INTERVAL)
            rounds += 1
            try:
                if rounds % _SPOOL_EVERY == 0:
                    sink.make_durable()
                await sink.settle_marks()
            except Exception as exc:  # the spool failing: try again next round
                log.warning("cannot make node events durable: %s", exc)
                continue
            due = []
            for key in self._keys:
                seq = sink.durable_marks.get(key)
                if seq is not None and (seq > self._acked.get(key, 0) or key in self._reack):
                    due.append((key, seq))
            self._reack.clear()
            for key, seq in due:
                if await self._send_ack(key, seq):
                    self._acked[key] = seq

    async def _send_ack(self, key: str, seq: int) -> bool:
        local = self._local
        node, session = self._keys[key]
        if local is None or not local.is_connected(node):
            return False  # the node sends the batches again when we are back
        try:
            await asyncio.wait_for(
                local.send_to_name(
                    node, EVENTS_MAILBOX, ack_message(str(local.name), session, seq)
                ),
                _ACK_TIMEOUT,
            )
        except Exception as exc:
            log.debug("acknowledging events to %s: %r", node, exc)
            return False
        return True

    def _node_events(self, node: str, events: Iterable[NodeEvent]) -> None:
        counts = self._nodes[node]
        family = self._family_of(node)
        for event in events:
            counts.received[event.kind] += 1
            details = event.to_json()
            # node and level are labels already; the rest is the line.
            del details["node"], details["level"], details["time_ns"]
            self._emit(event.kind, event.level, node, family, event.time_ns, details)

    # -- from beamside itself -------------------------------------------------

    def alarm_event(self, event: AlarmEvent) -> None:
        """An alarm engine event (the engine's bus calls this)."""
        alarm = event.alarm
        if event.kind is EventKind.CLEARED:
            level = "notice"
            at = alarm.cleared_at or time.time()
        else:
            level = _ALARM_LEVEL[alarm.severity]
            at = alarm.updated_at or time.time()
        where = alarm.node or alarm.key.source
        details: dict[str, Any] = {
            "message": f"alarm {alarm.id} {event.kind.value} ({alarm.severity}) on {where}",
            "event": event.kind.value,
            "alarm": alarm.id,
            "severity": str(alarm.severity),
            "source": alarm.key.source,
            "cause": alarm.cause,
            "repair": alarm.repair,
            "info": alarm.info,
        }
        if event.who is not None:
            details["who"] = event.who
        if event.kind is EventKind.COMMENTED and alarm.comments:
            details["comment"] = alarm.comments[-1].text
        self._emit("alarm", level, alarm.node, alarm.family, int(at * 1e9), details)

    def audit(self, record: AuditRecord) -> None:
        """A mutating control-plane request: always to the sidecar log, and to Loki
        (:func:`sidecar.audit.log_audit`: the same fields on both)."""
        log_audit(record, self._audit_to_loki)

    def _audit_to_loki(self, record: AuditRecord, fields: Mapping[str, Any]) -> None:
        family = self._family_of(record.node) if record.node else ""
        level = "notice" if record.ok else "warning"
        self._emit("audit", level, record.node, family, record.time_ns, fields)

    def trace_event(self, node: str, time_ns: int, details: Mapping[str, Any]) -> None:
        """A traced call or message streamed by ``Trace/Start``."""
        self._emit("trace", "info", node, self._family_of(node), time_ns, details)

    # -- metrics --------------------------------------------------------------

    def metric_families(self) -> list[Metric]:
        received = CounterMetricFamily(
            "beamside_node_events_received",
            "Log events and notifications received from a node's agents, by kind",
            labels=["cluster", "node", "kind"],
        )
        dropped = CounterMetricFamily(
            "beamside_node_events_dropped",
            "Events a node's agents dropped before sending them (beamside slow or gone, "
            "rate limit), by reason",
            labels=["cluster", "node", "reason"],
        )
        malformed = CounterMetricFamily(
            "beamside_node_events_malformed",
            "Event batches or code events from a node that did not decode (and were dropped)",
            labels=["cluster", "node"],
        )
        missing = CounterMetricFamily(
            "beamside_node_event_batches_missing",
            "Event batches from a node that never arrived (gaps in its sequence numbers)",
            labels=["cluster", "node"],
        )
        duplicate = CounterMetricFamily(
            "beamside_node_event_batches_duplicate",
            "Event batches a node sent again that we already had (dropped, acknowledged again)",
            labels=["cluster", "node"],
        )
        for node, counts in sorted(self._nodes.items()):
            for kind, n in sorted(counts.received.items()):
                received.add_metric([self.cluster, node, kind], float(n))
            for reason, n in sorted(counts.dropped.items()):
                dropped.add_metric([self.cluster, node, reason], float(n))
            missing.add_metric([self.cluster, node], float(counts.missing_batches))
            duplicate.add_metric([self.cluster, node], float(counts.duplicate_batches))
            malformed.add_metric([self.cluster, node], float(counts.malformed))
        return [received, dropped, missing, duplicate, malformed]

    def collect(self) -> Iterator[Metric]:
        yield from self.metric_families()


def snapshot_notifications(snapshot: NodeSnapshot) -> list[NodeEvent]:
    """The module and configuration changes of a snapshot as notifications
    (none for a baseline, a section not asked for, failed or misshapen)."""
    at = int(snapshot.taken_at * 1e9)
    out: list[NodeEvent] = []
    for name, section in (
        ("code_events", snapshot.code_events),
        ("config_events", snapshot.config_events),
    ):
        if section is not None:
            out += _notifications(snapshot.node, name, section, at)
    return out


def _notifications(node: str, name: str, section: EventSection, time_ns: int) -> list[NodeEvent]:
    """One event section as notifications.

    A section reporting ``truncated`` changes adds one ``<name>_truncated``
    notification so the loss is visible.  ``old``/``new`` of a configuration
    change are the printed values (None when unset); for a key that names a
    secret the agent sends its marker, and the line is redacted again on the
    way out (:meth:`Notifier._emit`).
    """
    out = [_change(node, change, time_ns) for change in section.events]
    if section.truncated:
        what = "module events" if name == "code_events" else "configuration changes"
        out.append(
            NodeEvent(
                kind="notification",
                type=f"{name}_truncated",
                level="warning",
                time_ns=time_ns,
                node=node,
                message=f"{section.truncated} more {what} not listed",
                fields=MappingProxyType({"count": section.truncated}),
            )
        )
    return out


def _change(node: str, change: CodeChange | ConfigChange, time_ns: int) -> NodeEvent:
    fields: dict[str, JsonValue]
    if isinstance(change, CodeChange):
        kind = change.type
        message = f"module {change.module} {kind.removeprefix('module_')}"
        fields = {"module": change.module}
        if change.md5 is not None:
            fields["md5"] = change.md5
    else:
        kind = "config_changed"
        what = "set" if change.old is None else "unset" if change.new is None else "changed"
        message = f"{change.app}.{change.key} {what}"
        fields = {
            "app": change.app,
            "key": change.key,
            "old": change.old,
            "new": change.new,
            "change": what,
        }
    return NodeEvent(
        kind="notification",
        type=kind,
        level="notice",
        time_ns=time_ns,
        node=node,
        message=message,
        fields=MappingProxyType(fields),
    )
