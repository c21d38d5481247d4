"""Alarms: what one is, and the events the engine publishes.

An alarm is identified by its id (``process_message_queue``) and its source
(a node name, or ``family:<name>`` for a family-wide condition).  It carries
the probable cause, the proposed repair action and additional info (small,
JSON-able).  The engine raises and clears alarms; every raise, severity
change and clear is published as an :class:`AlarmEvent` on the bus (the Loki
sink ships them as notifications, the Alertmanager sink delivers them).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.IntEnum):
    """Ordered so ``max()`` picks the worst; ``str()`` is the Alertmanager label."""

    WARNING = 1
    MINOR = 2
    MAJOR = 3
    CRITICAL = 4

    def __str__(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(
                f"unknown severity {text!r} (critical, major, minor or warning)"
            ) from None


@dataclass(frozen=True, slots=True)
class AlarmKey:
    alarm: str
    source: str  # node name, or "family:<name>"

    def __str__(self) -> str:
        return f"{self.alarm}@{self.source}"


@dataclass(frozen=True, slots=True)
class Comment:
    at: float
    who: str
    text: str


@dataclass(frozen=True, slots=True)
class Alarm:
    """One active (or just cleared) alarm, immutable: changes make a new one."""

    key: AlarmKey
    severity: Severity
    node: str  # "" for a family-wide alarm
    family: str
    cluster: str
    cause: str
    repair: str
    info: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    raised_at: float = 0.0
    updated_at: float = 0.0
    cleared_at: float | None = None
    acknowledged_by: str | None = None
    comments: tuple[Comment, ...] = ()

    @property
    def id(self) -> str:
        return self.key.alarm

    @property
    def active(self) -> bool:
        return self.cleared_at is None


class EventKind(enum.Enum):
    RAISED = "raised"
    CHANGED = "changed"  # severity or info moved while active
    CLEARED = "cleared"
    ACKNOWLEDGED = "acknowledged"
    COMMENTED = "commented"


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    kind: EventKind
    alarm: Alarm
    who: str | None = None  # operator for acknowledge / manual clear / comment
