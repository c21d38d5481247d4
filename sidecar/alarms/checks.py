"""The built-in checks: node checks on each snapshot, family checks across nodes.

All inputs are what the agents already sent in the per-tick snapshot (no
extra calls); the few costlier inputs (module md5s, startup files) are asked
for every few ticks through :meth:`AlarmChecker.collect_options`.  A check
whose data is missing is not evaluated, so its alarm is neither raised nor
cleared by the gap.
"""

from __future__ import annotations

import fnmatch
import itertools
import re
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sidecar.model import (
    Alarms,
    DiskView,
    EnvValue,
    MemoryView,
    NodeSnapshot,
    NodeState,
    NodeStatus,
    OsMon,
    ProcessEntry,
    RabbitCluster,
    RabbitDisk,
    RabbitMemory,
    RabbitMQ,
    RanchListener,
    SaslAlarm,
    SectionError,
)
from sidecar.redact import redact_named

from .catalogue import AlarmSettings, GlobalParam, MiB, resolve
from .engine import AlarmEngine, Finding, graded
from .model import Severity

#: states that are not down: agent_conflict is up, with another beamside's agent
#: (a tuple: ``in`` compares by identity first, an enum's hash is Python code)
_NOT_DOWN = (NodeState.UP, NodeState.CONNECTING, NodeState.AGENT_CONFLICT)
#: the family-wide alarms (source ``family:<name>``)
_FAMILY_ALARMS = (
    "different_module_versions",
    "different_application_versions",
    "global_config_missing",
    "global_config_inconsistent",
    "time_zone_mismatch",
    "clock_skew",
)
_SASL_NAME = re.compile(r"^\{?'?([a-z][A-Za-z0-9_@]*)")
MAX_INFO_ITEMS = 20


@dataclass
class _NodeHistory:
    binary: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=512))
    counters: dict[str, tuple[float, float]] = field(default_factory=dict)
    uptime_ms: float | None = None
    peers_seen: set[str] = field(default_factory=set)
    forwarded: set[str] = field(default_factory=set)
    ticks: int = 0
    code_state: tuple[float | None, float | None] | None = None
    code_changed: bool = False
    #: pid -> (since, its queue then, its queue at the last collect): the
    #: processes of the top message queues whose queue grew at every collect
    growing: dict[str, tuple[float, float, float]] = field(default_factory=dict)


class _Md5Map:
    """One module md5 map, shared by every node whose map is equal to it."""

    __slots__ = ("key", "modules", "rev", "users")

    def __init__(self, modules: Mapping[str, str], rev: int, key: int) -> None:
        self.modules = modules
        self.rev = rev  # unique: equal revisions, equal maps
        self.key = key  # its bucket in AlarmChecker._md5_maps
        self.users = 0  # nodes holding it


@dataclass(slots=True)
class _Inputs:
    """What the family checks read of one node, digested when its snapshot
    arrives.  A ``*_rev`` moves (to a number never used before) only when its
    content changes, so equal revisions mean equal inputs."""

    node: str
    snap: NodeSnapshot | None = None  # the snapshot the fields below were read from
    md5: _Md5Map | None = None
    env: Mapping[tuple[str, str], EnvValue | None] | None = None
    env_rev: int = 0
    apps: Mapping[str, str] | None = None
    apps_rev: int = 0
    peers: frozenset[str] | None = None
    peers_rev: int = 0
    utc_offset: float | None = None
    skew: float | None = None  # node clock minus ours (s), of the latest snapshot
    # dist_link_down: the result and what it was computed from
    dist_key: tuple[object, ...] | None = None
    dist_result: dict[str, Finding | None] = field(default_factory=dict)


@dataclass(slots=True)
class _FamilyCache:
    """One family's members and its checks' last results with their inputs."""

    names: tuple[str, ...] = ()
    names_rev: int = 0
    results: dict[str, tuple[tuple[object, ...], dict[str, Finding | None]]] = field(
        default_factory=dict
    )


class AlarmChecker:
    def __init__(
        self,
        engine: AlarmEngine,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        global_params: Sequence[GlobalParam] = (),
        *,
        interval: float = 15.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.settings: dict[str, AlarmSettings] = resolve(overrides or {})
        self.global_params = tuple(global_params)
        self.interval = interval
        self._clock = clock
        self._history: dict[str, _NodeHistory] = {}
        self._first_seen: dict[tuple[str, str], float] = {}
        self._last_trigger: dict[tuple[str, str], tuple[float, Finding]] = {}
        # Costlier inputs, asked for every so many ticks (the alarms' ``window``)
        # and whenever the node's code changed (modules loaded or old code).
        self._md5_every = self._ticks(self.settings["different_module_versions"].window)
        self._startup_every = self._ticks(self.settings["corrupt_startup_file"].window)
        # The family checks' inputs per node and results per family (see on_family).
        self._revs = itertools.count(1)
        self._inputs: dict[str, _Inputs] = {}
        self._md5_maps: dict[int, list[_Md5Map]] = {}
        self._families: dict[str, _FamilyCache] = {}
        #: how many times each family check was computed (not taken from its cache)
        self.recomputed: Counter[str] = Counter()

    def _ticks(self, period: float) -> int:
        return max(1, round(period / self.interval))

    # ------------------------------------------------------------ plumbing

    def collect_options(self, node: str, family: str) -> dict[str, Any]:
        """Extra agent options for ``node``'s next collect."""
        history = self._history.setdefault(node, _NodeHistory())
        tick = history.ticks
        opts: dict[str, Any] = {}
        if tick % self._md5_every == 0 or history.code_changed:
            opts["modules_md5"] = True
        if tick % self._startup_every == 0:
            opts["startup_files"] = True
        params = self._params_for(family)
        if params:
            opts["env_keys"] = [(p.app, p.key) for p in params]
        disk = self._enabled("disk_almost_full")
        if disk is not None and disk.window > 0:
            # How often the agent's disk view runs df (when disksup does not run).
            opts["disk_view_interval_ms"] = round(disk.window * 1000)
        return opts

    def _params_for(self, family: str) -> list[GlobalParam]:
        return [p for p in self.global_params if p.family in (None, family)]

    def mark_global(self, param: GlobalParam) -> None:
        """Mark a parameter global at run time (the Config API's MarkGlobal)."""
        if param not in self.global_params:
            self.global_params = (*self.global_params, param)

    def forget(self, node: str) -> None:
        self._history.pop(node, None)
        inputs = self._inputs.pop(node, None)
        if inputs is not None and inputs.md5 is not None:
            self._release_md5(inputs.md5)
        self.engine.clear_source(node)

    def _enabled(self, alarm: str) -> AlarmSettings | None:
        s = self.settings.get(alarm)
        return s if s is not None and s.enabled else None

    def _delayed(self, source: str, finding: Finding, s: AlarmSettings, now: float) -> bool:
        """True while a condition not yet raised waits out its ``delay``."""
        if s.delay <= 0 or self.engine.current_severity(finding.alarm, source) is not None:
            return False
        first = self._first_seen.setdefault((finding.alarm, source), now)
        return now - first < s.delay

    def _report(
        self, source: str, node: str, family: str, results: Mapping[str, Finding | None]
    ) -> None:
        now = self._clock()
        findings = []
        for alarm, finding in results.items():
            s = self.settings[alarm] if alarm in self.settings else self.settings["sasl_alarm"]
            if finding is None:
                if self._first_seen:
                    self._first_seen.pop((alarm, source), None)
                if s.hold > 0:
                    held = self._last_trigger.get((alarm, source))
                    if held is not None and now - held[0] < s.hold:
                        findings.append(held[1])
                continue
            if s.hold > 0:
                self._last_trigger[(alarm, source)] = (now, finding)
            if not self._delayed(source, finding, s, now):
                findings.append(finding)
        self.engine.update(
            source, node=node, family=family, evaluated=results.keys(), findings=findings
        )

    def _graded(
        self,
        alarm: str,
        source: str,
        value: float | None,
        cause: Callable[[float], str],
        info: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
    ) -> dict[str, Finding | None]:
        """``info`` may be a function: built only when the alarm is raised."""
        s = self._enabled(alarm)
        if s is None or value is None:
            return {}
        current = self.engine.current_severity(alarm, source)
        severity = graded(value, s.levels, current, s.clear_ratio)
        if severity is None:
            return {alarm: None}
        details = info() if callable(info) else info
        return {alarm: Finding(alarm, severity, cause(value), s.spec.repair, details or {})}

    def _flag(
        self, alarm: str, raised: bool | None, cause: str, info: dict[str, Any] | None = None
    ) -> dict[str, Finding | None]:
        s = self._enabled(alarm)
        if s is None or raised is None:
            return {}
        if not raised:
            return {alarm: None}
        severity = max(sev for sev, _ in s.levels)
        return {alarm: Finding(alarm, severity, cause, s.spec.repair, info or {})}

    # ------------------------------------------------------------ node checks

    def on_snapshot(self, snap: NodeSnapshot) -> None:
        node = snap.node
        history = self._history.setdefault(node, _NodeHistory())
        history.ticks += 1
        r: dict[str, Finding | None] = {}

        def ratio(alarm: str, n: float | None, d: float | None, what: str) -> None:
            if n is None or not d:
                return
            r.update(
                self._graded(alarm, node, n / d, lambda v: f"{what}: {n:.0f} of {d:.0f} ({v:.0%})")
            )

        limits = snap.limits
        if limits is not None:
            code_state = (limits.modules_loaded, limits.modules_old_code)
            history.code_changed = (
                history.code_state is not None and code_state != history.code_state
            )
            history.code_state = code_state
            ratio("process_limit", limits.process_count, limits.process_limit, "processes")
            ratio("port_limit", limits.port_count, limits.port_limit, "ports")
            ratio("atom_limit", limits.atom_count, limits.atom_limit, "atoms")
            ratio("ets_limit", limits.ets_count, limits.ets_limit, "ETS tables")
            ratio("open_file_limit", limits.open_fds, limits.max_fds, "file descriptors")
            ratio(
                "open_socket_limit",
                limits.socket_count,
                limits.max_fds,
                "sockets against the fd limit",
            )
            r.update(
                self._graded(
                    "module_limit",
                    node,
                    limits.modules_loaded,
                    lambda v: f"{v:.0f} modules loaded",
                )
            )
            r.update(
                self._graded(
                    "dist_link_limit",
                    node,
                    limits.dist_links,
                    lambda v: f"{v:.0f} distribution links",
                )
            )

        procs = snap.processes
        if procs is not None:
            self._queue_growth(snap.taken_at, procs.top_message_queue, node, history, r)
            r.update(
                self._graded(
                    "process_message_queue",
                    node,
                    procs.mq_max,
                    lambda v: f"a process has {v:.0f} messages in its queue",
                    lambda: {"top_offenders": [p.summary() for p in procs.top_message_queue[:5]]},
                )
            )
            r.update(
                self._graded(
                    "process_memory_high_watermark",
                    node,
                    procs.max_memory,
                    lambda v: f"a process uses {v / 2**20:.0f} MiB",
                    lambda: {"top_processes": [p.summary() for p in procs.top_memory[:5]]},
                )
            )

        ranch = snap.ranch
        if ranch is not None:
            usage = [
                (ref, u)
                for ref, x in ranch.listeners
                if isinstance(x, RanchListener) and (u := x.usage) is not None
            ]
            if usage:
                ref, top = max(usage, key=lambda item: item[1])
                r.update(
                    self._graded(
                        "ranch_connection_limit",
                        node,
                        top,
                        lambda v: f"ranch listener {ref} has {v:.0%} of its max_connections",
                        lambda: {"usage": {k: round(u, 3) for k, u in usage if u >= 0.5}},
                    )
                )

        pools = snap.poolboy
        if pools is not None:
            waiting = pools.waiting()
            r.update(
                self._graded(
                    "poolboy_waiters",
                    node,
                    max((n for _, n in waiting), default=0.0),
                    lambda v: (
                        f"{v:.0f} callers wait for a worker of poolboy pool "
                        f"{max(waiting, key=lambda w: w[1])[0]}"
                    ),
                    lambda: {"waiting": dict(waiting)},
                )
            )

        if snap.rabbitmq is not None:
            self._rabbitmq_checks(snap.rabbitmq, node, r)
        self._os_checks(snap, r)
        self._growth_and_rates(snap, history, r)
        self._node_events(snap, history, r)

        self._report(node, node, snap.family, r)
        self._ingest(snap, on_arrival=True)

    def _queue_growth(
        self,
        now: float,
        top: Sequence[ProcessEntry],
        node: str,
        history: _NodeHistory,
        r: dict[str, Finding | None],
    ) -> None:
        """``process_message_queue_growth``: a process among the longest queues
        whose queue grew at every collect for at least ``window``, graded on
        its rate (messages/s) over that span; the fastest is named."""
        s = self._enabled("process_message_queue_growth")
        if s is None:
            return
        before, growing = history.growing, {}
        for p in top:
            length = p.message_queue_len
            if length is None:
                continue
            since, first, last = before.get(p.pid, (now, length, length))
            growing[p.pid] = (since, first, length) if length > last else (now, length, length)
        history.growing = growing
        rates = sorted(
            (
                ((length - first) / (now - since), now - since, p)
                for p in top
                if (entry := growing.get(p.pid)) is not None
                for since, first, length in [entry]
                if now - since >= s.window and length > first
            ),
            key=lambda x: -x[0],
        )
        if not rates:
            r.update(self._graded("process_message_queue_growth", node, 0.0, lambda v: ""))
            return
        rate, span, fastest = rates[0]
        r.update(
            self._graded(
                "process_message_queue_growth",
                node,
                rate,
                lambda v: (
                    f"the queue of {fastest.label} grew at every collect for {span:.0f}s, "
                    f"{v:.1f} messages/s, to {fastest.message_queue_len:.0f}"
                ),
                lambda: {
                    "growing": [
                        {**p.summary(), "messages_per_s": round(v, 2), "for_s": round(t)}
                        for v, t, p in rates[:5]
                    ]
                },
            )
        )

    def _rabbitmq_checks(self, s: RabbitMQ, node: str, r: dict[str, Finding | None]) -> None:
        """RabbitMQ's own view: its resource alarms (kept by rabbit_alarm, apart
        from SASL's alarm_handler, so never among the forwarded ones), the
        partitions its node monitor sees, and whether it runs."""
        if s.alarms is not None and not isinstance(s.alarms, SectionError):
            set_now = s.alarms
            causes = [_rabbit_alarm_cause(x, s) for x in set_now]
            info: dict[str, Any] = {"resources": list(set_now)}
            if isinstance(s.memory, RabbitMemory):
                info["memory"] = {"used_bytes": s.memory.used, "limit_bytes": s.memory.limit}
            if isinstance(s.disk, RabbitDisk):
                info["disk"] = {"free_bytes": s.disk.free, "limit_bytes": s.disk.limit}
            r.update(
                self._flag(
                    "rabbitmq_resource_alarm",
                    bool(set_now),
                    "; ".join(causes) + ": publishers are blocked",
                    info,
                )
            )
        if isinstance(s.cluster, RabbitCluster):
            parts = s.cluster.partitions
            r.update(
                self._flag(
                    "rabbitmq_partition",
                    bool(parts),
                    f"partitioned from {len(parts)} node(s): {', '.join(parts[:5])}",
                    {"partitioned_from": list(parts[:MAX_INFO_ITEMS])},
                )
            )
        running = s.running if isinstance(s.running, bool) else None
        down = (
            s.vhosts_down
            if s.vhosts_down is not None and not isinstance(s.vhosts_down, SectionError)
            else None
        )
        if running is not None or down is not None:
            problems = ([] if running is not False else ["RabbitMQ is not running"]) + (
                [f"virtual host(s) down: {', '.join(down[:5])}"] if down else []
            )
            r.update(
                self._flag(
                    "rabbitmq_unhealthy",
                    bool(problems),
                    "; ".join(problems),
                    {"running": running, "vhosts_down": list((down or ())[:MAX_INFO_ITEMS])},
                )
            )

    def _os_checks(self, snap: NodeSnapshot, r: dict[str, Finding | None]) -> None:
        os_mon = snap.os_mon or OsMon()
        if snap.os_mon is not None:
            cpus = (snap.system.logical_processors if snap.system else None) or 1.0
            cpu = os_mon.cpu
            load1 = cpu.load1 if cpu is not None and not isinstance(cpu, SectionError) else None
            r.update(
                self._graded(
                    "os_cpu_load",
                    snap.node,
                    None if load1 is None else load1 / cpus,
                    lambda v: f"load average {v:.2f} per core",
                )
            )
        # os_mon's memsup/disksup set their own alarms in SASL's alarm_handler,
        # forwarded as they are: when they run and SASL's alarms are known, that
        # is the source.  When they do not run (RabbitMQ, ejabberd, OTP without
        # os_mon), the node's own view (alarms.memory_view, alarms.disk_view).
        alarms = snap.alarms or Alarms()
        forwarded = alarms.sasl_alarms is not None
        self._memory_check(alarms, os_mon, forwarded, snap.node, r)
        self._disk_check(alarms, os_mon, forwarded, snap.node, r)

    def _memory_check(
        self,
        alarms: Alarms,
        os_mon: OsMon,
        forwarded: bool,
        node: str,
        r: dict[str, Finding | None],
    ) -> None:
        memsup = os_mon.memory
        system = None if memsup is None or isinstance(memsup, SectionError) else memsup.system
        if system is not None:
            if forwarded:
                return
            total = system.get("total_memory")
            avail = system.get("available_memory")
            if not total or avail is None:
                return
            sources = [("os_mon", "host memory", total - avail, total)]
        else:
            if not isinstance(alarms.memory_view, MemoryView):
                return
            sources = _memory_sources(alarms.memory_view)
        if not sources:
            return
        # The worse of the node's cgroup and its host: either can run out first.
        source, what, used, limit = max(sources, key=lambda s: s[2] / s[3])
        info: dict[str, Any] = {"source": source, "used_bytes": used, "limit_bytes": limit}
        if len(sources) > 1:
            info["sources"] = {s[0]: round(s[2] / s[3], 4) for s in sources}
        r.update(
            self._graded(
                "system_memory_high_watermark",
                node,
                used / limit,
                lambda v: (
                    f"{what} {v:.0%} used: {used / 2**20:.0f} MiB of {limit / 2**20:.0f} MiB "
                    f"({source})"
                ),
                info,
            )
        )

    def _disk_check(
        self,
        alarms: Alarms,
        os_mon: OsMon,
        forwarded: bool,
        node: str,
        r: dict[str, Finding | None],
    ) -> None:
        disksup = os_mon.disk
        disks = None if disksup is None or isinstance(disksup, SectionError) else disksup.disks
        if disks is not None:
            if forwarded:
                return
            worst = max(disks, key=lambda d: d.capacity or 0, default=None)
            if worst is None:
                return
            info: dict[str, Any] = {"source": "os_mon", "mount": worst.mount}
            capacity = worst.capacity
            where = worst.mount
        else:
            view = alarms.disk_view
            if not isinstance(view, DiskView):
                return
            info = {
                "source": view.source,
                "mount": view.mount,
                "path": view.path,
                "dir": view.dir_source,
                "available_bytes": view.available_bytes,
                "total_bytes": view.total_bytes,
            }
            capacity = view.capacity
            where = f"{view.mount} (the file system of {view.path})"
        r.update(
            self._graded(
                "disk_almost_full",
                node,
                capacity,
                lambda v: f"{where} is {v:.0f}% full ({info['source']})",
                info,
            )
        )

    def _growth_and_rates(
        self, snap: NodeSnapshot, history: _NodeHistory, r: dict[str, Finding | None]
    ) -> None:
        node, now = snap.node, snap.taken_at
        binary = snap.memory.get("binary") if snap.memory is not None else None
        s = self._enabled("binary_memory_growth")
        if binary is not None and s is not None:
            history.binary.append((now, binary))
            while history.binary and now - history.binary[0][0] > s.window:
                history.binary.popleft()
            span = now - history.binary[0][0]
            low = min(v for _, v in history.binary)
            if span >= s.window / 2 and low > 0:
                growth = binary / low if binary >= 64 * 2**20 else 0.0
                r.update(
                    self._graded(
                        "binary_memory_growth",
                        node,
                        growth,
                        lambda v: (
                            f"binary memory grew {v:.1f}x in {span / 60:.0f} min "
                            f"to {binary / 2**20:.0f} MiB"
                        ),
                    )
                )
        sysmon = snap.sysmon
        if sysmon is None:
            return
        for alarm, counter, count in (
            ("long_gc_storm", "long_gc", sysmon.long_gc),
            ("long_schedule_storm", "long_schedule", sysmon.long_schedule),
            ("busy_dist_port", "busy_dist_port", sysmon.busy_dist_port),
        ):
            if count is None:
                continue
            previous = history.counters.get(counter)
            history.counters[counter] = (now, count)
            if previous is None or now <= previous[0] or count < previous[1]:
                continue
            per_min = (count - previous[1]) / (now - previous[0]) * 60
            r.update(self._graded(alarm, node, per_min, _per_minute(counter)))

    def _node_events(
        self, snap: NodeSnapshot, history: _NodeHistory, r: dict[str, Finding | None]
    ) -> None:
        node = snap.node
        alarms = snap.alarms or Alarms()
        r.update(self._old_code(alarms.old_code_ages_ms, node))
        r.update(
            self._graded(
                "shell_history_size",
                node,
                alarms.shell_history_bytes,
                lambda v: f"shell history uses {v / 2**20:.1f} MiB",
            )
        )
        startup = snap.startup_files
        if startup is not None:
            errors = [{"file": file, "reason": reason} for file, reason in startup.errors]
            files = ", ".join(e["file"] for e in errors[:3])
            r.update(
                self._flag(
                    "corrupt_startup_file",
                    bool(errors),
                    f"startup file(s) would not parse: {files}",
                    {"errors": errors[:MAX_INFO_ITEMS]},
                )
            )
        if alarms.mnesia is not None:
            for alarm, counter in (
                ("mnesia_inconsistent_database", "inconsistent_database"),
                ("mnesia_overload", "overload"),
            ):
                count = alarms.mnesia.get(counter)
                previous = history.counters.get(alarm)
                if not isinstance(count, float):
                    continue
                history.counters[alarm] = (0.0, count)
                fired = previous is not None and count > previous[1]
                last = alarms.mnesia.get(f"last_{counter}")
                r.update(
                    self._flag(
                        alarm,
                        fired,
                        f"mnesia reported {alarm.removeprefix('mnesia_')}",
                        {"last": str(last)} if last else {},
                    )
                )
        uptime = snap.uptime_ms
        if uptime is not None:
            restarted = history.uptime_ms is not None and uptime < history.uptime_ms
            history.uptime_ms = uptime
            r.update(
                self._flag("node_restarted", restarted, f"uptime went back to {uptime / 1000:.0f}s")
            )
        if alarms.sasl_alarms is not None and self._enabled("sasl_alarm") is not None:
            self._forward_sasl(node, alarms.sasl_alarms, history, r)

    def _old_code(self, ages: Mapping[str, float] | None, node: str) -> dict[str, Finding | None]:
        """``old_code``: modules whose old code has stayed at least ``age``, the
        ``ignore`` patterns (code the applications regenerate) left out.  The
        ages come from the agent (``ages_ms``, tracked on the node from the
        first collect that saw each module's old code); without them (not
        attached) the alarm is not evaluated."""
        s = self._enabled("old_code")
        if s is None or ages is None:
            return {}
        aged: list[tuple[float, str]] = []  # (age in s, module)
        for name, ms in ages.items():
            if ms / 1000 >= s.age and not _ignored(name, s.ignore):
                aged.append((ms / 1000, name))
        aged.sort(key=lambda a: (-a[0], a[1]))  # oldest first
        listed = [name for _, name in aged]
        return self._graded(
            "old_code",
            node,
            float(len(aged)),
            lambda v: (
                f"{v:.0f} module(s) have had old code for more than {_span(s.age)}: "
                f"{', '.join(listed[:5])}"
            ),
            {
                "modules": listed[:MAX_INFO_ITEMS],
                "age_s": {name: round(age) for age, name in aged[:MAX_INFO_ITEMS]},
            },
        )

    def _forward_sasl(
        self,
        node: str,
        alarms: Sequence[SaslAlarm],
        history: _NodeHistory,
        r: dict[str, Finding | None],
    ) -> None:
        s = self.settings["sasl_alarm"]
        severity = max(sev for sev, _ in s.levels)
        grouped: dict[str, list[dict[str, str]]] = {}
        for entry in alarms:
            match = _SASL_NAME.match(entry.id)
            name = entry.name or (match.group(1) if match else "sasl_alarm")
            grouped.setdefault(name, []).append(
                {"id": entry.id[:200], "description": entry.description[:500]}
            )
        for name in history.forwarded - grouped.keys():
            r.setdefault(name, None)
        for name, entries in grouped.items():
            first = entries[0]
            cause = first["description"] or first["id"]
            r[name] = Finding(
                name,
                severity,
                f"set on the node: {cause}",
                s.spec.repair,
                {"alarms": entries[:MAX_INFO_ITEMS]},
            )
        history.forwarded = set(grouped)

    # ------------------------------------------------------------ availability

    def on_statuses(self, statuses: Iterable[NodeStatus]) -> None:
        """``node_down``: a managed node beamside cannot reach (after ``delay``)."""
        for status in statuses:
            # agent_conflict: up, but another (newer) beamside's agent runs there
            down = status.state not in _NOT_DOWN
            cause = f"{status.node} is {status.state.value}: {status.last_error}" if down else ""
            self._report(
                status.node, status.node, status.family, self._flag("node_down", down, cause)
            )

    # ------------------------------------------------------------ family checks
    #
    # Evaluated every second, so proportional to change, not to size: what each
    # family check reads of a node is digested once when its snapshot arrives
    # (:meth:`_ingest`: a revision number that moves only when the content
    # does), and each family's results are kept with the revisions they were
    # computed from.  A tick compares O(nodes) small integers; a module map is
    # walked only when it changed (or a member joined, left or went down).
    # Clock skew depends on when each snapshot was taken: its per-node offset
    # is computed on arrival, the spread over the family each tick (O(nodes)).

    def on_family(
        self, snapshots: Mapping[str, NodeSnapshot], statuses: Iterable[NodeStatus]
    ) -> None:
        up: dict[str, list[_Inputs]] = {}
        for status in statuses:
            snap = snapshots.get(status.node) if status.state is NodeState.UP else None
            inputs = self._inputs.get(status.node)
            if snap is not None:
                if inputs is None or inputs.snap is not snap:
                    inputs = self._ingest(snap)
                up.setdefault(status.family, []).append(inputs)
            elif inputs is not None:
                inputs.snap = None  # the manager dropped it: do not keep it alive
        token = tuple(map(self.settings.get, _FAMILY_ALARMS))
        for family in self._families.keys() - up.keys():
            del self._families[family]  # nothing of it up: its alarms stay as they are
        for family, members in up.items():
            self._on_family(family, members, token)

    def _on_family(self, family: str, members: list[_Inputs], token: tuple[object, ...]) -> None:
        cache = self._families.get(family)
        if cache is None:
            cache = self._families[family] = _FamilyCache()
        names = tuple(m.node for m in members)
        if names != cache.names:
            cache.names, cache.names_rev = names, next(self._revs)
        self._dist_links(family, members, names, cache.names_rev)
        source = f"family:{family}"
        r: dict[str, Finding | None] = {}
        if len(members) >= 2:
            with_md5 = [(m.node, m.md5) for m in members if m.md5 is not None]
            r.update(
                self._cached(
                    cache,
                    "different_module_versions",
                    (names, tuple(c.rev for _, c in with_md5), token),
                    lambda: self._module_versions(with_md5),
                )
            )
            r.update(
                self._cached(
                    cache,
                    "different_application_versions",
                    (names, tuple(m.apps_rev for m in members), token),
                    lambda: self._app_versions(members),
                )
            )
            params = tuple(self._params_for(family))
            r.update(
                self._cached(
                    cache,
                    "global_config",
                    (names, tuple(m.env_rev for m in members), params, token),
                    lambda: self._global_config(params, members),
                )
            )
            r.update(
                self._cached(
                    cache,
                    "time_zone_mismatch",
                    (names, tuple(m.utc_offset for m in members), token),
                    lambda: self._time_zones(members),
                )
            )
            r.update(self._clock_skew(source, members))
        else:
            r.update({a: None for a in _FAMILY_ALARMS if self._enabled(a)})
        self._report(source, "", family, r)

    def _ingest(self, snap: NodeSnapshot, *, on_arrival: bool = False) -> _Inputs:
        """Digest what the family checks read of ``snap``: once per snapshot.

        The module md5s and env values come only from snapshots that went
        through :meth:`on_snapshot` (``on_arrival``) and are kept until the
        next one that has them; the rest comes from the latest snapshot."""
        inputs = self._inputs.get(snap.node)
        if inputs is None:
            inputs = self._inputs[snap.node] = _Inputs(snap.node)
        if on_arrival:
            if snap.modules is not None:
                self._intern_md5(inputs, snap.modules)
            if snap.env is not None and snap.env != inputs.env:
                inputs.env, inputs.env_rev = snap.env, next(self._revs)
        if inputs.snap is snap:
            return inputs
        inputs.snap = snap
        apps = snap.versions.applications if snap.versions is not None else None
        if apps != inputs.apps or inputs.apps_rev == 0:
            inputs.apps, inputs.apps_rev = apps, next(self._revs)
        peers = None if snap.dist_nodes is None else frozenset(snap.dist_nodes)
        if peers != inputs.peers or inputs.peers_rev == 0:
            inputs.peers, inputs.peers_rev = peers, next(self._revs)
        inputs.utc_offset = snap.time.utc_offset_s if snap.time else None
        node_time = snap.system_time_us
        # Node clock minus ours at the middle of the round trip.
        inputs.skew = (
            None if node_time is None else node_time / 1e6 - (snap.taken_at - snap.duration / 2)
        )
        return inputs

    def _intern_md5(self, inputs: _Inputs, modules: Mapping[str, str]) -> None:
        """Share one :class:`_Md5Map` among the nodes whose maps are equal: a
        family's comparison then walks each distinct map once, not each node's."""
        old = inputs.md5
        if old is not None and (old.modules is modules or old.modules == modules):
            return
        key = hash(frozenset(modules.items()))
        bucket = self._md5_maps.setdefault(key, [])
        for shared in bucket:
            if shared.modules == modules:
                break
        else:
            shared = _Md5Map(modules, next(self._revs), key)
            bucket.append(shared)
        shared.users += 1
        inputs.md5 = shared
        if old is not None:
            self._release_md5(old)

    def _release_md5(self, shared: _Md5Map) -> None:
        shared.users -= 1
        if shared.users == 0:
            bucket = self._md5_maps[shared.key]
            bucket.remove(shared)
            if not bucket:
                del self._md5_maps[shared.key]

    def _cached(
        self,
        cache: _FamilyCache,
        check: str,
        key: tuple[object, ...],
        compute: Callable[[], dict[str, Finding | None]],
    ) -> dict[str, Finding | None]:
        """``check``'s result from its inputs' revisions: computed again only
        when ``key`` moved."""
        entry = cache.results.get(check)
        if entry is not None and entry[0] == key:
            return entry[1]
        result = compute()
        self.recomputed[check] += 1
        cache.results[check] = (key, result)
        return result

    def _dist_links(
        self, family: str, members: list[_Inputs], names: tuple[str, ...], names_rev: int
    ) -> None:
        """``dist_link_down`` per node: computed again when the node's links
        or the family's members changed, reported every tick (its ``delay``
        and ``hold`` count time)."""
        settings = self.settings.get("dist_link_down")
        up: frozenset[str] | None = None
        for m in members:
            peers = m.peers
            if peers is None:
                continue
            key = (m.peers_rev, names_rev, settings)
            if m.dist_key != key:
                if up is None:
                    up = frozenset(names)
                history = self._history.setdefault(m.node, _NodeHistory())
                history.peers_seen |= peers & up
                # The members are the nodes up: a peer seen before, up, not linked.
                lost = sorted((history.peers_seen & up) - peers - {m.node})
                m.dist_result = self._flag(
                    "dist_link_down",
                    bool(lost),
                    f"{m.node} has no distribution link to {', '.join(lost[:5])}",
                    {"lost": lost[:MAX_INFO_ITEMS]},
                )
                m.dist_key = key
                self.recomputed["dist_link_down"] += 1
            self._report(m.node, m.node, family, m.dist_result)

    def _module_versions(self, md5s: list[tuple[str, _Md5Map]]) -> dict[str, Finding | None]:
        nodes = dict(md5s)  # one map per node, the last one if listed twice
        if len(nodes) < 2:
            return {}
        distinct = {shared.rev: shared.modules for shared in nodes.values()}
        first: dict[str, str] = {}
        differ: set[str] = set()
        if len(distinct) > 1:  # equal maps cannot differ
            for modules in distinct.values():
                for name, digest in modules.items():
                    seen = first.setdefault(name, digest)
                    if seen != digest and not name.startswith("beamside_"):
                        differ.add(name)
        differing = {
            mod: {
                node: shared.modules[mod] for node, shared in nodes.items() if mod in shared.modules
            }
            for mod in sorted(differ)[:MAX_INFO_ITEMS]
        }
        listed = ", ".join(list(differing)[:5])
        return self._flag(
            "different_module_versions",
            bool(differ),
            f"{len(differ)} module(s) differ across the family: {listed}",
            {"modules": differing},
        )

    def _app_versions(self, members: list[_Inputs]) -> dict[str, Finding | None]:
        apps: dict[str, dict[str, str]] = {}
        known = []
        for m in members:
            running = m.apps
            if running is None:
                continue
            known.append(m.node)
            for app, vsn in running.items():
                apps.setdefault(app, {})[m.node] = vsn
        if len(known) < 2:
            return {}
        differing = {
            app: {n: versions.get(n, "missing") for n in known}
            for app, versions in sorted(apps.items())
            if len(versions) < len(known) or len(set(versions.values())) > 1
        }
        listed = ", ".join(list(differing)[:5])
        return self._flag(
            "different_application_versions",
            bool(differing),
            f"application versions differ across the family: {listed}",
            {"applications": dict(list(differing.items())[:MAX_INFO_ITEMS])},
        )

    def _global_config(
        self, params: Sequence[GlobalParam], members: list[_Inputs]
    ) -> dict[str, Finding | None]:
        if not params:
            return {"global_config_missing": None, "global_config_inconsistent": None}
        envs = {m.node: m.env for m in members if m.env is not None}
        if len(envs) < 2:
            return {}
        missing: dict[str, list[str]] = {}
        inconsistent: dict[str, dict[str, str]] = {}
        for param in params:
            values = {node: env.get((param.app, param.key)) for node, env in envs.items()}
            set_on = {n: v for n, v in values.items() if v is not None}
            if set_on and len(set_on) < len(values):
                missing[str(param)] = sorted(n for n, v in values.items() if v is None)
            if len({v.hash for v in set_on.values()}) > 1:
                # The values go to Alertmanager and Loki: redacted (a key
                # naming a secret shows its marker, secrets inside a value theirs).
                inconsistent[str(param)] = {
                    n: redact_named(param.key, v.text) for n, v in set_on.items()
                }
        return {
            **self._flag(
                "global_config_missing",
                bool(missing),
                f"global parameter(s) unset on some nodes: {', '.join(missing)}",
                {"missing_on": missing},
            ),
            **self._flag(
                "global_config_inconsistent",
                bool(inconsistent),
                f"global parameter(s) differ: {', '.join(inconsistent)}",
                {"values": inconsistent},
            ),
        }

    def _time_zones(self, members: list[_Inputs]) -> dict[str, Finding | None]:
        known_tz = {m.node: m.utc_offset for m in members if m.utc_offset is not None}
        if len(known_tz) < 2:
            return {}
        zones = sorted(set(known_tz.values()))
        return self._flag(
            "time_zone_mismatch",
            len(zones) > 1,
            f"nodes run with UTC offsets {', '.join(f'{z:+.0f}s' for z in zones)}",
            {"utc_offset_s": known_tz},
        )

    def _clock_skew(self, source: str, members: list[_Inputs]) -> dict[str, Finding | None]:
        """Every tick (the offsets move with each snapshot): O(nodes), and the
        details are built only when the alarm holds."""
        skews = [(m.node, m.skew) for m in members if m.skew is not None]
        if len(skews) < 2:
            return {}
        values = [s for _, s in skews]
        return self._graded(
            "clock_skew",
            source,
            max(values) - min(values),
            lambda v: f"node clocks differ by {v:.2f}s",
            lambda: {"offsets_s": {n: round(s, 3) for n, s in skews}},
        )


def _memory_sources(view: MemoryView) -> list[tuple[str, str, float, float]]:
    """(source, what, used, limit) of an agent memory_view: its own source (the
    node's cgroup when limited below the host, else /proc/meminfo) and, when
    that is the cgroup, the host's too."""
    sources = []
    limit, used, source = view.limit_bytes, view.used_bytes, view.source
    if limit and used is not None:
        what = "memory of the node's cgroup" if source.startswith("cgroup") else "host memory"
        sources.append((source, what, used, limit))
    total, avail = view.total_bytes, view.available_bytes
    if total and avail is not None and (not sources or source != "meminfo"):
        sources.append(("meminfo", "host memory", total - avail, total))
    return sources


def _ignored(module: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(module, p) for p in patterns)


def _span(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:.0f} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:g} s"


def _per_minute(counter: str) -> Callable[[float], str]:
    return lambda v: f"{v:.1f} {counter} events per minute"


__all__ = ["AlarmChecker", "Severity"]


def _rabbit_alarm_cause(resource: str, s: RabbitMQ) -> str:
    """One of RabbitMQ's resource alarms, with the figures it was set on."""
    mem, disk = s.memory, s.disk
    if resource == "memory" and isinstance(mem, RabbitMemory) and mem.used and mem.limit:
        return (
            f"RabbitMQ's memory alarm: {mem.used / MiB:.0f} MiB used, "
            f"high watermark {mem.limit / MiB:.0f} MiB"
        )
    if resource == "disk" and isinstance(disk, RabbitDisk) and disk.free is not None and disk.limit:
        return (
            f"RabbitMQ's disk alarm: {disk.free / MiB:.0f} MiB free, "
            f"limit {disk.limit / MiB:.0f} MiB"
        )
    return f"RabbitMQ's {resource.replace('_', ' ')} alarm"
