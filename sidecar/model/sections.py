"""Typed values of the collect sections more than one consumer reads.

The exporter renders them, the alarm checks judge them, the notifier turns the
event sections into notifications; each reads these values, never the raw
reply.  The names are the agent's (``erl_agents/beamside_agent.erl`` documents
each section); a key the node did not send, or sent with another type, is
None (see :mod:`sidecar.agents.terms` for the rules).  The ``decode_*``
functions take the section's term and return the value, or raise
:class:`Malformed` which the snapshot decoder turns into a
:class:`SectionError`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from itertools import islice
from typing import Any, Final, NamedTuple, TypeVar

from sidecar.agents.terms import (
    MAX_TEXT,
    flag,
    is_error,
    key_text,
    mapping,
    number,
    shown,
    text,
)
from sidecar.erldist.term import Atom, Pid

__all__ = [
    "Alarms",
    "CodeChange",
    "ConfigChange",
    "DiskView",
    "EnvValue",
    "EventSection",
    "Limits",
    "Malformed",
    "Memory",
    "MemoryView",
    "NodeTime",
    "OsMon",
    "OsMonCpu",
    "OsMonDisk",
    "OsMonMemory",
    "ProcessEntry",
    "Processes",
    "SaslAlarm",
    "SectionError",
    "StartupFiles",
    "Sysmon",
    "System",
    "Versions",
]


class SectionError(NamedTuple):
    """A section of the reply that is missing its data: the node answered
    ``{error, Reason}`` for it (``failed``), or it has a shape this beamside
    does not understand (``malformed``)."""

    section: str
    reason: str
    malformed: bool = False

    def __str__(self) -> str:
        what = "malformed" if self.malformed else "failed"
        return f"{self.section} {what}: {self.reason}"


#: entries kept of a list the agent already bounds (top-N, alarms, events)
MAX_ENTRIES: Final = 1000


class Malformed(ValueError):
    """A section whose shape this beamside does not understand."""


_T = TypeVar("_T")

_FLOAT_MAX: Final = sys.float_info.max
#: each section class's field positions
_POSITIONS: dict[type, dict[str, int]] = {}


def _numbers(cls: type[_T], term: Mapping[str, object], **others: object) -> _T:
    """``cls`` with its fields read from ``term`` as numbers (the rule of
    :func:`~sidecar.agents.terms.number`, inlined: this runs for every field of
    every node at every tick), except those given in ``others``."""
    fields: tuple[str, ...] = cls._fields  # type: ignore[attr-defined]
    get: Callable[[str], Any] = term.get
    values = [
        (float(v) if -_FLOAT_MAX <= v <= _FLOAT_MAX else None)
        if (t := type(v)) is int
        else (v if t is float and v - v == 0.0 else None)
        for v in map(get, fields)
    ]
    if others:
        position = _POSITIONS.get(cls) or _POSITIONS.setdefault(
            cls, {name: i for i, name in enumerate(fields)}
        )
        for name, value in others.items():
            values[position[name]] = value
    return cls._make(values)  # type: ignore[attr-defined,no-any-return]


def _map(term: object, what: str) -> Mapping[str, object]:
    m = mapping(term)
    if m is None:
        raise Malformed(f"{what} is not a map")
    return m


def _part(term: object, path: str, decode: Any) -> Any:
    """A nested part: its value, a SectionError, or None when absent or off
    (an atom such as ``not_running``)."""
    if term is None or isinstance(term, Atom):
        return None
    if is_error(term):
        return SectionError(path, text(term[1]) or shown(term[1], 200))  # type: ignore[index]
    try:
        return decode(term)
    except Malformed as exc:
        return SectionError(path, str(exc), malformed=True)


def _entries(term: object) -> list[object]:
    return term[:MAX_ENTRIES] if isinstance(term, list) else []


# --------------------------------------------------------------------------- limits


class Limits(NamedTuple):
    """``limits``: counts and their limits (the ``*_limit`` alarms)."""

    process_count: float | None = None
    process_limit: float | None = None
    port_count: float | None = None
    port_limit: float | None = None
    atom_count: float | None = None
    atom_limit: float | None = None
    ets_count: float | None = None
    ets_limit: float | None = None
    modules_loaded: float | None = None
    modules_old_code: float | None = None
    registered_names: float | None = None
    dist_links: float | None = None
    dist_visible: float | None = None
    dist_hidden: float | None = None
    persistent_terms: float | None = None
    max_fds: float | None = None
    poll_set_fds: float | None = None
    open_fds: float | None = None
    fd_limit: float | None = None
    socket_count: float | None = None


def decode_limits(term: object) -> Limits:
    return _numbers(Limits, _map(term, "limits"))


# --------------------------------------------------------------------------- system


class System(NamedTuple):
    """``system``: schedulers, processors, emulator flags and clocks."""

    schedulers: float | None = None
    schedulers_online: float | None = None
    dirty_cpu_schedulers: float | None = None
    dirty_cpu_schedulers_online: float | None = None
    dirty_io_schedulers: float | None = None
    logical_processors: float | None = None
    logical_processors_available: float | None = None
    logical_processors_online: float | None = None
    cpu_quota: float | None = None
    thread_pool_size: float | None = None
    wordsize: float | None = None
    dist_buf_busy_limit: float | None = None
    context_reductions: float | None = None
    min_heap_size: float | None = None
    min_bin_vheap_size: float | None = None
    max_heap_size: float | None = None
    fullsweep_after: float | None = None
    start_time_ms: float | None = None
    system_time_ms: float | None = None
    time_offset_us: float | None = None
    os_pid: float | None = None
    smp_support: bool | None = None
    threads: bool | None = None
    time_correction: bool | None = None
    port_parallelism: bool | None = None
    kernel_poll: bool | None = None
    #: ``enabled``, ``blocked``, ``blocked_normal`` ("" when not sent)
    multi_scheduling: str = ""
    time_warp_mode: str = ""


_SYSTEM_FLAGS: Final = (
    "smp_support",
    "threads",
    "time_correction",
    "port_parallelism",
    "kernel_poll",
)


def decode_system(term: object) -> System:
    m = _map(term, "system")
    return _numbers(
        System,
        m,
        **{k: flag(m.get(k)) for k in _SYSTEM_FLAGS},
        multi_scheduling=text(m.get("multi_scheduling"))
        if isinstance(m.get("multi_scheduling"), str)
        else "",
        time_warp_mode=text(m.get("time_warp_mode")),
    )


# --------------------------------------------------------------------------- memory


class Memory(NamedTuple):
    """``memory``: ``erlang:memory/0`` (and ``persistent_term``) in bytes, by kind."""

    by_kind: Mapping[str, float]

    def get(self, kind: str) -> float | None:
        return self.by_kind.get(kind)


def decode_memory(term: object) -> Memory:
    by_kind: dict[str, float] = {}
    for kind, value in _map(term, "memory").items():
        n = number(value)
        if n is not None:
            by_kind[kind if type(kind) is Atom else key_text(kind)] = n
    return Memory(by_kind)


# --------------------------------------------------------------------------- processes


class ProcessEntry(NamedTuple):
    """One process of a top-N list (longest queues, largest memory)."""

    pid: str
    name: str = ""
    message_queue_len: float | None = None
    memory: float | None = None
    current_function: str = ""
    initial_call: str = ""

    @property
    def label(self) -> str:
        """Its registered name, else its pid."""
        return self.name or self.pid

    def summary(self, limit: int = 200) -> dict[str, object]:
        """The fields it has, for an alarm's details."""
        out: dict[str, object] = {}
        for name, v in zip(self._fields, self, strict=True):
            if v is None or v == "":
                continue
            if isinstance(v, str):
                v = v[:limit]
            elif v.is_integer():  # counts and bytes print as integers
                v = int(v)
            out[name] = v
        return out


def _process_entry(term: object) -> ProcessEntry | None:
    if type(term) is not dict:
        return None
    get = term.get
    return ProcessEntry(
        text(get("pid")),
        text(get("name")),
        number(get("message_queue_len")),
        number(get("memory")),
        text(get("current_function")),
        text(get("initial_call")),
    )


class Processes(NamedTuple):
    """``processes``: message queues and process memory over the chunked walk."""

    mq_sum: float | None = None
    mq_max: float | None = None
    mq_nonzero: float | None = None
    mq_above: float | None = None
    mq_threshold: float | None = None
    walked: float | None = None
    covered: float | None = None
    chunks: float | None = None
    oldest_ms: float | None = None
    vanished: float | None = None
    duration_us: float | None = None
    memory_sum: float | None = None
    max_memory: float | None = None
    memory_above: float | None = None
    memory_threshold: float | None = None
    memory_covered: float | None = None
    truncated: bool | None = None
    top_message_queue: tuple[ProcessEntry, ...] = ()
    top_memory: tuple[ProcessEntry, ...] = ()


def decode_processes(term: object) -> Processes:
    m = _map(term, "processes")

    def top(key: str) -> tuple[ProcessEntry, ...]:
        return tuple(e for e in map(_process_entry, _entries(m.get(key))) if e is not None)

    return _numbers(
        Processes,
        m,
        truncated=flag(m.get("truncated")),
        top_message_queue=top("top_message_queue"),
        top_memory=top("top_memory"),
    )


# --------------------------------------------------------------------------- alarms


class SaslAlarm(NamedTuple):
    """An alarm set in SASL's ``alarm_handler`` (``id`` and ``description``
    printed by the node; ``name`` when the node could tell it)."""

    id: str
    description: str = ""
    name: str = ""


class MemoryView(NamedTuple):
    """``alarms.memory_view``: the node's own view of memory when os_mon's
    memsup does not run (cgroup v1/v2, /proc/meminfo)."""

    source: str
    limit_bytes: float | None = None
    used_bytes: float | None = None
    total_bytes: float | None = None
    available_bytes: float | None = None
    free_bytes: float | None = None
    swap_total_bytes: float | None = None
    swap_free_bytes: float | None = None
    #: the node's memory cgroup: limit, usage, inactive_file (bytes), or its error
    cgroup: Mapping[str, float | None] | SectionError | None = None


def decode_memory_view(term: object) -> MemoryView:
    m = _map(term, "alarms.memory_view")

    def cgroup(t: object) -> Mapping[str, float | None]:
        c = _map(t, "alarms.memory_view.cgroup")
        return {k: number(c.get(f"{k}_bytes")) for k in ("limit", "usage", "inactive_file")}

    return _numbers(
        MemoryView,
        m,
        source=text(m.get("source") or "meminfo"),
        cgroup=_part(m.get("cgroup"), "alarms.memory_view.cgroup", cgroup),
    )


class DiskView(NamedTuple):
    """``alarms.disk_view``: df of the node's data directory (mnesia's, else
    the working directory) when os_mon's disksup does not run."""

    mount: str = ""
    path: str = ""
    source: str = "df"
    dir_source: str = ""
    total_bytes: float | None = None
    available_bytes: float | None = None
    #: df's Capacity, percent
    capacity: float | None = None


def decode_disk_view(term: object) -> DiskView:
    m = _map(term, "alarms.disk_view")
    return _numbers(
        DiskView,
        m,
        mount=text(m.get("mount")),
        path=text(m.get("path")),
        source=text(m.get("source") or "df"),
        dir_source=text(m.get("dir_source")),
    )


class Alarms(NamedTuple):
    """``alarms``: what the node says for the alarm checks.

    A part is None when the node did not send it (``memory_view`` is not sent
    where memsup runs, ``shell_history`` is None when disabled), or a
    :class:`SectionError`."""

    #: SASL alarm_handler: (count, alarms) or None when not known
    sasl_count: float | None = None
    sasl_alarms: tuple[SaslAlarm, ...] | None = None
    #: mnesia system events since attach: counters and the last of each
    mnesia: Mapping[str, float | str] | None = None
    shell_history_bytes: float | None = None
    #: modules with old code: ages in ms since first seen
    old_code_ages_ms: Mapping[str, float] | None = None
    memory_view: MemoryView | SectionError | None = None
    disk_view: DiskView | SectionError | None = None


def _sasl(term: object) -> tuple[float | None, tuple[SaslAlarm, ...] | None]:
    m = mapping(term)
    if m is None:
        return None, None
    alarms = m.get("alarms")
    listed = None
    if type(alarms) is list:
        listed = tuple(
            SaslAlarm(text(a.get("id")), text(a.get("description")), text(a.get("name")))
            for a in (mapping(x) for x in _entries(alarms))
            if a is not None
        )
    return number(m.get("count")), listed


def decode_alarms(term: object) -> Alarms:
    m = _map(term, "alarms")
    count, sasl = _sasl(m.get("sasl"))
    mnesia = mapping(m.get("mnesia"))
    history = mapping(m.get("shell_history"))
    old_code = mapping(m.get("old_code"))
    ages = mapping(old_code.get("ages_ms")) if old_code is not None else None
    return Alarms(
        sasl_count=count,
        sasl_alarms=sasl,
        mnesia=(
            None
            if mnesia is None
            else {
                str(k): (n if (n := number(v)) is not None else text(v, 500))
                for k, v in mnesia.items()
                if k
                in (
                    "inconsistent_database",
                    "overload",
                    "last_inconsistent_database",
                    "last_overload",
                )
            }
        ),
        shell_history_bytes=number(history.get("bytes")) if history is not None else None,
        old_code_ages_ms=(
            None
            if ages is None
            else {text(k): n for k, v in ages.items() if (n := number(v)) is not None}
        ),
        memory_view=_part(_view(m.get("memory_view")), "alarms.memory_view", decode_memory_view),
        disk_view=_part(_view(m.get("disk_view")), "alarms.disk_view", decode_disk_view),
    )


def _view(term: object) -> object:
    """An atom (``os_mon``: memsup/disksup run) is "no view"."""
    return None if isinstance(term, Atom) else term


# --------------------------------------------------------------------------- sysmon


class Sysmon(NamedTuple):
    """``sysmon``: the agent's own state and the system monitor's counters."""

    #: owner | taken_by_other | disabled | not_attached
    state: str = ""
    sidecars: float | None = None
    long_gc: float | None = None
    long_schedule: float | None = None
    large_heap: float | None = None
    busy_port: float | None = None
    busy_dist_port: float | None = None


def decode_sysmon(term: object) -> Sysmon:
    m = _map(term, "sysmon")
    return _numbers(Sysmon, m, state=text(m.get("state")))


# --------------------------------------------------------------------------- time, versions


class NodeTime(NamedTuple):
    """``time``: the node's clocks and time zone."""

    utc_offset_s: float | None = None
    system_time_us: float | None = None
    erlang_system_time_us: float | None = None


def decode_time(term: object) -> NodeTime:
    return _numbers(NodeTime, _map(term, "time"))


class Release(NamedTuple):
    """One release of ``release_handler:which_releases/0``."""

    name: str
    version: str
    #: permanent, current, old or unpacked
    status: str


class Versions(NamedTuple):
    """``versions``: the release and the running applications."""

    otp_release: str = ""
    erts_version: str = ""
    system_architecture: str = ""
    emulator_flavor: str = ""
    #: application -> version; None when the node did not list them
    applications: Mapping[str, str] | None = None
    #: the releases release_handler knows (None: it does not run, or failed)
    releases: tuple[Release, ...] | None = None

    @property
    def permanent(self) -> Release | None:
        """The release the node boots (status permanent)."""
        return next((r for r in self.releases or () if r.status == "permanent"), None)


def _releases(term: object) -> tuple[Release, ...] | None:
    if not isinstance(term, list):
        return None  # not_running, or the node's {error, _}
    found = (mapping(x) for x in term[:MAX_ENTRIES])
    return tuple(
        Release(text(r.get("name")), text(r.get("version")), text(r.get("status")))
        for r in found
        if r is not None
    )


def decode_versions(term: object) -> Versions:
    m = _map(term, "versions")
    apps = mapping(m.get("applications"))
    return Versions(
        otp_release=text(m.get("otp_release")),
        erts_version=text(m.get("erts_version")),
        system_architecture=text(m.get("system_architecture")),
        emulator_flavor=text(m.get("emulator_flavor")),
        applications=None if apps is None else {text(k): text(v) for k, v in apps.items()},
        releases=_releases(m.get("releases")),
    )


# --------------------------------------------------------------------------- os_mon


class OsMonCpu(NamedTuple):
    load1: float | None = None
    load5: float | None = None
    load15: float | None = None
    nprocs: float | None = None
    #: cpu_sup:util/1 percentages by mode (``busy`` among them)
    util: Mapping[str, float] | None = None


class OsMonMemory(NamedTuple):
    #: memsup:get_system_memory_data/0 (bytes) by key
    system: Mapping[str, float] | None = None
    allocated: float | None = None
    worst_process: float | None = None
    system_high_watermark: float | None = None
    process_high_watermark: float | None = None


class Disk(NamedTuple):
    mount: str
    total_kib: float | None = None
    #: percent used
    capacity: float | None = None


class OsMonDisk(NamedTuple):
    disks: tuple[Disk, ...] | None = None
    almost_full_threshold: float | None = None


class OsMon(NamedTuple):
    """``plugins.os_mon``: cpu_sup, memsup and disksup, each a part that may
    be missing or an error on its own."""

    cpu: OsMonCpu | SectionError | None = None
    memory: OsMonMemory | SectionError | None = None
    disk: OsMonDisk | SectionError | None = None


def _numeric_map(term: object) -> Mapping[str, float] | None:
    m = mapping(term)
    if m is None:
        return None
    return {key_text(k): n for k, v in m.items() if (n := number(v)) is not None}


def _cpu(term: object) -> OsMonCpu:
    m = _map(term, "plugins.os_mon.cpu")
    return _numbers(OsMonCpu, m, util=_numeric_map(m.get("util")))


def _memsup(term: object) -> OsMonMemory:
    m = _map(term, "plugins.os_mon.memory")
    return _numbers(OsMonMemory, m, system=_numeric_map(m.get("system")))


def _disksup(term: object) -> OsMonDisk:
    m = _map(term, "plugins.os_mon.disk")
    disks = m.get("disks")
    return OsMonDisk(
        disks=(
            None
            if type(disks) is not list
            else tuple(
                Disk(text(d.get("mount")), number(d.get("total_kib")), number(d.get("capacity")))
                for d in map(mapping, _entries(disks))
                if d is not None
            )
        ),
        almost_full_threshold=number(m.get("almost_full_threshold")),
    )


def decode_os_mon(term: object) -> OsMon:
    m = _map(term, "plugins.os_mon")
    return OsMon(
        cpu=_part(m.get("cpu"), "plugins.os_mon.cpu", _cpu),
        memory=_part(m.get("memory"), "plugins.os_mon.memory", _memsup),
        disk=_part(m.get("disk"), "plugins.os_mon.disk", _disksup),
    )


# --------------------------------------------------------------------------- poolboy


class PoolboyPool(NamedTuple):
    """One pool of ``plugins.poolboy`` (numbers as the pool's state has them)."""

    size: float | None = None
    max_overflow: float | None = None
    overflow: float | None = None
    available: float | None = None
    checked_out: float | None = None
    #: callers blocked in checkout, waiting for a worker
    waiting: float | None = None


class Poolboy(NamedTuple):
    """``plugins.poolboy``: the registered pools, by name (sorted); a pool that
    did not answer in time is a :class:`SectionError` of its own."""

    pools: tuple[tuple[str, PoolboyPool | SectionError], ...] = ()
    truncated: bool = False
    version: str | None = None

    def waiting(self) -> list[tuple[str, float]]:
        """(pool, callers waiting) of the pools with someone waiting."""
        return [
            (name, p.waiting) for name, p in self.pools if isinstance(p, PoolboyPool) and p.waiting
        ]


def _pool(term: object) -> PoolboyPool:
    return _numbers(PoolboyPool, _map(term, "a poolboy pool"))


def _named_parts(
    m: Mapping[str, object], key: str, path: str, decode: Callable[[object], _T]
) -> tuple[tuple[tuple[str, _T | SectionError], ...], bool]:
    """A plugin's map of named parts (pools, listeners): each decoded on its
    own (:func:`_part`), sorted by name, at most :data:`MAX_ENTRIES`; and
    whether the node or we left some out (``<key>_truncated``)."""
    parts = mapping(m.get(key))
    if parts is None:
        raise Malformed(f"{path}.{key} is not a map")
    named = sorted(
        ((key_text(k), v) for k, v in islice(parts.items(), MAX_ENTRIES)), key=lambda kv: kv[0]
    )
    decoded = ((name, _part(v, f"{path}.{key}.{name}", decode)) for name, v in named)
    truncated = m.get(f"{key}_truncated") is True or len(parts) > MAX_ENTRIES
    return tuple((name, x) for name, x in decoded if x is not None), truncated


def _version(m: Mapping[str, object]) -> str | None:
    version = m.get("version")
    return text(version) if version is not None else None


def decode_poolboy(term: object) -> Poolboy:
    m = _map(term, "plugins.poolboy")
    pools, truncated = _named_parts(m, "pools", "plugins.poolboy", _pool)
    return Poolboy(pools=pools, truncated=truncated, version=_version(m))


# --------------------------------------------------------------------------- ranch


class RanchListener(NamedTuple):
    """One listener of ``plugins.ranch`` (cowboy's among them)."""

    transport: str = ""
    protocol: str = ""
    ip: str = ""
    status: str = ""
    port: float | None = None
    #: None: infinity (or not said)
    max_connections: float | None = None
    active_connections: float | None = None
    all_connections: float | None = None
    #: connections since the listener started (ranch 2)
    accepted: float | None = None
    terminated: float | None = None

    @property
    def usage(self) -> float | None:
        """Active connections over the limit (None without a finite limit)."""
        if self.max_connections and self.active_connections is not None:
            return self.active_connections / self.max_connections
        return None


class Ranch(NamedTuple):
    """``plugins.ranch``: listeners by their printed ref (sorted); one that
    did not answer is a :class:`SectionError` of its own."""

    listeners: tuple[tuple[str, RanchListener | SectionError], ...] = ()
    truncated: bool = False
    version: str | None = None


def _listener(term: object) -> RanchListener:
    m = _map(term, "a ranch listener")
    return _numbers(
        RanchListener,
        m,
        transport=text(m.get("transport")),
        protocol=text(m.get("protocol")),
        ip=text(m.get("ip")),
        status=text(m.get("status")),
    )


def decode_ranch(term: object) -> Ranch:
    m = _map(term, "plugins.ranch")
    listeners, truncated = _named_parts(m, "listeners", "plugins.ranch", _listener)
    return Ranch(listeners=listeners, truncated=truncated, version=_version(m))


# --------------------------------------------------------------------------- folsom

#: the values a folsom metric may carry, by the key the agent sends
FOLSOM_FIELDS: Final = ("value", "count", "one", "five", "fifteen", "mean", "n", "min", "max",
                        "arithmetic_mean")  # fmt: skip


class FolsomMetric(NamedTuple):
    """One metric of ``plugins.folsom``: its name as the node printed it, its
    folsom type, its numbers by key (:data:`FOLSOM_FIELDS`) and, for a
    histogram or duration, its percentiles ((50, v), (75, v) ... (999, v))."""

    name: str
    type: str
    fields: Mapping[str, float]
    percentiles: tuple[tuple[int, float], ...] = ()


class Folsom(NamedTuple):
    metrics: tuple[FolsomMetric, ...] = ()
    truncated: bool = False
    #: histograms and durations sent without statistics (limits)
    stats_skipped: float | None = None
    version: str | None = None


def _folsom_metric(term: object) -> FolsomMetric | None:
    m = mapping(term)
    if m is None:
        return None
    fields = {k: n for k in FOLSOM_FIELDS if (n := number(m.get(k))) is not None}
    raw = m.get("percentile")
    percentiles: dict[object, object] = raw if type(raw) is dict else {}
    return FolsomMetric(
        name=text(m.get("name")),
        type=text(m.get("type")) or "other",
        fields=fields,
        percentiles=tuple(
            sorted(
                (k, v)
                for k, p in percentiles.items()
                if type(k) is int and 0 < k < 10_000 and (v := number(p)) is not None
            )
        ),
    )


def decode_folsom(term: object) -> Folsom:
    m = _map(term, "plugins.folsom")
    metrics = (_folsom_metric(x) for x in _entries(m.get("metrics")))
    return Folsom(
        metrics=tuple(x for x in metrics if x is not None and x.name),
        truncated=m.get("metrics_truncated") is True,
        stats_skipped=number(m.get("stats_skipped")),
        version=_version(m),
    )


# --------------------------------------------------------------------------- rabbitmq


class RabbitMemory(NamedTuple):
    """What RabbitMQ's vm_memory_monitor compares (bytes)."""

    used: float | None = None
    #: None: no limit
    limit: float | None = None
    #: the high watermark as a fraction of the RAM (None when set in bytes)
    watermark: float | None = None
    #: the high watermark when set in bytes (``vm_memory_high_watermark.absolute``)
    watermark_bytes: float | None = None


class RabbitDisk(NamedTuple):
    """What rabbit_disk_monitor last measured (bytes)."""

    free: float | None = None
    limit: float | None = None


class RabbitTotals(NamedTuple):
    """The sizes of RabbitMQ's core metrics tables (None: no such table)."""

    connections: float | None = None
    channels: float | None = None
    consumers: float | None = None
    queues: float | None = None


class RabbitMessages(NamedTuple):
    """Messages in the node's queues, over all of them or one vhost."""

    queues: float | None = None
    ready: float | None = None
    unacked: float | None = None
    total: float | None = None


class RabbitQueue(NamedTuple):
    """One of the queues with the most messages (``top_queues``, opted in)."""

    vhost: str
    name: str
    ready: float | None = None
    unacked: float | None = None
    total: float | None = None


class RabbitCounters(NamedTuple):
    """One group of ``rabbit_global_counters``: its labels (``protocol``,
    ``queue_type``, ...) and its counters by name (``messages_received_total``)."""

    labels: tuple[tuple[str, str], ...]
    values: tuple[tuple[str, float], ...]


class RabbitCluster(NamedTuple):
    name: str | None = None
    nodes: float | None = None
    running: float | None = None
    #: the nodes rabbit_node_monitor sees this node partitioned from
    partitions: tuple[str, ...] = ()


#: RabbitMQ's resource alarms, as the agent names them
RABBIT_RESOURCES: Final = ("memory", "disk", "file_descriptor_limit")


class RabbitMQ(NamedTuple):
    """``plugins.rabbitmq``: each part is its value, a :class:`SectionError`
    (the node failed it) or None (not sent)."""

    version: str | None = None
    #: the boot finished (``rabbit:is_running/0``)
    running: bool | SectionError | None = None
    #: the node's own resource alarms set now (:data:`RABBIT_RESOURCES`)
    alarms: tuple[str, ...] | SectionError | None = None
    memory: RabbitMemory | SectionError | None = None
    disk: RabbitDisk | SectionError | None = None
    totals: RabbitTotals | SectionError | None = None
    messages: RabbitMessages | SectionError | None = None
    #: per virtual host (sorted), at most the agent's ``max_vhosts``
    vhosts: tuple[tuple[str, RabbitMessages], ...] | SectionError | None = None
    vhosts_truncated: bool = False
    counters: tuple[RabbitCounters, ...] | SectionError | None = None
    cluster: RabbitCluster | SectionError | None = None
    #: virtual hosts whose supervisor or message stores are down
    vhosts_down: tuple[str, ...] | SectionError | None = None
    #: the queues with the most messages, most first (None: not asked for)
    top_queues: tuple[RabbitQueue, ...] | SectionError | None = None


def _boolean(term: object) -> bool:
    if not isinstance(term, bool):
        raise Malformed(f"{shown(term, 50)} is not a boolean")
    return term


def _texts(term: object, what: str) -> tuple[str, ...]:
    if not isinstance(term, list):
        raise Malformed(f"{what} is not a list")
    return tuple(sorted(text(x) for x in term[:MAX_ENTRIES]))


def _rabbit_memory(term: object) -> RabbitMemory:
    m = _map(term, "plugins.rabbitmq.memory")
    watermark = m.get("watermark")
    absolute = mapping(watermark)
    return RabbitMemory(
        used=number(m.get("used")),
        limit=number(m.get("limit")),
        watermark=number(watermark),
        watermark_bytes=number(absolute.get("absolute")) if absolute is not None else None,
    )


def _rabbit_vhosts(term: object) -> tuple[tuple[str, RabbitMessages], ...]:
    m = _map(term, "plugins.rabbitmq.vhosts")
    named = ((key_text(k), mapping(v)) for k, v in islice(m.items(), MAX_ENTRIES))
    return tuple(sorted((name, _numbers(RabbitMessages, v)) for name, v in named if v is not None))


def _rabbit_counters(term: object) -> tuple[RabbitCounters, ...]:
    groups: list[RabbitCounters] = []
    for entry in map(mapping, _entries(term)):
        if entry is None:
            continue
        labels = mapping(entry.get("labels")) or {}
        values = mapping(entry.get("values")) or {}
        groups.append(
            RabbitCounters(
                labels=tuple(sorted((key_text(k), text(v)) for k, v in labels.items())),
                values=tuple(
                    sorted(
                        (key_text(k), n) for k, v in values.items() if (n := number(v)) is not None
                    )
                ),
            )
        )
    return tuple(groups)


def _rabbit_queues(term: object) -> tuple[RabbitQueue, ...]:
    if not isinstance(term, list):
        raise Malformed("plugins.rabbitmq.top_queues is not a list")
    queues = (mapping(x) for x in term[:100])
    return tuple(
        _numbers(RabbitQueue, q, vhost=text(q.get("vhost")), name=text(q.get("name")))
        for q in queues
        if q is not None
    )


def _rabbit_cluster(term: object) -> RabbitCluster:
    m = _map(term, "plugins.rabbitmq.cluster")
    name = m.get("name")
    return RabbitCluster(
        name=text(name) if name is not None else None,
        nodes=number(m.get("nodes")),
        running=number(m.get("running")),
        partitions=_texts(m.get("partitions", []), "plugins.rabbitmq.cluster.partitions"),
    )


def decode_rabbitmq(term: object) -> RabbitMQ:
    m = _map(term, "plugins.rabbitmq")
    path = "plugins.rabbitmq"
    return RabbitMQ(
        version=_version(m),
        running=_part(m.get("running"), f"{path}.running", _boolean),
        alarms=_part(m.get("alarms"), f"{path}.alarms", lambda t: _texts(t, f"{path}.alarms")),
        memory=_part(m.get("memory"), f"{path}.memory", _rabbit_memory),
        disk=_part(
            m.get("disk"), f"{path}.disk", lambda t: _numbers(RabbitDisk, _map(t, f"{path}.disk"))
        ),
        totals=_part(
            m.get("totals"),
            f"{path}.totals",
            lambda t: _numbers(RabbitTotals, _map(t, f"{path}.totals")),
        ),
        messages=_part(
            m.get("messages"),
            f"{path}.messages",
            lambda t: _numbers(RabbitMessages, _map(t, f"{path}.messages")),
        ),
        vhosts=_part(m.get("vhosts"), f"{path}.vhosts", _rabbit_vhosts),
        vhosts_truncated=m.get("vhosts_truncated") is True,
        counters=_part(m.get("counters"), f"{path}.counters", _rabbit_counters),
        cluster=_part(m.get("cluster"), f"{path}.cluster", _rabbit_cluster),
        vhosts_down=_part(
            m.get("vhosts_down"), f"{path}.vhosts_down", lambda t: _texts(t, f"{path}.vhosts_down")
        ),
        top_queues=_part(m.get("top_queues"), f"{path}.top_queues", _rabbit_queues),
    )


# --------------------------------------------------------------------------- ejabberd


class EjabberdHost(NamedTuple):
    """One virtual host: c2s sessions on this node, registered users (internal
    auth); None when the agent left the count out (a table over its bound)."""

    sessions: float | None = None
    users: float | None = None


class Ejabberd(NamedTuple):
    """``plugins.ejabberd``: each part its value, a :class:`SectionError`, or None."""

    version: str | None = None
    sessions: float | SectionError | None = None
    hosts: tuple[tuple[str, EjabberdHost], ...] | SectionError | None = None
    hosts_truncated: bool = False
    #: (direction, connections): ("incoming", n), ("outgoing", n)
    s2s: tuple[tuple[str, float], ...] | SectionError | None = None
    #: (registered name, message queue length) of ejabberd's central processes
    queues: tuple[tuple[str, float], ...] | SectionError | None = None
    cluster_nodes: float | SectionError | None = None


def _named_numbers(term: object, what: str) -> tuple[tuple[str, float], ...]:
    m = _map(term, what)
    return tuple(sorted((key_text(k), n) for k, v in m.items() if (n := number(v)) is not None))


def _count(term: object) -> float:
    n = number(term)
    if n is None:
        raise Malformed(f"{shown(term, 50)} is not a count")
    return n


def decode_ejabberd(term: object) -> Ejabberd:
    m = _map(term, "plugins.ejabberd")
    path = "plugins.ejabberd"

    def hosts(t: object) -> tuple[tuple[str, EjabberdHost], ...]:
        h = _map(t, f"{path}.hosts")
        named = ((key_text(k), mapping(v)) for k, v in islice(h.items(), MAX_ENTRIES))
        return tuple(sorted((n, _numbers(EjabberdHost, v)) for n, v in named if v is not None))

    return Ejabberd(
        version=_version(m),
        sessions=_part(m.get("sessions"), f"{path}.sessions", _count),
        hosts=_part(m.get("hosts"), f"{path}.hosts", hosts),
        hosts_truncated=m.get("hosts_truncated") is True,
        s2s=_part(m.get("s2s"), f"{path}.s2s", lambda t: _named_numbers(t, f"{path}.s2s")),
        queues=_part(
            m.get("queues"), f"{path}.queues", lambda t: _named_numbers(t, f"{path}.queues")
        ),
        cluster_nodes=_part(m.get("cluster_nodes"), f"{path}.cluster_nodes", _count),
    )


# --------------------------------------------------------------------------- yaws


class YawsServer(NamedTuple):
    """One group of Yaws virtual servers sharing an address and port."""

    ip: str = ""
    port: float | None = None
    #: the group's servernames (at most 10)
    names: tuple[str, ...] = ()
    active_connections: float | None = None
    #: connections accepted since it started
    accepted: float | None = None
    requests: float | None = None


class Yaws(NamedTuple):
    """``plugins.yaws``: servers by ``ip:port`` (sorted); one that did not
    answer is a :class:`SectionError` of its own."""

    servers: tuple[tuple[str, YawsServer | SectionError], ...] = ()
    truncated: bool = False
    version: str | None = None


def _yaws_server(term: object) -> YawsServer:
    m = _map(term, "a yaws server")
    names = m.get("names")
    return _numbers(
        YawsServer,
        m,
        ip=text(m.get("ip")),
        names=tuple(text(n) for n in names[:10]) if isinstance(names, list) else (),
    )


def decode_yaws(term: object) -> Yaws:
    m = _map(term, "plugins.yaws")
    servers, truncated = _named_parts(m, "servers", "plugins.yaws", _yaws_server)
    return Yaws(servers=servers, truncated=truncated, version=_version(m))


# --------------------------------------------------------------------------- lager


class Lager(NamedTuple):
    """``plugins.lager``: lager's overload state."""

    version: str | None = None
    #: the backend throttle switched to synchronous logging (None: not known)
    sync_mode: bool | None = None
    event_queue: float | None = None
    error_logger_hwm: float | None = None


def decode_lager(term: object) -> Lager:
    m = _map(term, "plugins.lager")
    sync = m.get("sync_mode")
    return Lager(
        version=_version(m),
        sync_mode=sync if isinstance(sync, bool) else None,
        event_queue=number(m.get("event_queue")),
        error_logger_hwm=number(m.get("error_logger_hwm")),
    )


# --------------------------------------------------------------------------- startup, env, code


class StartupFiles(NamedTuple):
    """``startup_files``: boot/config files that would not parse."""

    checked: float | None = None
    #: (file, reason) of each
    errors: tuple[tuple[str, str], ...] = ()


def decode_startup_files(term: object) -> StartupFiles:
    m = _map(term, "startup_files")
    return StartupFiles(
        checked=number(m.get("checked")),
        errors=tuple(
            (text(e.get("file")), text(e.get("reason"), 300))
            for e in map(mapping, _entries(m.get("errors")))
            if e is not None
        ),
    )


class EnvValue(NamedTuple):
    """One application env value as the node printed it, with its hash."""

    hash: int | None
    text: str


def decode_env(term: object) -> Mapping[tuple[str, str], EnvValue | None]:
    """``env``: ``{{App, Key}: #{hash, text} | undefined}``; None for unset."""
    if not isinstance(term, dict):  # keys are {App, Key} tuples, not atoms
        raise Malformed("env is not a map")
    out: dict[tuple[str, str], EnvValue | None] = {}
    for key, value in term.items():
        if not isinstance(key, tuple) or len(key) != 2:
            continue
        v = mapping(value)
        h = v.get("hash") if v is not None else None
        out[(text(key[0]), text(key[1]))] = (
            None if v is None else EnvValue(h if type(h) is int else None, text(v.get("text"), 300))
        )
    return out


def decode_modules(term: object) -> Mapping[str, str]:
    """``modules``: the md5 of every loaded module.  The md5 texts are
    interned: nodes running the same release share them (about 15 KB a node)."""
    m = _map(term, "modules")
    return {text(k): _interned(text(v)) for k, v in m.items()}


def _interned(s: str) -> str:
    return sys.intern(s) if type(s) is str else s  # an atom (a str subclass) is shared already


def decode_dist_nodes(term: object) -> tuple[str, ...]:
    if type(term) is not list:
        raise Malformed("dist_nodes is not a list")
    return tuple(text(p) for p in term)


# --------------------------------------------------------------------------- events


class CodeChange(NamedTuple):
    """A module loaded, reloaded, purged or deleted since the previous collect."""

    #: module_loaded | module_reloaded | module_purged | module_deleted
    type: str
    module: str
    md5: str | None = None


class ConfigChange(NamedTuple):
    """An application env key set, changed or unset (values printed; None: unset)."""

    app: str
    key: str
    old: str | None
    new: str | None


class EventSection(NamedTuple):
    """``code_events`` / ``config_events``: the changes since this sidecar's
    previous collect.  ``baseline`` (the first collect, or not attached) has
    none to report; ``truncated`` counts changes the node left out."""

    baseline: bool
    events: tuple[Any, ...] = ()
    truncated: int = 0


_CODE_TYPES: Final = frozenset(
    {"module_loaded", "module_reloaded", "module_purged", "module_deleted"}
)


def _short(value: object) -> str:
    printed = shown(value, 201)
    return printed if len(printed) <= 200 else printed[:197] + "..."


def _event_section(term: object, name: str) -> tuple[Mapping[str, object], list[Any]] | None:
    m = mapping(term)
    if m is None or m.get("baseline") is not False:  # not_attached: nothing to report
        return None
    events = m.get("events")
    if type(events) is not list:
        raise Malformed(f"{name}.events is not a list: {_short(events)}")
    return m, events[:MAX_ENTRIES]


#: the most changes a section reports as left out (a bignum is "very many")
_MAX_TRUNCATED: Final = 2**63 - 1


def _truncated(m: Mapping[str, object]) -> int:
    t = m.get("truncated")
    return min(t, _MAX_TRUNCATED) if isinstance(t, int) and not isinstance(t, bool) and t > 0 else 0


def decode_code_events(term: object) -> EventSection:
    found = _event_section(term, "code_events")
    if found is None:
        return EventSection(baseline=True)
    m, events = found
    out: list[CodeChange] = []
    for ev in events:
        e = mapping(ev)
        if e is None:
            raise Malformed(f"code event is not a map: {_short(ev)}")
        kind, module = e.get("type"), e.get("module")
        if not isinstance(kind, Atom) or kind not in _CODE_TYPES or not isinstance(module, Atom):
            raise Malformed(f"bad code event: {_short(ev)}")
        md5 = e.get("md5")
        out.append(
            CodeChange(
                str(kind),
                str(module),
                md5[:MAX_TEXT].decode("ascii", "replace") if type(md5) is bytes else None,
            )
        )
    return EventSection(False, tuple(out), _truncated(m))


def _env_text(value: object) -> str | None:
    if value is None or value == "undefined":
        return None
    return text(value) if isinstance(value, bytes | str | Pid) else shown(value)


def decode_config_events(term: object) -> EventSection:
    found = _event_section(term, "config_events")
    if found is None:
        return EventSection(baseline=True)
    m, events = found
    out: list[ConfigChange] = []
    for ev in events:
        e = mapping(ev)
        if e is None or e.get("type") != "config_changed":
            raise Malformed(f"bad config event: {_short(ev)}")
        app, key = e.get("app"), e.get("key")
        if not isinstance(app, Atom):
            raise Malformed(f"bad config event: {_short(ev)}")
        key_text = str(key) if isinstance(key, Atom) else text(key) or _short(key)
        out.append(
            ConfigChange(str(app), key_text, _env_text(e.get("old")), _env_text(e.get("new")))
        )
    return EventSection(False, tuple(out), _truncated(m))
