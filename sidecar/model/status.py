"""What beamside knows of a managed node's attachment (the node manager's
record, read by the exporter, the alarm checks and the control plane)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["NodeState", "NodeStatus"]


class NodeState(enum.Enum):
    CONNECTING = "connecting"
    UP = "up"
    DOWN = "down"
    COOKIE_REFUSED = "cookie_refused"
    ERROR = "error"
    #: the node is up, but runs a newer agent another beamside is using
    AGENT_CONFLICT = "agent_conflict"


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """One managed node as the manager last left it (replaced whole)."""

    node: str
    family: str
    state: NodeState = NodeState.CONNECTING
    last_error: str = ""
    agent_version: int = 0
    otp_release: str = ""
    uptime_seconds: float = 0.0
    discovered_by: str | None = None
    collect_errors: int = 0
    connect_failures: Mapping[str, int] = field(default_factory=dict)
    attaches: int = 0
    last_collect_duration: float = 0.0
    last_success: float = 0.0
