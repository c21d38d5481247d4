"""The alarm engine: raise, change, clear; acknowledge, comment; publish events.

Checks report, per source, which alarm ids they evaluated and which of those
hold (a :class:`Finding`); the engine turns that into transitions:

* an evaluated id with a finding is raised (or changed, if its severity or
  cause moved), an evaluated id without one is cleared;
* ids a check did not evaluate this time are left as they are (data for
  them may come only every few ticks);
* the same condition reported again is not a new alarm (dedup by key).

Hysteresis lives in the checks (:func:`graded`), which see the currently
active alarm: a value hovering around a threshold does not flap.

Subscribers are called synchronously with each :class:`AlarmEvent` and must
not block (the sinks queue and return).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .model import Alarm, AlarmEvent, AlarmKey, Comment, EventKind, Severity

log = logging.getLogger(__name__)

Subscriber = Callable[[AlarmEvent], None]
MAX_COMMENTS = 20


@dataclass(frozen=True, slots=True)
class Finding:
    """A condition that holds now, as a check sees it."""

    alarm: str
    severity: Severity
    cause: str
    repair: str
    info: dict[str, Any] = field(default_factory=dict)


def graded(
    value: float,
    levels: Sequence[tuple[Severity, float]],
    current: Severity | None,
    clear_ratio: float = 0.9,
) -> Severity | None:
    """The severity ``value`` deserves, with hysteresis.

    ``levels`` are (severity, raise threshold) pairs.  Reaching a level
    needs its full threshold; staying at (or dropping to) a level already
    held needs only ``threshold * clear_ratio``.  So a value hovering just
    under a threshold it crossed keeps the alarm instead of clearing it.
    """
    for severity, limit in sorted(levels, reverse=True):  # worst first
        held = current is not None and severity <= current
        if value >= (limit * clear_ratio if held else limit):
            return severity
    return None


class AlarmEngine:
    def __init__(self, cluster: str, *, clock: Callable[[], float] = time.time) -> None:
        self.cluster = cluster
        self._clock = clock
        self._active: dict[AlarmKey, Alarm] = {}
        # Active alarms per source: an evaluation finding nothing for a source
        # with none active (most nodes, every second) changes nothing.
        self._per_source: dict[str, int] = {}
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    # ------------------------------------------------------------ reading

    def active(self) -> list[Alarm]:
        return sorted(self._active.values(), key=lambda a: (-a.severity, a.raised_at))

    def get(self, key: AlarmKey) -> Alarm | None:
        return self._active.get(key)

    def current_severity(self, alarm: str, source: str) -> Severity | None:
        found = self._active.get(AlarmKey(alarm, source))
        return None if found is None else found.severity

    # ------------------------------------------------------------ checks report

    def update(
        self,
        source: str,
        *,
        node: str,
        family: str,
        evaluated: Iterable[str],
        findings: Iterable[Finding],
    ) -> None:
        """Apply one evaluation of ``evaluated`` alarm ids for ``source``."""
        found = {f.alarm: f for f in findings}
        if not found and source not in self._per_source:
            return
        now = self._clock()
        for alarm_id in set(evaluated) | set(found):
            key = AlarmKey(alarm_id, source)
            finding = found.get(alarm_id)
            current = self._active.get(key)
            if finding is None:
                if current is not None:
                    self._clear(key, now, who=None)
                continue
            if current is None:
                alarm = Alarm(
                    key=key,
                    severity=finding.severity,
                    node=node,
                    family=family,
                    cluster=self.cluster,
                    cause=finding.cause,
                    repair=finding.repair,
                    info=finding.info,
                    raised_at=now,
                    updated_at=now,
                )
                self._active[key] = alarm
                self._per_source[source] = self._per_source.get(source, 0) + 1
                self._publish(AlarmEvent(EventKind.RAISED, alarm))
            elif (current.severity, current.cause, current.family) != (
                finding.severity,
                finding.cause,
                family,
            ):
                alarm = replace(
                    current,
                    severity=finding.severity,
                    cause=finding.cause,
                    repair=finding.repair,
                    info=finding.info,
                    family=family,
                    updated_at=now,
                )
                self._active[key] = alarm
                self._publish(AlarmEvent(EventKind.CHANGED, alarm))
            else:
                # Same condition: refresh the details silently (no event storm).
                self._active[key] = replace(current, info=finding.info)

    def clear_source(self, source: str) -> None:
        """Clear everything raised for ``source`` (a node no longer managed)."""
        now = self._clock()
        for key in [k for k in self._active if k.source == source]:
            self._clear(key, now, who=None)

    # ------------------------------------------------------------ operators

    def acknowledge(self, key: AlarmKey, who: str) -> Alarm:
        alarm = self._require(key)
        alarm = replace(alarm, acknowledged_by=who, updated_at=self._clock())
        self._active[key] = alarm
        self._publish(AlarmEvent(EventKind.ACKNOWLEDGED, alarm, who))
        return alarm

    def comment(self, key: AlarmKey, who: str, text: str) -> Alarm:
        alarm = self._require(key)
        now = self._clock()
        comments = (*alarm.comments, Comment(now, who, text[:2000]))[-MAX_COMMENTS:]
        alarm = replace(alarm, comments=comments, updated_at=now)
        self._active[key] = alarm
        self._publish(AlarmEvent(EventKind.COMMENTED, alarm, who))
        return alarm

    def clear(self, key: AlarmKey, who: str) -> Alarm:
        """Manual clear; raised again by the next check that still finds it."""
        self._require(key)
        return self._clear(key, self._clock(), who=who)

    # ------------------------------------------------------------ internals

    def _require(self, key: AlarmKey) -> Alarm:
        alarm = self._active.get(key)
        if alarm is None:
            raise KeyError(f"no active alarm {key}")
        return alarm

    def _clear(self, key: AlarmKey, now: float, who: str | None) -> Alarm:
        alarm = replace(self._active.pop(key), cleared_at=now, updated_at=now)
        left = self._per_source.pop(key.source) - 1
        if left:
            self._per_source[key.source] = left
        self._publish(AlarmEvent(EventKind.CLEARED, alarm, who))
        return alarm

    def _publish(self, event: AlarmEvent) -> None:
        log.info(
            "alarm %s %s (%s) on %s: %s",
            event.alarm.id,
            event.kind.value,
            event.alarm.severity,
            event.alarm.key.source,
            event.alarm.cause,
            extra={"alarm": event.alarm.id, "node": event.alarm.node, "event": event.kind.value},
        )
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                log.exception("alarm subscriber failed")
