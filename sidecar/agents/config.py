"""What the agents are asked to do on a node, from the beamside config:
``agents:`` (VM-wide measurements), ``logs:`` (what the node's log handler
forwards) and ``notifications:`` (which notifications the node sends).

Plain values only: the attach code (:mod:`sidecar.agents`) and the event
handling (:mod:`sidecar.notify`) read them, the config reader builds them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

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


BUILTIN_PLUGINS: Final = (
    "ejabberd",
    "folsom",
    "lager",
    "mnesia",
    "os_mon",
    "poolboy",
    "rabbitmq",
    "ranch",
    "yaws",
)
"""The names of the plugins ``beamside_plugin:builtin/0`` lists (the section
keys under ``plugins`` in a snapshot)."""
BUILTIN_PLUGIN_MODULES: Final = frozenset(f"beamside_plugin_{p}" for p in BUILTIN_PLUGINS)


#: a user plugin's module name (and its file's, with ``.beam``)
USER_PLUGIN_NAME: Final = re.compile(r"^beamside_plugin_[a-z][a-z0-9_]{0,40}$")
MAX_USER_PLUGINS: Final = 32
MAX_TOP_QUEUES: Final = 100
MAX_USER_PLUGIN_BYTES: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class UserPlugin:
    """An operator's own plugin: a compiled ``beamside_plugin_*`` module (the
    ``beamside_plugin`` behaviour), loaded on every node at attach and
    removed at detach with the agents."""

    module: str
    path: str
    beam: bytes = field(repr=False)


def read_user_plugins(directory: str) -> tuple[UserPlugin, ...]:
    """Every ``beamside_plugin_*.beam`` of ``directory`` (sorted); ValueError
    says what is wrong (not a directory, too many, too big, not a BEAM file).
    Other files are left alone (the sources next to their beams)."""
    root = Path(directory)
    if not root.is_dir():
        raise ValueError(f"{directory} is not a directory")
    found = sorted(p for p in root.iterdir() if p.suffix == ".beam")
    plugins: list[UserPlugin] = []
    for path in found:
        if not USER_PLUGIN_NAME.match(path.stem):
            raise ValueError(
                f"{path.name}: a plugin's module is named beamside_plugin_<name> "
                "(lower case letters, digits, _)"
            )
        if path.stem in BUILTIN_PLUGIN_MODULES:
            raise ValueError(f"{path.name}: a built-in plugin has that name")
        size = path.stat().st_size
        if size > MAX_USER_PLUGIN_BYTES:
            raise ValueError(f"{path.name}: {size} bytes, at most {MAX_USER_PLUGIN_BYTES}")
        beam = path.read_bytes()
        if beam[:4] != b"FOR1" or beam[8:12] != b"BEAM":
            raise ValueError(f"{path.name}: not a BEAM file (compile it with erlc)")
        plugins.append(UserPlugin(path.stem, str(path), beam))
    if len(plugins) > MAX_USER_PLUGINS:
        raise ValueError(f"{len(plugins)} plugins, at most {MAX_USER_PLUGINS}")
    return tuple(plugins)


@dataclass(frozen=True, slots=True)
class PluginsConfig:
    """``plugins:``: the built-in plugins switched off, everywhere or per node,
    and the operator's own (``directory``). A plugin left on still runs only
    where it applies (its application runs)."""

    disabled: frozenset[str] = frozenset()
    # Per-node lists replacing ``disabled``: ((node, disabled), ...).
    node_disabled: tuple[tuple[str, frozenset[str]], ...] = ()
    #: the plugins read from ``plugins.directory``
    user: tuple[UserPlugin, ...] = ()
    #: ``plugins.rabbitmq.top_queues``: the queues with the most messages, per
    #: queue (0: never per queue)
    rabbitmq_top_queues: int = 0

    def collect_options(self, node: str) -> dict[str, Any]:
        """``plugins``: the ones left on, when any is off (the agent's default:
        all); ``extra_plugins``: the user plugins; ``top_queues``."""
        off = dict(self.node_disabled).get(node, self.disabled)
        opts: dict[str, Any] = {}
        if off:
            opts["plugins"] = [p for p in BUILTIN_PLUGINS if p not in off]
        if self.user:
            opts["extra_plugins"] = [p.module for p in self.user]
        if self.rabbitmq_top_queues:
            opts["top_queues"] = self.rabbitmq_top_queues
        return opts
