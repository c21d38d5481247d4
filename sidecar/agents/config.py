"""What the agents are asked to do on a node, from the beamside config:
``agents:`` (VM-wide measurements), ``logs:`` (what the node's log handler
forwards) and ``notifications:`` (which notifications the node sends).

Plain values only: the attach code (:mod:`sidecar.agents`) and the event
handling (:mod:`sidecar.notify`) read them, the config reader builds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "BUILTIN_PLUGINS",
    "LEVELS",
    "AgentsConfig",
    "LogsConfig",
    "NotificationsConfig",
    "PluginsConfig",
]

LEVELS: Final = (
    "emergency",
    "alert",
    "critical",
    "error",
    "warning",
    "notice",
    "info",
    "debug",
)
"""logger's levels, most severe first (lager uses the same names)."""


@dataclass(frozen=True, slots=True)
class AgentsConfig:
    """``agents:``: VM-wide measurements the agents may turn on (never silently).

    Both are off by default: they cost the node a little on every scheduler
    switch.  The agent turns them on from its own process, so the VM turns
    them off again when it exits (detach, or beamside gone)."""

    scheduler_wall_time: bool = False
    microstate_accounting: bool = False

    def attach_options(self) -> dict[str, bool]:
        return {
            "scheduler_wall_time": self.scheduler_wall_time,
            "msacc": self.microstate_accounting,
        }


@dataclass(frozen=True, slots=True)
class LogsConfig:
    """What each node's log handler forwards (``logs:``)."""

    level: str = "warning"
    # Per-node overrides of ``level``: ((node, level), ...).
    node_levels: tuple[tuple[str, str], ...] = ()
    max_message_bytes: int = 8192
    # Events per second per node beyond which the node drops (and counts).
    rate_limit: int = 2000
    # Seconds a node keeps capturing and holding unacknowledged events for a
    # beamside that vanished without detaching (a crash): the restarted
    # beamside gets them; then the handler and forwarder are removed.
    crash_grace: int = 120

    def level_for(self, node: str) -> str:
        return dict(self.node_levels).get(node, self.level)


@dataclass(frozen=True, slots=True)
class NotificationsConfig:
    """Which notifications nodes send (``notifications:``)."""

    shell: bool = True
    code: bool = True
    config: bool = True
    # System monitor events can be many: off unless asked, then rate-limited.
    system_monitor: bool = False
    system_monitor_rate: int = 10


BUILTIN_PLUGINS: Final = ("folsom", "mnesia", "os_mon", "poolboy", "rabbitmq", "ranch")
"""The names of the plugins ``beamside_plugin:builtin/0`` lists (the section
keys under ``plugins`` in a snapshot)."""


@dataclass(frozen=True, slots=True)
class PluginsConfig:
    """``plugins:``: the built-in plugins switched off, everywhere or per node.
    A plugin left on still runs only where its application does."""

    disabled: frozenset[str] = frozenset()
    # Per-node lists replacing ``disabled``: ((node, disabled), ...).
    node_disabled: tuple[tuple[str, frozenset[str]], ...] = ()

    def collect_options(self, node: str) -> dict[str, list[str]]:
        """``plugins``: the ones left on, when any is off (the agent's default: all)."""
        off = dict(self.node_disabled).get(node, self.disabled)
        return {"plugins": [p for p in BUILTIN_PLUGINS if p not in off]} if off else {}
