"""The built-in alarms: ids, default thresholds, cause and repair texts.

Thresholds are overridable per alarm in the config file (``alarms:``):
severity levels (``warning``/``minor``/``major``/``critical``), ``clear_ratio``
(hysteresis), ``delay`` (condition must hold this long), ``hold`` (how long
an event-like alarm stays raised), ``window`` (the span of a growth rate; for
``corrupt_startup_file``, ``different_module_versions`` and ``disk_almost_full``
how often their inputs are re-read) and ``enabled``; some alarms take keys of their own
(:data:`OPTION_KEYS`): ``old_code`` has ``age`` (how long a module's old code
must stay before it counts) and ``ignore`` (module names or globs, added to
:data:`OLD_CODE_IGNORE`).  Unknown ids and keys are config errors, and so
are settings the alarm could not work with (:func:`override_problems`).

The age of old code is kept on the node (``alarms.old_code.ages_ms``, see
erl_agents/beamside_alarms.erl) from the first collect that saw it, and starts
again when the module is loaded with other code (an application regenerating
a module keeps its old code young).  The VM keeps no record of when old code
appeared: when the last beamside detaches (a restart), the ages start again
from the next attach, so after a restart the alarm comes ``age`` later at the
earliest; while another beamside stays attached, the ages go on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Literal

from .model import Severity

W, MI, MA, CR = Severity.WARNING, Severity.MINOR, Severity.MAJOR, Severity.CRITICAL
MiB = 1024 * 1024

Scope = Literal["node", "family"]


@dataclass(frozen=True, slots=True)
class AlarmSpec:
    id: str
    scope: Scope
    levels: tuple[tuple[Severity, float], ...]
    unit: str
    repair: str
    clear_ratio: float = 0.9
    delay: float = 0.0
    hold: float = 0.0
    window: float = 0.0
    age: float = 0.0
    ignore: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AlarmSettings:
    """A spec with the config's overrides applied."""

    spec: AlarmSpec
    levels: tuple[tuple[Severity, float], ...]
    clear_ratio: float
    delay: float
    hold: float
    window: float
    enabled: bool = True
    age: float = 0.0
    ignore: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return self.spec.id


def _limit(alarm: str, what: str) -> AlarmSpec:
    return AlarmSpec(
        alarm,
        "node",
        ((MI, 0.7), (MA, 0.85), (CR, 0.95)),
        "ratio",
        f"Find what is creating {what} (check growth in Grafana, the top processes or "
        f"tables) and stop the leak; raise the limit at the next restart if the load is real.",
    )


#: Modules applications regenerate at run time (each load leaves the previous
#: version as old code until the next one; nothing else ever purges it), never
#: counted by ``old_code``.  Found by starting the applications: RabbitMQ's
#: feature flag registry (rabbit_feature_flags, code:load_binary), ejabberd's
#: p1_options modules (ets_cache_options at every cache creation, xmpp_config
#: at every reload_config), lager's goldrush trace filter (lager_default_tracer
#: at every trace change).
OLD_CODE_IGNORE: tuple[str, ...] = (
    "rabbit_ff_registry",
    "ets_cache_options",
    "xmpp_config",
    "lager_default_tracer",
)


_SPECS: tuple[AlarmSpec, ...] = (
    _limit("process_limit", "processes"),
    _limit("port_limit", "ports"),
    _limit("atom_limit", "atoms (list_to_atom/binary_to_atom on external input?)"),
    _limit("ets_limit", "ETS tables"),
    _limit("open_file_limit", "file descriptors"),
    AlarmSpec(
        "open_socket_limit",
        "node",
        ((MI, 0.5), (MA, 0.8)),
        "ratio",
        "Sockets use file descriptors: find the listener or client pool leaking sockets, "
        "or raise the fd limit (ulimit -n).",
    ),
    AlarmSpec(
        "module_limit",
        "node",
        ((MI, 10_000), (MA, 20_000)),
        "count",
        "Something generates modules at run time: find and bound it.",
    ),
    AlarmSpec(
        "dist_link_limit",
        "node",
        ((MI, 500), (MA, 1000)),
        "count",
        "The mesh is larger than planned: consider hidden nodes or a partial mesh.",
    ),
    AlarmSpec(
        "process_message_queue",
        "node",
        ((MI, 10_000), (MA, 100_000)),
        "messages",
        "Inspect the process (Processes/GetProcess): find why it cannot keep up "
        "(blocked call, slow consumer) and shed or spread the load.",
    ),
    AlarmSpec(
        "process_message_queue_growth",
        "node",
        ((MI, 1.0), (MA, 100.0)),
        "messages/s",
        "A process's queue has grown at every collect for the whole window: it receives "
        "faster than it handles. Inspect it now (Processes/GetProcess), before "
        "process_message_queue fires: a slow consumer, a blocked call, or a producer to "
        "throttle.",
        window=60.0,
    ),
    AlarmSpec(
        "ranch_connection_limit",
        "node",
        ((MI, 0.8), (MA, 0.95)),
        "ratio",
        "A ranch (or cowboy) listener is near its max_connections: new connections "
        "will wait in the accept queue. Raise max_connections (ranch:set_max_connections/2) "
        "if the node has room, or spread the clients over more nodes.",
    ),
    AlarmSpec(
        "poolboy_waiters",
        "node",
        ((W, 1),),
        "callers",
        "Callers wait for a worker of a poolboy pool: the pool is too small for the "
        "load or its workers are slow or stuck (see erlang_poolboy_* in Grafana); "
        "raise size/max_overflow or find what holds the workers.",
        delay=30.0,
    ),
    AlarmSpec(
        "rabbitmq_resource_alarm",
        "node",
        ((CR, 1),),
        "alarms",
        "RabbitMQ set a resource alarm (memory high watermark, free disk limit or file "
        "descriptors): it blocks every publishing connection in the cluster until it clears. "
        "Drain the backlog (consumers), find what holds memory (queues, connections) or free "
        "disk; raise vm_memory_high_watermark or disk_free_limit only with room to spare.",
    ),
    AlarmSpec(
        "rabbitmq_partition",
        "node",
        ((CR, 1),),
        "nodes",
        "RabbitMQ sees a network partition: the cluster's halves may diverge. Check the "
        "network between the nodes, then follow cluster_partition_handling (pause_minority, "
        "autoheal) or restart the nodes of the partition you discard.",
    ),
    AlarmSpec(
        "rabbitmq_unhealthy",
        "node",
        ((MA, 1),),
        "checks",
        "RabbitMQ is not running on a node that is up (a boot that did not finish, or rabbit "
        "stopped with rabbitmqctl stop_app), or virtual hosts are down: read the node's log "
        "and restart the vhost (rabbitmqctl restart_vhost) or the application.",
        delay=60.0,
    ),
    AlarmSpec(
        "process_memory_high_watermark",
        "node",
        ((MI, 512 * MiB), (MA, 2048 * MiB)),
        "bytes",
        "Inspect the process: large state, big mailbox or binaries held; consider "
        "hibernate, a GC, or max_heap_size.",
    ),
    AlarmSpec(
        "system_memory_high_watermark",
        "node",
        ((MI, 0.8), (MA, 0.9)),
        "ratio",
        "The node's host (or its cgroup, when that is the lower limit) is short of memory: "
        "find the biggest consumers (node memory by kind, other processes on the host or "
        "in the container) before the OOM killer does, or raise the limit.",
    ),
    AlarmSpec(
        "disk_almost_full",
        "node",
        ((MI, 85), (MA, 95)),
        "percent",
        "Free space on the named mount (without os_mon: the file system of the node's "
        "mnesia directory, else its working directory): logs, crash dumps, mnesia/disk_log "
        "files.",
        window=60.0,  # how often the node's own view runs df when disksup does not run
    ),
    AlarmSpec(
        "os_cpu_load",
        "node",
        ((MI, 1.5), (MA, 3.0)),
        "load per core",
        "The host is overloaded: check the node's schedulers and other host processes.",
    ),
    AlarmSpec(
        "binary_memory_growth",
        "node",
        ((MI, 2.0), (MA, 4.0)),
        "growth factor",
        "Binary memory keeps growing: look for processes holding refc binaries "
        "(recon:bin_leak-style GC, long-lived processes touching large binaries).",
        window=600.0,
    ),
    AlarmSpec(
        "long_gc_storm",
        "node",
        ((MI, 10), (MA, 60)),
        "events/min",
        "Garbage collections over the long_gc threshold: find processes with huge heaps.",
        hold=120.0,
    ),
    AlarmSpec(
        "long_schedule_storm",
        "node",
        ((MI, 10), (MA, 60)),
        "events/min",
        "Processes or ports run too long without yielding: NIFs, huge list operations.",
        hold=120.0,
    ),
    AlarmSpec(
        "busy_dist_port",
        "node",
        ((MI, 1), (MA, 10)),
        "events/min",
        "Distribution buffers are full: large messages between nodes or a slow link; "
        "consider +zdbbl or smaller messages.",
        hold=120.0,
    ),
    AlarmSpec(
        "old_code",
        "node",
        ((W, 1),),
        "modules",
        "Old module versions are still loaded: soft-purge them (Code/SoftPurge) once "
        "no process runs them.",
        age=600.0,  # old code younger than this does not count
        ignore=OLD_CODE_IGNORE,
    ),
    AlarmSpec(
        "shell_history_size",
        "node",
        ((MI, 50 * MiB), (MA, 200 * MiB)),
        "bytes",
        "Trim the shell history files or lower shell_history_file_bytes.",
    ),
    AlarmSpec(
        "corrupt_startup_file",
        "node",
        ((MA, 1),),
        "files",
        "Fix the named file before the node restarts: it would not boot.",
        window=300.0,  # how often the files are re-read
    ),
    AlarmSpec(
        "mnesia_inconsistent_database",
        "node",
        ((CR, 1),),
        "events",
        "Mnesia saw a partitioned network: decide which side wins and restart the other "
        "nodes' mnesia (mnesia:set_master_nodes/1).",
        hold=3600.0,
    ),
    AlarmSpec(
        "mnesia_overload",
        "node",
        ((MI, 1),),
        "events",
        "Mnesia's transaction log or dumper cannot keep up: check dump_log_write_threshold "
        "and disk speed.",
        hold=300.0,
    ),
    AlarmSpec(
        "sasl_alarm",
        "node",
        ((MA, 1),),
        "alarms",
        "An alarm set on the node with alarm_handler: see its description.",
    ),
    AlarmSpec(
        "node_down",
        "node",
        ((CR, 1),),
        "down",
        "Check the node's host and logs (crash dump, OOM killer, heart); beamside "
        "reattaches by itself when it returns.",
    ),
    AlarmSpec(
        "node_restarted",
        "node",
        ((W, 1),),
        "restarts",
        "The node restarted: read its crash dump or logs to find why.",
        hold=600.0,
    ),
    AlarmSpec(
        "dist_link_down",
        "node",
        ((MA, 1),),
        "links",
        "A node lost its distribution link to another node of its family: check the "
        "network, net_ticktime and the other node.",
    ),
    AlarmSpec(
        "different_module_versions",
        "family",
        ((MA, 1),),
        "modules",
        "Load the same version of the listed modules on every node of the family.",
        window=60.0,  # how often module md5s are re-read (and on any code change)
    ),
    AlarmSpec(
        "different_application_versions",
        "family",
        ((MA, 1),),
        "applications",
        "Run the same application versions on every node of the family.",
    ),
    AlarmSpec(
        "global_config_missing",
        "family",
        ((MA, 1),),
        "parameters",
        "Set the listed parameters on every node of the family (Config/SetGlobal).",
    ),
    AlarmSpec(
        "global_config_inconsistent",
        "family",
        ((MA, 1),),
        "parameters",
        "Give the listed parameters the same value on every node (Config/SetGlobal).",
    ),
    AlarmSpec(
        "time_zone_mismatch",
        "family",
        ((W, 1),),
        "nodes",
        "Run every node of the family in the same time zone (TZ).",
    ),
    AlarmSpec(
        "clock_skew",
        "family",
        ((MI, 1.0), (MA, 5.0)),
        "seconds",
        "Check NTP/chrony on the hosts of the listed nodes.",
    ),
)

BUILTIN: Mapping[str, AlarmSpec] = {s.id: s for s in _SPECS}
_LEVEL_KEYS = {"warning": W, "minor": MI, "major": MA, "critical": CR}
SETTING_KEYS = {*_LEVEL_KEYS, "clear_ratio", "delay", "hold", "window", "enabled"}
#: keys only some alarms take, beside :data:`SETTING_KEYS`
OPTION_KEYS: Mapping[str, frozenset[str]] = {"old_code": frozenset({"age", "ignore"})}


#: units whose levels are a part of a whole: the largest level that means anything
_SHARES: Mapping[str, tuple[float, str]] = {
    "ratio": (1.0, "a share of the limit, within (0, 1]"),
    "percent": (100.0, "a percentage, within (0, 100]"),
}


def override_problems(alarm_id: str, overrides: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(key, message)`` for every override of ``alarm_id`` (its values
    already of the right type) with which the alarm could not work: a level of
    a share outside (0, 1] (of a percentage outside (0, 100]), ``clear_ratio``
    outside (0, 1], or levels that do not rise with severity (warning < minor
    < major < critical, defaults included: every built-in alarm is worse when
    its value is higher, :func:`engine.graded` raises at ``value >= level``)."""
    spec = BUILTIN[alarm_id]
    problems: list[tuple[str, str]] = []
    share = _SHARES.get(spec.unit)
    levels = dict(spec.levels)
    given: set[Severity] = set()
    for key, severity in _LEVEL_KEYS.items():
        if key not in overrides:
            continue
        value = float(overrides[key])
        if share is not None and not 0 < value <= share[0]:
            problems.append((key, f"expected {share[1]}, got {_number(value)}"))
            levels.pop(severity, None)  # not compared with the others
            continue
        levels[severity] = value
        given.add(severity)
    if "clear_ratio" in overrides and not 0 < float(overrides["clear_ratio"]) <= 1:
        problems.append(
            (
                "clear_ratio",
                f"expected a share of the level, within (0, 1], got "
                f"{_number(float(overrides['clear_ratio']))}",
            )
        )
    ordered = sorted(levels.items())
    for (low, low_value), (high, high_value) in pairwise(ordered):
        if low_value < high_value or not {low, high} & given:
            continue
        rule = "levels rise with severity: warning < minor < major < critical"
        if high in given:
            default = "" if low in given else ", the default"
            where, message = (
                high,
                f"{_number(high_value)} must be above {low} ({_number(low_value)}{default})",
            )
        else:
            where, message = (
                low,
                f"{_number(low_value)} must be below {high} ({_number(high_value)}, the default)",
            )
        problems.append((str(where), f"{message}: {rule}"))
    return problems


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def resolve(overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, AlarmSettings]:
    """Every built-in alarm's settings, the (already validated) overrides applied."""
    settings: dict[str, AlarmSettings] = {}
    for alarm_id, spec in BUILTIN.items():
        o = overrides.get(alarm_id, {})
        levels = dict(spec.levels)
        for key, severity in _LEVEL_KEYS.items():
            if key in o:
                levels[severity] = float(o[key])
        settings[alarm_id] = AlarmSettings(
            spec=spec,
            levels=tuple(sorted(levels.items())),
            clear_ratio=float(o.get("clear_ratio", spec.clear_ratio)),
            delay=float(o.get("delay", spec.delay)),
            hold=float(o.get("hold", spec.hold)),
            window=float(o.get("window", spec.window)),
            enabled=bool(o.get("enabled", True)),
            age=float(o.get("age", spec.age)),
            ignore=(*spec.ignore, *(str(p) for p in o.get("ignore", ()))),
        )
    return settings


@dataclass(frozen=True, slots=True)
class GlobalParam:
    """An application env parameter that must be equal across a family."""

    app: str
    key: str
    family: str | None = None  # None: every family

    def __str__(self) -> str:
        return f"{self.app}.{self.key}"


@dataclass(frozen=True, slots=True)
class AlarmConfig:
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    global_params: tuple[GlobalParam, ...] = ()
