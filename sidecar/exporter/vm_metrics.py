"""Prometheus metric families from node snapshots (``beamside_agent:collect/1``).

:func:`vm_metric_families` is a pure function of the snapshots: no network,
no clock, no global registry.  Every series carries ``node``, ``family`` and
``cluster`` first, then its own labels.  Names follow prometheus.erl where
that project has the metric (``erlang_vm_statistics_*``, ``erlang_vm_dist_*``,
``erlang_vm_msacc_*``, ``erlang_mnesia_*``) and SPEC §3 (``erlang_vm_memory_bytes``,
``erlang_vm_processes``, ``erlang_vm_atoms`` ...); other VM metrics are under
``erlang_vm_``, os_mon under ``erlang_os_mon_`` and what the agent says about
itself under ``beamside_agent_``.  Units are in the names (``_bytes``,
``_seconds``, ``_ratio``; ``_words`` where the VM counts in words), counters
end in ``_total``.

It reads the typed snapshot (:mod:`sidecar.model`), never the raw reply: a
section the node answered with ``{error, Reason}`` or sent misshapen is in
``snapshot.errors`` and yields no series but a
``beamside_agent_section_error{section}`` sample; the other sections of the
same snapshot still render.  The sections only the exporter reads come as
the maps the node sent (``snapshot.exporter_trees()``, ``snapshot.plugins``), read here
with the rules of :mod:`sidecar.agents.terms` and never trusted to be
well-formed (keys of mixed types, any value where a number is expected).

The section renderers write to a :class:`NodeWriter`: here one that builds
prometheus_client samples (:func:`vm_metric_families`, the reference), in
:mod:`sidecar.exporter.exposition` one that writes exposition text cached per
snapshot (what /metrics serves).  The writer applies the plugin series
budget: with ``series_budget`` set, the plugin sections (``snapshot.plugins``:
mnesia, os_mon, application plugins) of a node get at most that many
samples, the rest are dropped and counted by family; core VM sections and
``beamside_agent_section_error`` are never dropped.

Compiled with mypyc together with :mod:`~sidecar.exporter.exposition` where
``pip install`` can (:mod:`sidecar.compiled`): a subclass of
:class:`NodeWriter` must live in one of those two modules.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

from sidecar.agents.terms import is_error, key_text, number, text
from sidecar.model import NodeSnapshot, SectionError
from sidecar.model.sections import (
    DiskView,
    Ejabberd,
    Folsom,
    Lager,
    MemoryView,
    OsMonCpu,
    OsMonDisk,
    OsMonMemory,
    Poolboy,
    RabbitCluster,
    RabbitDisk,
    RabbitMemory,
    RabbitMessages,
    RabbitMQ,
    RabbitTotals,
    Ranch,
    Yaws,
)

_SOURCE_SHA256: Final[str | None] = None
"""The SHA-256 of the source a compiled build was made from (setup.py fills
it in the copy it compiles; None here): see :mod:`sidecar.compiled`."""

__all__ = ["BASE_LABELS", "SECTION_ERROR", "NodeWriter", "render_node", "vm_metric_families"]

log = logging.getLogger(__name__)

BASE_LABELS: Final = ("node", "family", "cluster")
#: one sample per section a node failed; a plugin's is never dropped by the budget
SECTION_ERROR: Final = "beamside_agent_section_error"

# dist controller socket stats (inet:getstat) -> prometheus.erl names
_DIST_SOCKET: Final = (
    ("recv_oct", "erlang_vm_dist_recv_bytes", "Bytes received by the distribution socket."),
    ("recv_cnt", "erlang_vm_dist_recv_cnt", "Packets received by the distribution socket."),
    ("recv_max", "erlang_vm_dist_recv_max_bytes", "Largest packet received, in bytes."),
    ("recv_avg", "erlang_vm_dist_recv_avg_bytes", "Average packet size received, in bytes."),
    ("recv_dvi", "erlang_vm_dist_recv_dvi_bytes", "Average deviation of received packet size."),
    ("send_oct", "erlang_vm_dist_send_bytes", "Bytes sent by the distribution socket."),
    ("send_cnt", "erlang_vm_dist_send_cnt", "Packets sent by the distribution socket."),
    ("send_max", "erlang_vm_dist_send_max_bytes", "Largest packet sent, in bytes."),
    ("send_avg", "erlang_vm_dist_send_avg_bytes", "Average packet size sent, in bytes."),
    ("send_pend", "erlang_vm_dist_send_pend_bytes", "Bytes waiting to be sent by the socket."),
)
_DIST_PORT: Final = (
    ("input", "erlang_vm_dist_port_input_bytes", "Bytes read from the distribution port."),
    ("output", "erlang_vm_dist_port_output_bytes", "Bytes written to the distribution port."),
    ("memory", "erlang_vm_dist_port_memory_bytes", "Memory of the distribution port."),
    ("queue_size", "erlang_vm_dist_port_queue_size_bytes", "Bytes queued in the dist port."),
)
_DIST_PROC: Final = (
    ("memory", "erlang_vm_dist_proc_memory_bytes", "Memory of the distribution controller."),
    ("heap_size", "erlang_vm_dist_proc_heap_size_words", "Heap of the dist controller, words."),
    (
        "total_heap_size",
        "erlang_vm_dist_proc_total_heap_size_words",
        "Total heap of the distribution controller process, words.",
    ),
    ("stack_size", "erlang_vm_dist_proc_stack_size_words", "Stack of the dist controller, words."),
    (
        "message_queue_len",
        "erlang_vm_dist_proc_message_queue_len",
        "Message queue length of the distribution controller process.",
    ),
    (
        "reductions",
        "erlang_vm_dist_proc_reductions",
        "Reductions executed by the distribution controller process.",
    ),
)

# (key in the `limits` section, metric, help)
_LIMITS: Final = (
    ("process_count", "erlang_vm_processes", "Processes currently existing on the node."),
    ("process_limit", "erlang_vm_process_limit", "Maximum number of simultaneous processes."),
    ("port_count", "erlang_vm_ports", "Ports currently existing on the node."),
    ("port_limit", "erlang_vm_port_limit", "Maximum number of simultaneous ports."),
    ("atom_count", "erlang_vm_atoms", "Atoms currently existing on the node."),
    ("atom_limit", "erlang_vm_atom_limit", "Maximum number of atoms."),
    ("ets_count", "erlang_vm_ets_tables", "ETS tables currently existing on the node."),
    ("ets_limit", "erlang_vm_ets_limit", "Maximum number of ETS tables."),
    ("modules_loaded", "erlang_vm_modules", "Modules loaded."),
    ("modules_old_code", "erlang_vm_modules_old_code", "Modules that still have old code."),
    ("registered_names", "erlang_vm_registered_names", "Locally registered process names."),
    ("dist_links", "erlang_vm_dist_links", "Connected nodes (visible and hidden)."),
    ("persistent_terms", "erlang_vm_persistent_terms", "Terms in persistent_term storage."),
    ("max_fds", "erlang_vm_poll_max_fds", "Maximum file descriptors the poll set handles."),
    ("poll_set_fds", "erlang_vm_poll_set_fds", "File descriptors in the VM's poll sets."),
    ("open_fds", "erlang_vm_open_fds", "Open file descriptors of the node's OS process."),
    ("fd_limit", "erlang_vm_max_fds", "Soft limit on open file descriptors of the OS process."),
)

# (key in `system`, metric, help, scale)
_SYSTEM: Final = (
    ("schedulers", "erlang_vm_schedulers", "Scheduler threads.", 1.0),
    ("schedulers_online", "erlang_vm_schedulers_online", "Schedulers online.", 1.0),
    ("dirty_cpu_schedulers", "erlang_vm_dirty_cpu_schedulers", "Dirty CPU schedulers.", 1.0),
    (
        "dirty_cpu_schedulers_online",
        "erlang_vm_dirty_cpu_schedulers_online",
        "Dirty CPU schedulers online.",
        1.0,
    ),
    ("dirty_io_schedulers", "erlang_vm_dirty_io_schedulers", "Dirty IO schedulers.", 1.0),
    ("logical_processors", "erlang_vm_logical_processors", "Logical processors.", 1.0),
    (
        "logical_processors_available",
        "erlang_vm_logical_processors_available",
        "Logical processors available to the VM.",
        1.0,
    ),
    (
        "logical_processors_online",
        "erlang_vm_logical_processors_online",
        "Logical processors online.",
        1.0,
    ),
    ("cpu_quota", "erlang_vm_cpu_quota", "CPU quota of the VM's container (cgroup).", 1.0),
    ("thread_pool_size", "erlang_vm_thread_pool_size", "Async thread pool size.", 1.0),
    ("wordsize", "erlang_vm_wordsize_bytes", "Size of an Erlang term word.", 1.0),
    ("smp_support", "erlang_vm_smp_support", "1 if the emulator has SMP support.", 1.0),
    ("threads", "erlang_vm_threads", "1 if the emulator has thread support.", 1.0),
    ("time_correction", "erlang_vm_time_correction", "1 if time correction is on.", 1.0),
    ("port_parallelism", "erlang_vm_port_parallelism", "1 if port parallelism is on.", 1.0),
    ("kernel_poll", "erlang_vm_kernel_poll", "1 if kernel poll is used.", 1.0),
    (
        "dist_buf_busy_limit",
        "erlang_vm_dist_buf_busy_limit_bytes",
        "Distribution buffer busy limit.",
        1.0,
    ),
    (
        "context_reductions",
        "erlang_vm_context_reductions",
        "Reductions a process may execute before it is preempted.",
        1.0,
    ),
    ("min_heap_size", "erlang_vm_min_heap_size_words", "Default minimum heap size.", 1.0),
    (
        "min_bin_vheap_size",
        "erlang_vm_min_bin_vheap_size_words",
        "Default minimum binary virtual heap size.",
        1.0,
    ),
    (
        "max_heap_size",
        "erlang_vm_max_heap_size_words",
        "Default maximum heap size (0: unlimited).",
        1.0,
    ),
    (
        "fullsweep_after",
        "erlang_vm_fullsweep_after",
        "Default generational collections before a full sweep.",
        1.0,
    ),
    (
        "start_time_ms",
        "erlang_vm_start_time_seconds",
        "Unix time the VM started (changes when the node restarts).",
        1e-3,
    ),
    (
        "system_time_ms",
        "erlang_vm_system_time_seconds",
        "The node's OS system time when the snapshot was taken (clock skew checks).",
        1e-3,
    ),
    (
        "time_offset_us",
        "erlang_vm_time_offset_seconds",
        "Erlang monotonic time to system time offset.",
        1e-6,
    ),
)

# (key in `statistics`, counter name without _total, help, scale)
_STATISTICS: Final = (
    (
        "context_switches",
        "erlang_vm_statistics_context_switches",
        "Context switches since the VM started.",
        1.0,
    ),
    (
        "reductions",
        "erlang_vm_statistics_reductions",
        "Reductions executed since the VM started.",
        1.0,
    ),
    (
        "exact_reductions",
        "erlang_vm_statistics_exact_reductions",
        "Exact reductions executed since the VM started.",
        1.0,
    ),
    (
        "gc_count",
        "erlang_vm_statistics_garbage_collection_number_of_gcs",
        "Garbage collections since the VM started.",
        1.0,
    ),
    (
        "gc_words_reclaimed",
        "erlang_vm_statistics_garbage_collection_words_reclaimed",
        "Words reclaimed by garbage collection.",
        1.0,
    ),
    (
        "io_input",
        "erlang_vm_statistics_bytes_received",
        "Bytes received through ports.",
        1.0,
    ),
    ("io_output", "erlang_vm_statistics_bytes_output", "Bytes output to ports.", 1.0),
    (
        "runtime_ms",
        "erlang_vm_statistics_runtime_seconds",
        "CPU time of all threads of the VM.",
        1e-3,
    ),
    (
        "wall_clock_ms",
        "erlang_vm_statistics_wallclock_time_seconds",
        "Wall clock time since the VM started.",
        1e-3,
    ),
)

_MEMSUP: Final = {
    "total_memory": ("erlang_os_mon_memory_total_bytes", "Memory available to the VM's host."),
    "free_memory": ("erlang_os_mon_memory_free_bytes", "Free memory of the host."),
    "system_total_memory": (
        "erlang_os_mon_memory_system_total_bytes",
        "Total memory of the host.",
    ),
    "buffered_memory": ("erlang_os_mon_memory_buffered_bytes", "Memory used for buffers."),
    "cached_memory": ("erlang_os_mon_memory_cached_bytes", "Memory used for the page cache."),
    "available_memory": (
        "erlang_os_mon_memory_available_bytes",
        "Memory available for new work without swapping.",
    ),
    "shared_memory": ("erlang_os_mon_memory_shared_bytes", "Shared memory of the host."),
    "largest_free": ("erlang_os_mon_memory_largest_free_bytes", "Largest free memory block."),
    "total_swap": ("erlang_os_mon_swap_total_bytes", "Total swap space."),
    "free_swap": ("erlang_os_mon_swap_free_bytes", "Free swap space."),
}

_MNESIA_COUNTERS: Final = (
    (
        "transaction_commits",
        "erlang_mnesia_committed_transactions",
        "Transactions committed since mnesia started.",
    ),
    (
        "transaction_failures",
        "erlang_mnesia_failed_transactions",
        "Transactions failed since mnesia started.",
    ),
    (
        "transaction_restarts",
        "erlang_mnesia_restarted_transactions",
        "Transactions restarted since mnesia started.",
    ),
    (
        "transaction_log_writes",
        "erlang_mnesia_logged_transactions",
        "Transactions logged since mnesia started.",
    ),
)

_NAME_PART = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


# --------------------------------------------------------------------------- building


class _Families:
    """Families by exposition name, with the label names each was created with."""

    def __init__(self) -> None:
        self._families: dict[str, tuple[Metric, tuple[str, ...], str]] = {}

    def get(self, kind: str, name: str, doc: str, labels: tuple[str, ...]) -> tuple[Metric, str]:
        """The family and the name of its samples (counters: ``name_total``)."""
        entry = self._families.get(name)
        if entry is not None:
            family, known, sample_name = entry
            if known != labels:
                raise ValueError(f"{name}: labels {labels} != {known}")
            return family, sample_name
        names = [*BASE_LABELS, *labels]
        if kind == "gauge":
            family = GaugeMetricFamily(name, doc, labels=names)
            sample_name = name
        elif kind == "counter":
            family = CounterMetricFamily(name, doc, labels=names)
            sample_name = f"{family.name}_total"
        elif kind == "info":
            family = InfoMetricFamily(name, doc, labels=names)
            sample_name = f"{name}_info"
        else:  # pragma: no cover - programming error
            raise ValueError(kind)
        self._families[name] = (family, labels, sample_name)
        return family, sample_name

    def collect(self) -> list[Metric]:
        return [family for family, _, _ in self._families.values()]


class NodeWriter:
    """Receives one node's samples from the section renderers.

    Subclasses keep them: :class:`_SampleWriter` as prometheus_client samples
    (the reference), :mod:`sidecar.exporter.exposition` as exposition text.
    Both see the same calls, so both drop the same samples: a value that is
    not a number, and, inside the plugin sections, every sample beyond
    ``series_budget`` (counted in :attr:`dropped` by family name).
    ``node``/``family``/``cluster`` (:attr:`base`) come first in the labels;
    a renderer's own label of the same name would win (as in a dict merge).
    """

    def __init__(self, snap: NodeSnapshot, series_budget: int | None = None) -> None:
        self.base = {"node": snap.node, "family": snap.family, "cluster": snap.cluster}
        self._budget = series_budget
        self._left = 0
        self._in_plugins = False
        #: plugin samples dropped over the budget, by family name
        self.dropped: dict[str, int] = {}
        #: the snapshot's exporter sections, decoded for this render
        self.trees: Mapping[str, Mapping[str, Any]] = {}

    @contextmanager
    def plugins(self) -> Iterator[None]:
        """Inside: the samples count against the node's plugin series budget."""
        self._in_plugins = self._budget is not None
        self._left = self._budget or 0
        try:
            yield
        finally:
            self._in_plugins = False

    def gauge(self, name: str, doc: str, value: Any, **labels: str) -> None:
        self._add("gauge", name, doc, value, labels)

    def counter(self, name: str, doc: str, value: Any, **labels: str) -> None:
        """``name`` without ``_total``: the exposition adds it."""
        self._add("counter", name, doc, value, labels)

    def info(self, name: str, doc: str, values: Mapping[str, str]) -> None:
        """``name`` without ``_info``: the exposition adds it."""
        if self._in_plugins and not self._spend(name):
            return
        self._emit("info", name, doc, 1.0, values)

    def _add(self, kind: str, name: str, doc: str, value: Any, labels: Mapping[str, str]) -> None:
        t = type(value)
        if t is int or t is float:
            try:
                number = float(value)
            except OverflowError:  # an integer beyond a float's range
                return
        elif t is bool:
            number = 1.0 if value else 0.0
        else:
            return
        if self._in_plugins and not self._spend(name):
            return
        self._emit(kind, name, doc, number, labels)

    def _spend(self, name: str) -> bool:
        if name == SECTION_ERROR:  # says a plugin failed: never dropped
            return True
        if self._left > 0:
            self._left -= 1
            return True
        self.dropped[name] = self.dropped.get(name, 0) + 1
        return False

    def _emit(
        self, kind: str, name: str, doc: str, number: float, labels: Mapping[str, str]
    ) -> None:
        raise NotImplementedError


class _SampleWriter(NodeWriter):
    """Appends prometheus_client samples to the families (the reference path).

    Samples are appended directly (what ``add_metric`` does, without its
    per-call zip of label names).
    """

    def __init__(
        self, families: _Families, snap: NodeSnapshot, series_budget: int | None = None
    ) -> None:
        super().__init__(snap, series_budget)
        self._families = families

    def _emit(
        self, kind: str, name: str, doc: str, number: float, labels: Mapping[str, str]
    ) -> None:
        family, sample_name = self._families.get(kind, name, doc, tuple(labels))
        family.samples.append(Sample(sample_name, {**self.base, **labels}, number, None))


num = number  # the model's rule: a boolean is not a number


# --------------------------------------------------------------------------- sections

#: renders one section kept as sent (``snapshot.exporter_trees()``, ``snapshot.plugins``)
Renderer = Callable[[NodeWriter, Mapping[str, Any], NodeSnapshot], None]


def _versions(n: NodeWriter, snap: NodeSnapshot) -> None:
    s = snap.versions
    if s is None:
        return
    n.info(
        "erlang_vm",
        "OTP release, ERTS version, architecture and emulator flavor of the node.",
        {
            "otp_release": s.otp_release,
            "erts_version": s.erts_version,
            "system_architecture": s.system_architecture,
            "emulator_flavor": s.emulator_flavor,
        },
    )
    for release in s.releases or ():
        n.info(
            "erlang_vm_release",
            "The releases release_handler knows, with their status (permanent, current, "
            "old, unpacked).",
            {"release": release.name, "version": release.version, "status": release.status},
        )
    apps = s.applications
    if apps is not None:
        n.gauge("erlang_vm_applications", "Applications running on the node.", len(apps))
        for app, vsn in sorted(apps.items()):
            n.info(
                "erlang_vm_application",
                "Applications running on the node, with their versions.",
                {"application": app, "version": vsn},
            )


def _memory(n: NodeWriter, snap: NodeSnapshot) -> None:
    s = snap.memory
    if s is None:
        return
    for kind, value in sorted(s.by_kind.items()):
        n.gauge(
            "erlang_vm_memory_bytes",
            "Memory allocated by the VM, by kind (erlang:memory/0 and persistent_term).",
            value,
            kind=kind,
        )
    atom, atom_used = s.get("atom"), s.get("atom_used")
    if atom is not None and atom_used is not None:
        doc = "Memory allocated for atoms, used and free."
        n.gauge("erlang_vm_memory_atom_bytes", doc, atom_used, usage="used")
        n.gauge("erlang_vm_memory_atom_bytes", doc, atom - atom_used, usage="free")
    procs, procs_used = s.get("processes"), s.get("processes_used")
    if procs is not None and procs_used is not None:
        doc = "Memory allocated for processes, used and free."
        n.gauge("erlang_vm_memory_processes_bytes", doc, procs_used, usage="used")
        n.gauge("erlang_vm_memory_processes_bytes", doc, procs - procs_used, usage="free")
    system = s.get("system")
    if system is not None:
        doc = "Memory allocated for the emulator that is not process memory, by usage."
        parts = ("atom", "binary", "code", "ets")  # as prometheus.erl splits it
        other = system
        for part in parts:
            v = s.get(part)
            if v is not None:
                n.gauge("erlang_vm_memory_system_bytes", doc, v, usage=part)
                other -= v
        n.gauge("erlang_vm_memory_system_bytes", doc, max(other, 0.0), usage="other")


def _allocators(n: NodeWriter, s: Mapping[str, Any], snap: NodeSnapshot) -> None:
    # Per type, instances summed: prometheus.erl's erlang_vm_allocators is per
    # instance (labels alloc, instance_no, kind, usage), from the full
    # {allocator, A} whose cost grows with the schedulers (11-22 ms a tick at
    # 64); per instance and carrier counts are Memory/Allocators' instead.
    total_carriers = 0.0
    for alloc, sizes in _sorted(s):
        if not isinstance(sizes, dict) or alloc == "mseg_alloc":  # not alloc_util: its cache
            continue
        a = text(alloc)
        blocks = carriers = 0.0
        for kind in ("mbcs", "mbcs_pool", "sbcs"):
            b = num(sizes.get(f"{kind}_blocks_size")) or 0.0
            c = num(sizes.get(f"{kind}_carriers_size")) or 0.0
            blocks += b
            carriers += c
            n.gauge(
                "erlang_vm_allocator_blocks_bytes",
                "Bytes in blocks (allocated data) of an allocator, by carrier kind.",
                b,
                alloc=a,
                kind=kind,
            )
            n.gauge(
                "erlang_vm_allocator_carriers_bytes",
                "Bytes in carriers (memory from the OS) of an allocator, by carrier kind.",
                c,
                alloc=a,
                kind=kind,
            )
        total_carriers += carriers
        n.gauge(
            "erlang_vm_allocator_instances",
            "Instances of an allocator.",
            sizes.get("instances"),
            alloc=a,
        )
        n.gauge(
            "erlang_vm_allocator_unused_bytes",
            "Bytes in an allocator's carriers not used by blocks (fragmentation).",
            max(carriers - blocks, 0.0),
            alloc=a,
        )
        if carriers > 0:
            n.gauge(
                "erlang_vm_allocator_usage_ratio",
                "Blocks over carriers of an allocator (1 - fragmentation).",
                blocks / carriers,
                alloc=a,
            )
    n.gauge(
        "erlang_vm_allocated_bytes",
        "Bytes in the carriers of all alloc_util allocators.",
        total_carriers,
    )
    mseg = s.get("mseg_alloc")
    if isinstance(mseg, dict):
        _mseg_cache(n, mseg)


def _mseg_cache(n: NodeWriter, s: Mapping[str, Any]) -> None:
    """mseg_alloc's segment cache (the allocators section's mseg_alloc, agent v11)."""
    calls = num(s.get("cache_calls"))
    hits = num(s.get("cache_hits"))
    n.counter(
        "erlang_vm_mseg_alloc_calls",
        "Carriers asked of mseg_alloc (memory segments), over its instances.",
        calls,
    )
    n.counter(
        "erlang_vm_mseg_alloc_cache_hits",
        "Carriers mseg_alloc served from its segment cache (no mmap).",
        hits,
    )
    n.gauge(
        "erlang_vm_mseg_alloc_cached_segments",
        "Segments in mseg_alloc's cache, over its instances.",
        s.get("cached_segments"),
    )
    if calls and hits is not None:
        n.gauge(
            "erlang_vm_mseg_alloc_cache_hit_ratio",
            "Cache hits over calls of mseg_alloc since the node started.",
            hits / calls,
        )


def _allocated_areas(n: NodeWriter, s: Mapping[str, Any], snap: NodeSnapshot) -> None:
    for area, value in _sorted(s):
        n.gauge(
            "erlang_vm_allocated_area_bytes",
            "Memory of the VM's internal areas (erlang:system_info(allocated_areas)).",
            value,
            area=text(area),
        )


def _limits(n: NodeWriter, snap: NodeSnapshot) -> None:
    s = snap.limits
    if s is None:
        return
    for key, name, doc in _LIMITS:
        n.gauge(name, doc, getattr(s, key))
    doc = "Connected nodes by connection type."
    n.gauge("erlang_vm_dist_nodes", doc, s.dist_visible, type="visible")
    n.gauge("erlang_vm_dist_nodes", doc, s.dist_hidden, type="hidden")
    n.gauge(
        "erlang_vm_sockets",
        "Open sockets: inet driver ports and socket (NIF) sockets.",
        s.socket_count,
        api="socket",
    )
    ports = n.trees.get("ports")
    kinds = ports.get("by_kind") if ports else None
    if isinstance(kinds, dict):
        inet = sum(
            num(v.get("count")) or 0.0
            for k, v in kinds.items()
            if isinstance(v, dict) and text(k) in ("tcp_inet", "udp_inet", "sctp_inet")
        )
        n.gauge(
            "erlang_vm_sockets",
            "Open sockets: inet driver ports and socket (NIF) sockets.",
            inet,
            api="inet",
        )


def _system(n: NodeWriter, snap: NodeSnapshot) -> None:
    s = snap.system
    if s is None:
        return
    for key, name, doc, scale in _SYSTEM:
        v = getattr(s, key)
        if v is not None:  # a flag renders as 1 or 0
            n.gauge(name, doc, float(v) * scale)
    if s.multi_scheduling:
        n.gauge(
            "erlang_vm_multi_scheduling",
            "1 if multi-scheduling is enabled (0 when blocked).",
            1 if s.multi_scheduling == "enabled" else 0,
        )
    uptime = snap.uptime_ms
    if uptime is not None:
        n.gauge("erlang_vm_uptime_seconds", "Time since the VM started.", uptime / 1000)


def _run_queues(n: NodeWriter, s: Mapping[str, Any], snap: NodeSnapshot) -> None:
    n.gauge(
        "erlang_vm_statistics_run_queues_length",
        "Processes and ports ready to run on the normal run queues.",
        s.get("normal"),
    )
    n.gauge(
        "erlang_vm_statistics_dirty_cpu_run_queue_length",
        "Length of the dirty CPU run queue.",
        s.get("dirty_cpu"),
    )
    n.gauge(
        "erlang_vm_statistics_dirty_io_run_queue_length",
        "Length of the dirty IO run queue.",
        s.get("dirty_io"),
    )
    for i, v in enumerate(_list(s.get("per_scheduler")), 1):
        n.gauge(
            "erlang_vm_run_queue_length",
            "Run queue length of each normal scheduler.",
            v,
            scheduler=str(i),
        )
    doc = "Active tasks (running or ready) by scheduler type."
    n.gauge("erlang_vm_active_tasks", doc, s.get("active_tasks"), type="normal")
    n.gauge("erlang_vm_active_tasks", doc, s.get("active_tasks_dirty_cpu"), type="dirty_cpu")
    n.gauge("erlang_vm_active_tasks", doc, s.get("active_tasks_dirty_io"), type="dirty_io")
    for i, v in enumerate(_list(s.get("active_tasks_per_scheduler")), 1):
        n.gauge(
            "erlang_vm_scheduler_active_tasks",
            "Active tasks of each normal scheduler.",
            v,
            scheduler=str(i),
        )


def _statistics(n: NodeWriter, s: Mapping[str, Any], snap: NodeSnapshot) -> None:
    for key, name, doc, scale in _STATISTICS:
        v = num(s.get(key))
        if v is not None:
            n.counter(name, doc, v * scale)
    words = num(s.get("gc_words_reclaimed"))
    wordsize = snap.system.wordsize if snap.system is not None else None
    if words is not None and wordsize is not None:
        n.counter(
            "erlang_vm_statistics_garbage_collection_bytes_reclaimed",
            "Bytes reclaimed by garbage collection.",
            words * wordsize,
        )


def _scheduler_utilization(n: NodeWriter, s: Mapping[str, Any], snap: NodeSnapshot) -> None:
    enabled = s.get("enabled") is True
    n.gauge(
        "erlang_vm_scheduler_wall_time_enabled",
        "1 if scheduler_wall_time is on (needed for utilisation).",
        enabled,
    )
    if not enabled:
        return
    for kind in ("normal", "dirty_cpu", "dirty_io"):
        values = [v for v in (num(x) for x in _list(s.get(kind))) if v is not None]
        for i, v in enumerate(values, 1):
            n.gauge(
                "erlang_vm_scheduler_utilization_ratio",
                "Busy fraction of each scheduler since the previous snapshot.",
                v,
                type=kind,
                scheduler=str(i),
            )
        if values:
            n.gauge(
                "erlang_vm_scheduler_utilization_average_ratio",
                "Average busy fraction of the schedulers of a type.",
                sum(values) / len(values),
                type=kind,
            )


def _msacc(n: NodeWriter, s: Mapping[str, Any], snap: NodeSnapshot) -> None:
    enabled = s.get("enabled") is True
    n.gauge(
        "erlang_vm_msacc_enabled",
        "1 if microstate accounting has data (it is on, or was).",
        enabled,
    )
    if not enabled:
        return
    threads = s.get("threads")
    if isinstance(threads, dict):
        for kind, count in _sorted(threads):
            n.gauge(
                "erlang_vm_msacc_threads",
                "Threads of each type accounted for.",
                count,
                type=text(kind),
            )
    micro = s.get("microseconds")
    if not isinstance(micro, dict):
        return
    for kind, states in _sorted(micro):
        if not isinstance(states, dict):
            continue
        for state, us in _sorted(states):
            st = text(state)
            if not _NAME_PART.match(st):
                continue
            v = num(us)
            if v is None:
                continue
            n.counter(
                f"erlang_vm_msacc_{st}_seconds",
                f"Time threads of each type spent in the {st} state (microstate accounting).",
                v / 1e6,
                type=text(kind),
            )


def _processes(n: NodeWriter, snap: NodeSnapshot) -> None:
    s = snap.processes
    if s is None:
        return
    n.gauge(
        "erlang_vm_process_messages_queued",
        "Messages in all message queues of the processes walked.",
        s.mq_sum,
    )
    n.gauge(
        "erlang_vm_process_message_queue_max",
        "Longest message queue of a process.",
        s.mq_max,
    )
    n.gauge(
        "erlang_vm_processes_with_messages",
        "Processes with a non-empty message queue.",
        s.mq_nonzero,
    )
    n.gauge(
        "erlang_vm_processes_above_message_queue_threshold",
        "Processes whose message queue is longer than the threshold.",
        s.mq_above,
    )
    n.gauge(
        "erlang_vm_process_message_queue_threshold",
        "The message queue threshold the agent counts against.",
        s.mq_threshold,
    )
    n.gauge(
        "erlang_vm_process_walk_processes",
        "Processes looked at by the last walk (one chunk).",
        s.walked,
    )
    n.gauge(
        "erlang_vm_process_walk_covered",
        "Processes the message queue figures are made of (all chunks).",
        s.covered,
    )
    n.gauge(
        "erlang_vm_process_walk_chunks",
        "Chunks the process table is walked in, one per snapshot.",
        s.chunks,
    )
    oldest = s.oldest_ms
    if oldest is not None:
        n.gauge(
            "erlang_vm_process_walk_age_seconds",
            "Age of the oldest chunk result in the message queue figures.",
            oldest / 1000,
        )
    n.gauge(
        "erlang_vm_process_walk_vanished",
        "Processes that exited while the last walk looked at them.",
        s.vanished,
    )
    n.gauge(
        "erlang_vm_process_walk_truncated",
        "1 if the last walk stopped at its process or time limit.",
        s.truncated,
    )
    us = s.duration_us
    if us is not None:
        n.gauge(
            "erlang_vm_process_walk_duration_seconds",
            "How long the last process walk took on the node.",
            us / 1e6,
        )
    for rank, p in enumerate(s.top_message_queue, 1):
        n.gauge(
            "erlang_vm_process_top_message_queue_length",
            "Longest message queues: rank, registered name or pid.",
            p.message_queue_len,
            rank=str(rank),
            process=p.label,
        )
    n.gauge(
        "erlang_vm_process_memory_sum_bytes",
        "Memory of the processes walked (only when every process is asked).",
        s.memory_sum,
    )
    n.gauge(
        "erlang_vm_process_memory_max_bytes",
        "Memory of the largest process.",
        s.max_memory,
    )
    n.gauge(
        "erlang_vm_processes_above_memory_threshold",
        "Processes using more memory than the threshold.",
        s.memory_above,
    )
    n.gauge(
        "erlang_vm_process_memory_threshold_bytes",
        "The process memory threshold the agent counts against.",
        s.memory_threshold,
    )
    n.gauge(
        "erlang_vm_process_memory_covered",
        "Processes the process memory figures are made of (all memory slices).",
        s.memory_covered,
    )
    for rank, p in enumerate(s.top_memory, 1):
        n.gauge(
            "erlang_vm_process_top_memory_bytes",
            "Largest processes by memory: rank, registered name or pid.",
            p.memory,
            rank=str(rank),
            process=p.label,
        )


def _ports(n: NodeWriter, s: Mapping[str, Any], snap: NodeSnapshot) -> None:
    kinds = s.get("by_kind")
    if isinstance(kinds, dict):
        for kind, v in _sorted(kinds):
            if not isinstance(v, dict):
                continue
            k = text(kind)
            n.gauge("erlang_vm_ports_by_kind", "Ports by driver kind.", v.get("count"), kind=k)
            n.gauge(
                "erlang_vm_port_memory_bytes",
                "Memory of the ports of a kind.",
                v.get("memory"),
                kind=k,
            )
            n.gauge(
                "erlang_vm_port_queue_bytes",
                "Bytes queued in the ports of a kind.",
                v.get("queue_size"),
                kind=k,
            )
            n.gauge(
                "erlang_vm_port_input_bytes",
                "Bytes read by the open ports of a kind.",
                v.get("input"),
                kind=k,
            )
            n.gauge(
                "erlang_vm_port_output_bytes",
                "Bytes written by the open ports of a kind.",
                v.get("output"),
                kind=k,
            )
    n.gauge(
        "erlang_vm_port_walk_truncated",
        "1 if the port walk stopped at max_ports.",
        s.get("truncated"),
    )


def _ets(n: NodeWriter, s: Mapping[str, Any], snap: NodeSnapshot) -> None:
    n.gauge("erlang_vm_ets_objects", "Objects in all ETS tables walked.", s.get("objects"))
    for p in _list(s.get("top_memory")):
        if not isinstance(p, dict):
            continue
        name = text(p.get("name"))
        n.gauge(
            "erlang_vm_ets_top_memory_bytes",
            "Largest ETS tables by memory (tables sharing a name are summed).",
            p.get("memory_bytes"),
            table=name,
        )
        n.gauge(
            "erlang_vm_ets_top_objects",
            "Objects in the largest ETS tables.",
            p.get("size"),
            table=name,
        )
        n.gauge(
            "erlang_vm_ets_top_tables",
            "ETS tables with this name among the largest.",
            p.get("tables"),
            table=name,
        )


def _kernel(n: NodeWriter, s: Mapping[str, Any], snap: NodeSnapshot) -> None:
    n.gauge("erlang_vm_global_names", "Names registered with global.", s.get("global_names"))
    n.gauge("erlang_vm_global_locks", "Locks held through global.", s.get("global_locks"))
    n.gauge("erlang_vm_logger_handlers", "Logger handlers installed.", s.get("logger_handlers"))
    n.gauge("erlang_vm_heart", "1 if heart watches the node.", s.get("heart"))
    n.gauge(
        "erlang_vm_applications_loaded",
        "Applications loaded (running or not).",
        s.get("applications_loaded"),
    )
    level = s.get("logger_level")
    if isinstance(level, str):
        n.info("erlang_vm_logger", "Logger primary level.", {"level": text(level)})


def _dist(n: NodeWriter, s: Mapping[str, Any], snap: NodeSnapshot) -> None:
    """Distribution: an aggregate per node (the default) and, when the agent
    was asked for ``dist_per_peer``, prometheus.erl's per-peer families.

    The sums keep prometheus.erl's names (``erlang_vm_dist_send_bytes`` ...)
    without a ``peer`` label in aggregate mode; in per-peer mode the same
    families carry one series per listed peer plus, when ``max_peers`` left
    peers out, one ``peer="_omitted"`` series with the rest of the sum, so
    ``sum by (node)`` is the node's total in both modes."""
    n.gauge(
        "erlang_vm_dist_pending_connections",
        "Distribution connections being set up.",
        s.get("pending"),
    )
    counts = s.get("peer_counts")
    if isinstance(counts, dict):
        _dist_peer_counts(n, counts)
    sockets = s.get("sockets")
    procs = s.get("processes")
    per_peer = s.get("per_peer") is True or "peers" in s  # version 7 agents: always per peer
    if per_peer:
        listed = _dist_peers(n, s)
        omitted = num(s.get("omitted"))
        if omitted is not None:
            n.gauge(
                "beamside_dist_peers_omitted",
                "Connected peers left out of the per-peer series by metrics.dist_max_peers.",
                omitted,
            )
        if omitted:
            _dist_rest(n, sockets, procs, listed)
    else:
        _dist_sums(n, sockets, procs)
    if isinstance(sockets, dict):
        _dist_socket_extra(n, sockets)
    if isinstance(procs, dict):
        _dist_proc_extra(n, procs)


def _dist_peer_counts(n: NodeWriter, counts: Mapping[str, Any]) -> None:
    doc = "Connected peers by connection state (up, pending) and type (visible, hidden)."
    for state in ("up", "pending"):
        by_type = counts.get(state)
        by_type = by_type if isinstance(by_type, dict) else {}
        seen = {text(k): v for k, v in _sorted(by_type)}
        for t in ("visible", "hidden"):  # always both: a stable series set
            n.gauge("erlang_vm_dist_peers", doc, seen.pop(t, 0), state=state, type=t)
        for t, v in seen.items():  # `unknown` (pending peers on OTP < 25.1)
            n.gauge("erlang_vm_dist_peers", doc, v, state=state, type=t)


# aggregate key -> (metric, help); the metrics are prometheus.erl's per-peer
# names, here summed over every connection of the node
_DIST_SUMS: Final = (
    ("recv_bytes", "recv_oct", "erlang_vm_dist_recv_bytes"),
    ("recv_packets", "recv_cnt", "erlang_vm_dist_recv_cnt"),
    ("send_bytes", "send_oct", "erlang_vm_dist_send_bytes"),
    ("send_packets", "send_cnt", "erlang_vm_dist_send_cnt"),
    ("output_queue_bytes", "send_pend", "erlang_vm_dist_send_pend_bytes"),
)
_DIST_PROC_SUMS: Final = (
    ("memory_bytes", "memory", "erlang_vm_dist_proc_memory_bytes"),
    ("message_queue_len", "message_queue_len", "erlang_vm_dist_proc_message_queue_len"),
    ("reductions", "reductions", "erlang_vm_dist_proc_reductions"),
)
_SOCKET_DOC: Final = {key: doc for key, _, doc in _DIST_SOCKET}
_PROC_DOC: Final = {key: doc for key, _, doc in _DIST_PROC}
_SUM_NOTE: Final = " Without a peer label: the sum over the node's connections."


def _dist_sums(n: NodeWriter, sockets: object, procs: object) -> None:
    if isinstance(sockets, dict):
        for key, socket_key, name in _DIST_SUMS:
            n.gauge(name, _SOCKET_DOC[socket_key] + _SUM_NOTE, sockets.get(key))
    if isinstance(procs, dict) and num(procs.get("count")):
        for key, proc_key, name in _DIST_PROC_SUMS:
            n.gauge(name, _PROC_DOC[proc_key] + _SUM_NOTE, procs.get(key))


def _dist_rest(n: NodeWriter, sockets: object, procs: object, listed: Mapping[str, float]) -> None:
    """The part of each sum that the peers left out carry (aggregate minus the
    listed peers, read in the same call), as ``peer="_omitted"``."""
    labels = {"peer": "_omitted", "type": "_omitted"}
    if isinstance(sockets, dict):
        for key, socket_key, name in _DIST_SUMS:
            total = num(sockets.get(key))
            if total is not None:
                rest = max(total - listed.get(name, 0.0), 0.0)
                n.gauge(name, _SOCKET_DOC[socket_key], rest, **labels)
    if isinstance(procs, dict) and num(procs.get("count")):
        for key, proc_key, name in _DIST_PROC_SUMS:
            total = num(procs.get(key))
            if total is not None:
                rest = max(total - listed.get(name, 0.0), 0.0)
                n.gauge(name, _PROC_DOC[proc_key], rest, **labels)


def _dist_socket_extra(n: NodeWriter, sockets: Mapping[str, Any]) -> None:
    n.gauge(
        "erlang_vm_dist_controllers",
        "Distribution connections by controller kind: port (TCP) or process (TLS).",
        sockets.get("count"),
        kind="port",
    )
    n.gauge(
        "erlang_vm_dist_output_queue_max_bytes",
        "Largest output queue of the node's distribution ports (send_pend), in bytes.",
        sockets.get("output_queue_max_bytes"),
    )
    n.gauge(
        "erlang_vm_dist_busy_ports",
        "Distribution ports whose queue is at or over their high watermark: the "
        "driver is busy and the VM buffers further output up to dist_buf_busy_limit.",
        sockets.get("busy"),
    )


def _dist_proc_extra(n: NodeWriter, procs: Mapping[str, Any]) -> None:
    n.gauge(
        "erlang_vm_dist_controllers",
        "Distribution connections by controller kind: port (TCP) or process (TLS).",
        procs.get("count"),
        kind="process",
    )
    if not num(procs.get("count")):
        return  # no TLS connection: the maxima would be zeros
    n.gauge(
        "erlang_vm_dist_proc_memory_max_bytes",
        "Largest memory of the node's distribution controller processes.",
        procs.get("memory_max_bytes"),
    )
    n.gauge(
        "erlang_vm_dist_proc_message_queue_len_max",
        "Longest message queue of the node's distribution controller processes.",
        procs.get("message_queue_len_max"),
    )


def _dist_peers(n: NodeWriter, s: Mapping[str, Any]) -> dict[str, float]:
    """prometheus.erl's per-peer families; returns what the listed peers add
    to each summed family."""
    listed: dict[str, float] = {}

    def add(name: str, value: object) -> None:
        v = num(value)
        if v is not None:
            listed[name] = listed.get(name, 0.0) + v

    sums = {socket_key: name for _, socket_key, name in _DIST_SUMS}
    proc_sums = {proc_key: name for _, proc_key, name in _DIST_PROC_SUMS}
    for peer in _list(s.get("peers")):
        if not isinstance(peer, dict):
            continue
        labels = {"peer": text(peer.get("node")), "type": text(peer.get("type"))}
        n.gauge(
            "erlang_vm_dist_node_state",
            "State of the connection to a peer: 1 pending, 2 up_pending, 3 up.",
            {"pending": 1, "up_pending": 2, "up": 3}.get(text(peer.get("state")), 0),
            **labels,
        )
        ctrl = peer.get("controller")
        if not isinstance(ctrl, dict):
            continue
        socket = ctrl.get("socket")
        if isinstance(socket, dict):
            for key, name, doc in _DIST_SOCKET:
                n.gauge(name, doc, socket.get(key), **labels)
                if key in sums:
                    add(name, socket.get(key))
        port = ctrl.get("port")
        if isinstance(port, dict):
            for key, name, doc in _DIST_PORT:
                n.gauge(name, doc, port.get(key), **labels)
        proc = ctrl.get("process")
        if isinstance(proc, dict):
            for key, name, doc in _DIST_PROC:
                n.gauge(name, doc, proc.get(key), **labels)
                if key in proc_sums:
                    add(name, proc.get(key))
    return listed


def _sysmon(n: NodeWriter, snap: NodeSnapshot) -> None:
    s = snap.sysmon
    if s is None:
        return
    state = s.state
    n.gauge(
        "beamside_agent_attached",
        "1 if beamside's agent process runs on the node.",
        state != "not_attached",
    )
    for st in ("owner", "taken_by_other", "disabled", "not_attached"):
        n.gauge(
            "beamside_agent_system_monitor",
            "Who holds the node's system monitor: beamside (owner), somebody else, nobody.",
            state == st,
            state=st,
        )
    if state == "not_attached":
        return
    n.gauge("beamside_agent_sidecars", "Sidecars attached to the node.", s.sidecars)
    if state not in ("owner", "taken_by_other"):
        return
    for event in ("long_gc", "long_schedule", "large_heap", "busy_port", "busy_dist_port"):
        n.counter(
            "erlang_vm_system_monitor_events",
            "System monitor events counted since beamside attached.",
            getattr(s, event),
            event=event,
        )


def _alarms(n: NodeWriter, snap: NodeSnapshot) -> None:
    s = snap.alarms
    if s is None:
        return
    n.gauge("erlang_vm_sasl_alarms", "Alarms set in SASL's alarm_handler.", s.sasl_count)
    mnesia = s.mnesia
    if mnesia is not None:
        doc = "mnesia system events seen since beamside attached, by event."
        for key, event in (
            ("inconsistent_database", "inconsistent_database"),
            ("overload", "mnesia_overload"),
        ):
            n.counter("erlang_mnesia_system_events", doc, mnesia.get(key), event=event)
    n.gauge(
        "erlang_vm_shell_history_bytes",
        "Bytes used by the shell history directory.",
        s.shell_history_bytes,
    )
    _memory_view(n, s.memory_view)
    _disk_view(n, s.disk_view)


def _memory_view(n: NodeWriter, view: MemoryView | SectionError | None) -> None:
    """The node's own view of memory (alarms.memory_view: os_mon's memsup not running)."""
    if isinstance(view, SectionError):
        _section_error(n, "alarms.memory_view")
    if not isinstance(view, MemoryView):
        return
    source = view.source
    for key, name, doc in (
        (
            "limit_bytes",
            "erlang_vm_memory_view_limit_bytes",
            "Memory the node may use as it sees it (os_mon's memsup not running): the "
            "lower of its cgroup's limit and the host's MemTotal; source says which.",
        ),
        (
            "used_bytes",
            "erlang_vm_memory_view_used_bytes",
            "Memory in use against erlang_vm_memory_view_limit_bytes: the cgroup's usage "
            "less inactive file cache, or MemTotal - MemAvailable.",
        ),
    ):
        n.gauge(name, doc, getattr(view, key), source=source)
    for key, kind in (
        ("total_bytes", "total"),
        ("available_bytes", "available"),
        ("free_bytes", "free"),
        ("swap_total_bytes", "swap_total"),
        ("swap_free_bytes", "swap_free"),
    ):
        n.gauge(
            "erlang_vm_system_memory_bytes",
            "System memory as the node sees it (/proc/meminfo; os_mon's memsup not running).",
            getattr(view, key),
            kind=kind,
        )
    cgroup = view.cgroup
    if isinstance(cgroup, SectionError):
        _section_error(n, "alarms.memory_view.cgroup")
    elif cgroup is not None:
        for kind in ("limit", "usage", "inactive_file"):
            n.gauge(
                "erlang_vm_cgroup_memory_bytes",
                "The node's memory cgroup (v1 or v2): limit (when limited: the lowest of the "
                "cgroup and its ancestors), usage and its inactive file cache.",
                cgroup.get(kind),
                kind=kind,
            )


def _disk_view(n: NodeWriter, view: DiskView | SectionError | None) -> None:
    """The node's own view of its data directory's file system (alarms.disk_view: df)."""
    if isinstance(view, SectionError):
        _section_error(n, "alarms.disk_view")
    if not isinstance(view, DiskView):
        return
    labels = {"mount": view.mount, "path": view.path}
    n.gauge(
        "erlang_vm_data_dir_disk_size_bytes",
        "Size of the file system of the node's data directory (mnesia's, else the working "
        "directory), from df (os_mon's disksup not running).",
        view.total_bytes,
        **labels,
    )
    n.gauge(
        "erlang_vm_data_dir_disk_available_bytes",
        "Space available to the node on the file system of its data directory (df).",
        view.available_bytes,
        **labels,
    )
    capacity = view.capacity
    if capacity is not None:
        n.gauge(
            "erlang_vm_data_dir_disk_used_ratio",
            "Used fraction of the file system of the node's data directory, as df's "
            "Capacity (reserved blocks left out).",
            capacity / 100,
            **labels,
        )


def _time(n: NodeWriter, snap: NodeSnapshot) -> None:
    if snap.time is not None:
        n.gauge(
            "erlang_vm_utc_offset_seconds",
            "Local time minus UTC on the node, in seconds.",
            snap.time.utc_offset_s,
        )


def _plugins(n: NodeWriter, snap: NodeSnapshot) -> None:
    with n.plugins():  # plugin families are under the node's series budget
        for name in snap.plugin_names:
            key = f"plugins.{name}"
            if key in snap.errors:
                _section_error(n, key)
            elif name == "os_mon":
                _os_mon(n, snap)
            elif name == "poolboy":
                if snap.poolboy is not None:
                    _poolboy(n, snap.poolboy)
            elif name == "folsom":
                if snap.folsom is not None:
                    _folsom(n, snap.folsom)
            elif name == "ranch":
                if snap.ranch is not None:
                    _ranch(n, snap.ranch)
            elif name == "rabbitmq":
                if snap.rabbitmq is not None:
                    _rabbitmq(n, snap.rabbitmq)
            elif name == "ejabberd":
                if snap.ejabberd is not None:
                    _ejabberd(n, snap.ejabberd)
            elif name == "yaws":
                if snap.yaws is not None:
                    _yaws(n, snap.yaws)
            elif name == "lager":
                if snap.lager is not None:
                    _lager(n, snap.lager)
            else:
                render = _PLUGINS.get(name) or _user_plugin(name)
                section = snap.plugins.get(name)
                if section is not None:
                    _guarded(n, key, _bound(section, render), snap)


#: the gauges of one poolboy pool: field, metric, help
_POOL_GAUGES: Final = (
    ("size", "erlang_poolboy_size", "Workers a poolboy pool keeps (its size)."),
    ("max_overflow", "erlang_poolboy_max_overflow", "Extra workers a pool may start under load."),
    ("overflow", "erlang_poolboy_overflow_workers", "Extra workers a pool runs now."),
    ("available", "erlang_poolboy_available_workers", "Idle workers of a pool."),
    ("checked_out", "erlang_poolboy_checked_out_workers", "Workers of a pool lent out now."),
    ("waiting", "erlang_poolboy_waiting_callers", "Callers blocked waiting for a worker."),
)


def _poolboy(n: NodeWriter, s: Poolboy) -> None:
    n.gauge("erlang_poolboy_pools", "Registered poolboy pools found on the node.", len(s.pools))
    for name, pool in s.pools:
        if isinstance(pool, SectionError):
            _section_error(n, f"plugins.poolboy.pools.{name}")
            continue
        for field, metric, doc in _POOL_GAUGES:
            n.gauge(metric, doc, getattr(pool, field), pool=name)


#: the numbers of one ranch listener: field, metric, kind, help
_LISTENER_SERIES: Final = (
    ("max_connections", "erlang_ranch_max_connections", "gauge",
     "Connections a ranch listener accepts at most (absent: infinity)."),
    ("active_connections", "erlang_ranch_active_connections", "gauge",
     "Connections of a ranch listener counted against its limit."),
    ("all_connections", "erlang_ranch_all_connections", "gauge",
     "Connections of a ranch listener, removed ones included."),
    ("accepted", "erlang_ranch_accepted_connections", "counter",
     "Connections a ranch listener accepted since it started (ranch 2)."),
    ("terminated", "erlang_ranch_terminated_connections", "counter",
     "Connections of a ranch listener that ended since it started (ranch 2)."),
)  # fmt: skip


def _ranch(n: NodeWriter, s: Ranch) -> None:
    n.gauge(
        "erlang_ranch_listeners", "ranch listeners on the node (cowboy's too).", len(s.listeners)
    )
    for ref, x in s.listeners:
        if isinstance(x, SectionError):
            _section_error(n, f"plugins.ranch.listeners.{ref}")
            continue
        n.info(
            "erlang_ranch_listener",
            "A ranch listener: its transport, protocol, address and status.",
            {"listener": ref, "transport": x.transport, "protocol": x.protocol, "ip": x.ip,
             "port": "" if x.port is None else f"{x.port:.0f}", "status": x.status},
        )  # fmt: skip
        for field, metric, kind, doc in _LISTENER_SERIES:
            value = getattr(x, field)
            if kind == "counter":
                n.counter(metric, doc, value, listener=ref)
            else:
                n.gauge(metric, doc, value, listener=ref)


#: RabbitMQ's resource alarms: the agent's name, rabbitmq_prometheus' family
_RABBIT_ALARMS: Final = (
    (
        "memory",
        "rabbitmq_alarms_memory_used_watermark",
        "1 if RabbitMQ's VM memory watermark alarm is in effect (publishers blocked).",
    ),
    (
        "disk",
        "rabbitmq_alarms_free_disk_space_watermark",
        "1 if RabbitMQ's free disk space watermark alarm is in effect (publishers blocked).",
    ),
    (
        "file_descriptor_limit",
        "rabbitmq_alarms_file_descriptor_limit",
        "1 if RabbitMQ's file descriptor limit alarm is in effect.",
    ),
)
#: RabbitMQ's core metrics totals: field, family (as rabbitmq_prometheus), help
_RABBIT_TOTALS: Final = (
    ("connections", "rabbitmq_connections", "Connections currently open."),
    ("channels", "rabbitmq_channels", "Channels currently open."),
    ("consumers", "rabbitmq_consumers", "Consumers currently connected."),
    ("queues", "rabbitmq_queues", "Queues available."),
)
#: messages of the node's queues: field, family over all queues, help
_RABBIT_MESSAGES: Final = (
    ("ready", "rabbitmq_queue_messages_ready", "Messages ready to be delivered to consumers"),
    (
        "unacked",
        "rabbitmq_queue_messages_unacked",
        "Messages delivered to consumers but not yet acknowledged",
    ),
    ("total", "rabbitmq_queue_messages", "Messages ready and unacknowledged"),
)


def _rabbitmq(n: NodeWriter, s: RabbitMQ) -> None:
    """Families named as rabbitmq_prometheus names them where it has the
    metric (its aggregated endpoint: node totals, no per-queue series); per
    vhost under ``rabbitmq_vhost_*``, which it does not have."""
    path = "plugins.rabbitmq"
    for part, value in (("running", s.running), ("alarms", s.alarms), ("memory", s.memory),
                        ("disk", s.disk), ("totals", s.totals), ("messages", s.messages),
                        ("vhosts", s.vhosts), ("counters", s.counters), ("cluster", s.cluster),
                        ("vhosts_down", s.vhosts_down),
                        ("top_queues", s.top_queues)):  # fmt: skip
        if isinstance(value, SectionError):
            _section_error(n, f"{path}.{part}")
    if isinstance(s.running, bool):
        n.gauge("rabbitmq_running", "1 when RabbitMQ finished booting (rabbit:is_running/0).",
                1 if s.running else 0)  # fmt: skip
    if s.alarms is not None and not isinstance(s.alarms, SectionError):
        for resource, family, doc in _RABBIT_ALARMS:
            n.gauge(family, doc, 1 if resource in s.alarms else 0)
    if isinstance(s.memory, RabbitMemory):
        n.gauge(
            "rabbitmq_process_resident_memory_bytes",
            "Memory used in bytes, as RabbitMQ's memory monitor measures it.",
            s.memory.used,
        )
        n.gauge("rabbitmq_resident_memory_limit_bytes",
                "Memory high watermark in bytes.", s.memory.limit)  # fmt: skip
    if isinstance(s.disk, RabbitDisk):
        n.gauge(
            "rabbitmq_disk_space_available_bytes", "Disk space available in bytes.", s.disk.free
        )
        n.gauge("rabbitmq_disk_space_available_limit_bytes",
                "Free disk space low watermark in bytes.", s.disk.limit)  # fmt: skip
    if isinstance(s.totals, RabbitTotals):
        for field, family, doc in _RABBIT_TOTALS:
            n.gauge(family, doc, getattr(s.totals, field))
    if isinstance(s.messages, RabbitMessages):
        for field, family, doc in _RABBIT_MESSAGES:
            n.gauge(family, doc + " (the node's queues).", getattr(s.messages, field))
    if s.vhosts is not None and not isinstance(s.vhosts, SectionError):
        for vhost, m in s.vhosts:
            n.gauge("rabbitmq_vhost_queues", "Queues of a virtual host on the node.", m.queues,
                    vhost=vhost)  # fmt: skip
            for field, family, doc in _RABBIT_MESSAGES:
                n.gauge(family.replace("rabbitmq_", "rabbitmq_vhost_", 1),
                        doc + " (a virtual host's queues on the node).",
                        getattr(m, field), vhost=vhost)  # fmt: skip
    if s.counters is not None and not isinstance(s.counters, SectionError):
        for group in s.counters:
            labels = dict(group.labels)
            for counter, count in group.values:
                family = "rabbitmq_global_" + counter.removesuffix("_total")
                n.counter(family, f"RabbitMQ's global counter {counter}.", count, **labels)
    if isinstance(s.cluster, RabbitCluster):
        c = s.cluster
        if c.name is not None:
            n.info("rabbitmq_identity", "RabbitMQ node & cluster identity info",
                   {"rabbitmq_cluster": c.name})  # fmt: skip
        n.gauge("rabbitmq_cluster_members", "Disc and RAM nodes of the RabbitMQ cluster.",
                c.nodes)  # fmt: skip
        n.gauge(
            "rabbitmq_cluster_members_running",
            "Members of the RabbitMQ cluster running, as this node sees them.",
            c.running,
        )
        n.gauge("rabbitmq_partitions",
                "Nodes this node sees itself partitioned from (rabbit_node_monitor).",
                len(c.partitions))  # fmt: skip
    if s.top_queues is not None and not isinstance(s.top_queues, SectionError):
        for q in s.top_queues:  # opted in: rabbitmq_prometheus' per-object names
            for field, family, doc in _RABBIT_MESSAGES:
                n.gauge(family.replace("rabbitmq_", "rabbitmq_detailed_", 1),
                        doc + " (one of the queues with the most, top_queues).",
                        getattr(q, field), vhost=q.vhost, queue=q.name)  # fmt: skip
    if s.vhosts_down is not None and not isinstance(s.vhosts_down, SectionError):
        n.gauge("rabbitmq_vhosts_down",
                "Virtual hosts whose supervisor or message stores are down.",
                len(s.vhosts_down))  # fmt: skip


def _ejabberd(n: NodeWriter, s: Ejabberd) -> None:
    path = "plugins.ejabberd"
    for part, value in (("sessions", s.sessions), ("hosts", s.hosts), ("s2s", s.s2s),
                        ("queues", s.queues), ("cluster_nodes", s.cluster_nodes)):  # fmt: skip
        if isinstance(value, SectionError):
            _section_error(n, f"{path}.{part}")
    if isinstance(s.sessions, float):
        n.gauge("erlang_ejabberd_sessions", "XMPP client (c2s) sessions on the node.", s.sessions)
    if s.hosts is not None and not isinstance(s.hosts, SectionError):
        for host, h in s.hosts:
            n.gauge("erlang_ejabberd_vhost_sessions", "c2s sessions of a virtual host on the node.",
                    h.sessions, vhost=host)  # fmt: skip
            n.gauge("erlang_ejabberd_vhost_registered_users",
                    "Users registered on a virtual host (internal auth).", h.users,
                    vhost=host)  # fmt: skip
    if s.s2s is not None and not isinstance(s.s2s, SectionError):
        for direction, count in s.s2s:
            n.gauge("erlang_ejabberd_s2s_connections", "Server-to-server connections.", count,
                    direction=direction)  # fmt: skip
    if s.queues is not None and not isinstance(s.queues, SectionError):
        for process, length in s.queues:
            n.gauge("erlang_ejabberd_process_message_queue_len",
                    "Messages waiting in one of ejabberd's central processes (router, "
                    "session manager, ...).", length, process=process)  # fmt: skip
    if isinstance(s.cluster_nodes, float):
        n.gauge("erlang_ejabberd_cluster_nodes", "ejabberd cluster members running (mnesia).",
                s.cluster_nodes)  # fmt: skip


def _yaws(n: NodeWriter, s: Yaws) -> None:
    n.gauge("erlang_yaws_servers", "Yaws server groups (address and port) on the node.",
            len(s.servers))  # fmt: skip
    for key, x in s.servers:
        if isinstance(x, SectionError):
            _section_error(n, f"plugins.yaws.servers.{key}")
            continue
        n.info("erlang_yaws_server", "A Yaws server group: its address, port and servernames.",
               {"server": key, "ip": x.ip, "port": "" if x.port is None else f"{x.port:.0f}",
                "names": ",".join(x.names)})  # fmt: skip
        n.gauge("erlang_yaws_active_connections", "Connections a Yaws server group has open.",
                x.active_connections, server=key)  # fmt: skip
        n.counter("erlang_yaws_accepted_connections",
                  "Connections a Yaws server group accepted since it started.", x.accepted,
                  server=key)  # fmt: skip
        n.counter("erlang_yaws_requests",
                  "Requests a Yaws server group served on the connections it closed.",
                  x.requests, server=key)  # fmt: skip


def _lager(n: NodeWriter, s: Lager) -> None:
    n.gauge("erlang_lager_sync_mode",
            "1 when lager logs synchronously: its event queue went over async_threshold "
            "and every logging process waits for the backends (overload).",
            s.sync_mode)  # fmt: skip
    n.gauge("erlang_lager_event_queue_len", "Messages waiting in lager's event manager.",
            s.event_queue)  # fmt: skip
    n.gauge("erlang_lager_error_logger_hwm",
            "Redirected error_logger messages a second lager lets through (more are dropped).",
            s.error_logger_hwm)  # fmt: skip


_NOT_NAME: Final = re.compile(r"[^a-zA-Z0-9_]+")
_RATE_WINDOWS: Final = (("one", "1m"), ("five", "5m"), ("fifteen", "15m"))


def folsom_family(name: str) -> str:
    """A folsom metric's name as a Prometheus family: ``folsom_`` and the
    name with every run of other characters than letters, digits and ``_``
    made one ``_`` (``{riak_kv, node.gets}`` -> ``folsom_riak_kv_node_gets``)."""
    return "folsom_" + (_NOT_NAME.sub("_", name).strip("_") or "unnamed")


def _folsom(n: NodeWriter, s: Folsom) -> None:
    """Each metric under its own family, its name as written by the node in
    the ``folsom_name`` label.  Two metrics whose names clean up to one family
    of different kinds: the second is left out (it would mix types)."""
    kinds: dict[str, str] = {}

    def claim(family: str, kind: str) -> bool:
        return kinds.setdefault(family, kind) == kind

    for m in s.metrics:
        base = folsom_family(m.name)
        f = m.fields
        label = {"folsom_name": m.name}
        if m.type in ("counter", "gauge"):
            if claim(base, "gauge"):
                n.gauge(base, f"folsom {m.type} {m.name}", f.get("value"), **label)
        elif m.type in ("meter", "spiral"):
            if not claim(base, "counter"):
                continue
            n.counter(base, f"folsom {m.type} {m.name}: events", f.get("count"), **label)
            if m.type == "spiral":
                if claim(base + "_last_minute", "gauge"):
                    n.gauge(
                        base + "_last_minute",
                        f"folsom spiral {m.name}: events in the last minute",
                        f.get("one"),
                        **label,
                    )
            elif claim(base + "_rate", "gauge") and claim(base + "_mean_rate", "gauge"):
                for key, window in _RATE_WINDOWS:
                    n.gauge(
                        base + "_rate",
                        f"folsom meter {m.name}: events per second, moving average",
                        f.get(key),
                        **label,
                        window=window,
                    )
                n.gauge(
                    base + "_mean_rate",
                    f"folsom meter {m.name}: events per second since it was made",
                    f.get("mean"),
                    **label,
                )
        elif m.type in ("histogram", "duration"):
            parts = ("", "_samples", "_min", "_max", "_mean")
            if not all(claim(base + part, "gauge") for part in parts):
                continue
            what = f"folsom {m.type} {m.name}"
            for p, value in m.percentiles:  # folsom's 999 is the 99.9th
                percentile = f"{p // 10}.{p % 10}" if p >= 100 else str(p)
                n.gauge(base, f"{what}: percentiles", value, **label, percentile=percentile)
            n.gauge(base + "_samples", f"{what}: samples kept", f.get("n"), **label)
            n.gauge(base + "_min", f"{what}: smallest sample", f.get("min"), **label)
            n.gauge(base + "_max", f"{what}: largest sample", f.get("max"), **label)
            n.gauge(base + "_mean", f"{what}: mean of the samples", f.get("arithmetic_mean"),
                    **label)  # fmt: skip
            if m.type == "duration" and claim(base + "_events", "counter"):
                n.counter(base + "_events", f"{what}: events timed", f.get("count"), **label)


def _os_mon(n: NodeWriter, snap: NodeSnapshot) -> None:
    s = snap.os_mon
    if s is None:
        return
    parts: tuple[tuple[str, object, Callable[[NodeWriter, Any], None]], ...] = (
        ("cpu", s.cpu, _os_mon_cpu),
        ("memory", s.memory, _os_mon_memory),
        ("disk", s.disk, _os_mon_disk),
    )
    for part, sub, render in parts:
        if isinstance(sub, SectionError):
            _section_error(n, f"plugins.os_mon.{part}")
        elif sub is not None:
            render(n, sub)


def _os_mon_cpu(n: NodeWriter, s: OsMonCpu) -> None:
    n.gauge("erlang_os_mon_cpu_load1", "Host load average over 1 minute.", s.load1)
    n.gauge("erlang_os_mon_cpu_load5", "Host load average over 5 minutes.", s.load5)
    n.gauge("erlang_os_mon_cpu_load15", "Host load average over 15 minutes.", s.load15)
    n.gauge("erlang_os_mon_os_processes", "OS processes on the host.", s.nprocs)
    if s.util is not None:
        for mode, v in sorted(s.util.items()):
            if mode == "busy":
                n.gauge(
                    "erlang_os_mon_cpu_busy_ratio",
                    "Host CPU busy fraction since the previous snapshot.",
                    v / 100,
                )
            else:
                n.gauge(
                    "erlang_os_mon_cpu_utilization_ratio",
                    "Host CPU time fraction by mode since the previous snapshot.",
                    v / 100,
                    mode=mode,
                )


def _os_mon_memory(n: NodeWriter, s: OsMonMemory) -> None:
    if s.system is not None:
        for key, value in s.system.items():
            spec = _MEMSUP.get(key)
            if spec is not None:
                n.gauge(spec[0], spec[1], value)
    n.gauge(
        "erlang_os_mon_memory_allocated_bytes",
        "Memory allocated on the host at memsup's last check.",
        s.allocated,
    )
    n.gauge(
        "erlang_os_mon_memory_worst_process_bytes",
        "Memory of the node's largest process at memsup's last check.",
        s.worst_process,
    )
    for key, name, doc in (
        (
            "system_high_watermark",
            "erlang_os_mon_memory_system_high_watermark_ratio",
            "memsup's system memory alarm threshold.",
        ),
        (
            "process_high_watermark",
            "erlang_os_mon_memory_process_high_watermark_ratio",
            "memsup's process memory alarm threshold.",
        ),
    ):
        v = getattr(s, key)
        if v is not None:
            n.gauge(name, doc, v / 100)


def _os_mon_disk(n: NodeWriter, s: OsMonDisk) -> None:
    for d in s.disks or ():
        mount = d.mount
        kib, cap = d.total_kib, d.capacity
        if kib is not None:
            n.gauge(
                "erlang_os_mon_disk_size_bytes", "Size of a mounted disk.", kib * 1024, mount=mount
            )
        if cap is not None:
            n.gauge(
                "erlang_os_mon_disk_used_ratio",
                "Used fraction of a mounted disk.",
                cap / 100,
                mount=mount,
            )
    v = s.almost_full_threshold
    if v is not None:
        n.gauge(
            "erlang_os_mon_disk_almost_full_threshold_ratio",
            "disksup's disk almost full alarm threshold.",
            v / 100,
        )


def _mnesia(n: NodeWriter, s: Mapping[str, Any], snap: NodeSnapshot) -> None:
    running = text(s.get("is_running"))
    n.gauge("erlang_mnesia_running", "1 if mnesia is running on the node.", running == "yes")
    if running != "yes":
        return
    n.gauge("erlang_mnesia_held_locks", "Locks held by mnesia.", s.get("held_locks"))
    n.gauge("erlang_mnesia_lock_queue", "Transactions waiting for a lock.", s.get("lock_queue"))
    tx = s.get("transactions")
    if isinstance(tx, dict):
        n.gauge(
            "erlang_mnesia_transaction_participants",
            "Transactions this node takes part in.",
            tx.get("participants"),
        )
        n.gauge(
            "erlang_mnesia_transaction_coordinators",
            "Transactions this node coordinates.",
            tx.get("coordinators"),
        )
    elif is_error(tx):
        _section_error(n, "plugins.mnesia.transactions")
    for key, name, doc in _MNESIA_COUNTERS:
        n.counter(name, doc, s.get(key))
    n.gauge("erlang_mnesia_db_nodes", "Nodes of the mnesia schema.", s.get("db_nodes"))
    n.gauge(
        "erlang_mnesia_running_db_nodes",
        "Nodes of the schema where mnesia runs.",
        s.get("running_db_nodes"),
    )
    tables = s.get("tables")
    if not isinstance(tables, dict):
        return
    n.gauge("erlang_mnesia_tables", "Tables of the schema (up to max_tables).", len(tables))
    total = 0.0
    for table, info in _sorted(tables):
        if not isinstance(info, dict):
            continue
        t = text(table)
        storage = text(info.get("storage_type"))
        mem = num(info.get("memory_bytes"))
        if mem is not None:
            total += mem
            n.gauge(
                "erlang_mnesia_tablewise_memory_usage_bytes",
                "Memory of each table's local copy.",
                mem,
                table=t,
                type=storage,
            )
        n.gauge(
            "erlang_mnesia_tablewise_size",
            "Records in each table's local copy.",
            info.get("size"),
            table=t,
        )
    n.gauge(
        "erlang_mnesia_memory_usage_bytes",
        "Memory of all local table copies.",
        total,
    )


#: plugins (other than os_mon, which is typed) rendered from their map as sent
#: how deep a user plugin's section is read, and its names' parts at most
_USER_DEPTH: Final = 4
_USER_PART: Final = 40


def _user_plugin(name: str) -> Renderer:
    """The renderer of a section an operator's own plugin (``plugins.directory``)
    sent: every number in it (a boolean is 0 or 1) is a gauge named
    ``erlang_plugin_<plugin>_<the atom keys down to it, joined by _>``; a map
    keyed by binaries (names) gives a label named after the atom key holding
    it (``#{pools => #{<<"db">> => #{size => 10}}}`` in plugin ``mine`` is
    ``erlang_plugin_mine_pools_size{pools="db"} 10``, and
    ``#{queues => #{<<"q1">> => 5}}`` is ``erlang_plugin_mine_queues{queues="q1"} 5``).
    Names are cleaned to Prometheus' rules; anything else (lists, strings,
    deeper than 4 levels) is left out; the node's plugin series budget applies."""

    def clean(part: str) -> str:
        return _NOT_NAME.sub("_", part).strip("_")[:_USER_PART]

    plugin = clean(name) or "plugin"
    prefix = f"erlang_plugin_{plugin}"

    def label_name(part: str) -> str:
        if part[0].isdigit() or part in BASE_LABELS:
            return f"plugin_{part}"
        return part

    def render(n: NodeWriter, s: Mapping[str, Any], snap: NodeSnapshot) -> None:
        seen: dict[str, tuple[str, ...]] = {}

        def gauge(family: str, value: Any, labels: dict[str, str]) -> None:
            if seen.setdefault(family, tuple(labels)) == tuple(labels):  # one label set
                doc = f"{plugin} plugin: {family.removeprefix(prefix + '_')}"
                n.gauge(family, doc, value, **labels)

        def walk(
            tree: Mapping[Any, Any], family: str, labels: dict[str, str], by: str | None, depth: int
        ) -> None:
            for key, value in _sorted(tree):
                if isinstance(key, bytes):  # a name: the label ``by``
                    if by is None:
                        continue
                    named = {**labels, by: key.decode("utf-8", "replace")}
                    if isinstance(value, dict):
                        if depth < _USER_DEPTH:
                            walk(value, family, named, None, depth + 1)
                    else:
                        gauge(family, value, named)
                    continue
                part = clean(text(key))
                if not part:
                    continue
                full = f"{family}_{part}"
                if not isinstance(value, dict):
                    gauge(full, value, labels)
                elif depth < _USER_DEPTH:
                    names = bool(value) and all(isinstance(k, bytes) for k in value)
                    by_next = label_name(part) if names and part not in labels else None
                    walk(value, full, labels, by_next, depth + 1)

        walk(s, prefix, {}, None, 1)

    return render


_PLUGINS: Final[Mapping[str, Renderer]] = {"mnesia": _mnesia}

SectionRenderer = Callable[[NodeWriter, NodeSnapshot], None]


def _bound(tree: Mapping[str, Any], render: Renderer) -> SectionRenderer:
    return lambda n, snap: render(n, tree, snap)


def _tree(key: str, render: Renderer) -> SectionRenderer:
    def section(n: NodeWriter, snap: NodeSnapshot) -> None:
        tree = n.trees.get(key)
        if tree is not None:
            render(n, tree, snap)

    return section


#: in exposition order (a family appears where its first sample is added)
_SECTIONS: Final[Sequence[tuple[str, SectionRenderer]]] = (
    ("versions", _versions),
    ("memory", _memory),
    ("allocators", _tree("allocators", _allocators)),
    ("allocated_areas", _tree("allocated_areas", _allocated_areas)),
    ("limits", _limits),
    ("system", _system),
    ("run_queues", _tree("run_queues", _run_queues)),
    ("statistics", _tree("statistics", _statistics)),
    ("scheduler_utilization", _tree("scheduler_utilization", _scheduler_utilization)),
    ("msacc", _tree("msacc", _msacc)),
    ("processes", _processes),
    ("ports", _tree("ports", _ports)),
    ("ets", _tree("ets", _ets)),
    ("kernel", _tree("kernel", _kernel)),
    ("dist", _tree("dist", _dist)),
    ("sysmon", _sysmon),
    ("plugins", _plugins),
    ("alarms", _alarms),
    ("time", _time),
)


def _sorted(tree: Mapping[Any, Any]) -> list[tuple[Any, Any]]:
    """A map's items by key; keys of mixed types (a misbehaving node) by their text."""
    try:
        return sorted(tree.items())
    except TypeError:
        return sorted(tree.items(), key=lambda item: key_text(item[0]))


def _list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else ()


def _section_error(n: NodeWriter, section: str) -> None:
    n.gauge(
        SECTION_ERROR,
        "1 for each snapshot section the node could not compute.",
        1,
        section=section,
    )


def _guarded(n: NodeWriter, key: str, render: SectionRenderer, snap: NodeSnapshot) -> None:
    try:
        render(n, snap)
    except (KeyError, TypeError, ValueError, AttributeError):  # a renderer bug: one section lost
        log.warning("cannot render section %s", key, exc_info=True)
        _section_error(n, key)


def _agent(n: NodeWriter, snap: NodeSnapshot) -> None:
    us = snap.agent_duration_us
    if us is not None:
        n.gauge(
            "beamside_agent_collect_duration_seconds",
            "Time the last collect took on the node.",
            us / 1e6,
        )


# --------------------------------------------------------------------------- API


def render_node(n: NodeWriter, snap: NodeSnapshot) -> None:
    """Every sample of one node's snapshot, in exposition order, into ``n``."""
    _agent(n, snap)
    n.trees, unpacked = snap.exporter_trees()
    if "packed" in unpacked or "packed" in snap.errors:
        _section_error(n, "packed")
    for key, render in _SECTIONS:
        if key in snap.errors or key in unpacked:
            _section_error(n, key)
        else:
            _guarded(n, key, render, snap)


def vm_metric_families(
    snapshots: Iterable[NodeSnapshot],
    *,
    series_budget: int | None = None,
    dropped: dict[str, dict[str, int]] | None = None,
) -> list[Metric]:
    """The metric families of the given snapshots (one family per name, with
    the samples of every node).

    ``series_budget``: at most that many samples per node from the plugin
    sections (None: no limit); what is dropped is added to ``dropped``
    (node -> family name -> samples) when given.  This is the reference the
    cached exposition (:mod:`sidecar.exporter.exposition`) renders the same
    bytes as.
    """
    families = _Families()
    for snap in snapshots:
        n = _SampleWriter(families, snap, series_budget)
        render_node(n, snap)
        if dropped is not None and n.dropped:
            dropped[snap.node] = dict(n.dropped)
    return families.collect()
