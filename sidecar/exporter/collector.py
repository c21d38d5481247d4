"""The Prometheus collector: renders the last snapshots, never calls a node.

``collect()`` reads what the node manager last stored (whole objects replaced
atomically by the manager), so a scrape costs only rendering, whatever state
the managed nodes are in.  ``/metrics`` does not go through ``collect()``:
:meth:`BeamsideCollector.exposition` writes the node families from the
per-snapshot text cache (:mod:`sidecar.exporter.exposition`, the same bytes
at the cost of a concatenation) and only beamside's own families (node
states, alarms, the sinks' metrics: small) through prometheus_client.
``collect()`` stays the reference (``generate_latest(registry)`` works).

Plugin families (``snapshot.plugins``: mnesia, os_mon, application plugins)
get at most ``series_budget`` samples per node (default 1,000); the rest
are dropped and counted in
``beamside_series_dropped_total{node,family,cluster,metric_family}``, where
``family`` is the node's family as on every series and ``metric_family`` the
metric family whose samples were dropped (e.g. ``erlang_mnesia_tablewise_size``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from sidecar.alarms.model import Alarm
from sidecar.model import NodeSnapshot, NodeState, NodeStatus

from .exposition import (
    ExpositionCache,
    Format,
    Unsupported,
    escape_value,
    format_families,
    format_lines,
    generate,
    go_float,
    write_texts,
)
from .vm_metrics import vm_metric_families

NODE_LABELS = ["node", "family", "cluster"]


class SnapshotSource(Protocol):
    """The node manager, as far as the exporter is concerned."""

    cluster: str

    @property
    def snapshots(self) -> Mapping[str, NodeSnapshot]: ...
    def statuses(self) -> Sequence[NodeStatus]: ...


class AlarmSource(Protocol):
    """The alarm engine, as far as the exporter is concerned."""

    def active(self) -> Sequence[Alarm]: ...


MetricsProvider = Callable[[], Iterable[Metric]]
#: up, state, agent, duration, last_ok, age (gauges), errors, failures, attaches (counters)
_NodeFamilies = tuple[
    GaugeMetricFamily,
    GaugeMetricFamily,
    GaugeMetricFamily,
    GaugeMetricFamily,
    GaugeMetricFamily,
    GaugeMetricFamily,
    CounterMetricFamily,
    CounterMetricFamily,
    CounterMetricFamily,
]


class BeamsideCollector(Collector):
    def __init__(
        self,
        source: SnapshotSource,
        version: str,
        *,
        alarms: AlarmSource | None = None,
        extra: Sequence[MetricsProvider] = (),
        series_budget: int = 1000,
    ) -> None:
        self._source = source
        self._version = version
        self._alarms = alarms
        self._extra = tuple(extra)
        self.cache = ExpositionCache(series_budget)
        #: each node's escaped node/family/cluster labels, as of the last scrape
        self._label_texts: dict[tuple[str, str], str] = {}

    def collect(self) -> Iterator[Metric]:
        """Every family through prometheus_client's objects (the reference)."""
        snapshots = list(self._source.snapshots.values())
        statuses = list(self._source.statuses())
        dropped: dict[str, dict[str, int]] = {}
        yield from vm_metric_families(
            snapshots, series_budget=self.cache.series_budget, dropped=dropped
        )
        self.cache.count_dropped(snapshots, dropped)
        self.cache.forget_others(s.node for s in snapshots)
        yield from self._beamside(statuses)

    def exposition(self, fmt: Format) -> bytes:
        """What ``generate``/``generate_latest`` would give for ``fmt``, from the cache."""
        body = self.exposition_buffer(fmt)
        return body if isinstance(body, bytes) else bytes(body)

    def exposition_buffer(self, fmt: Format) -> bytes | bytearray:
        """:meth:`exposition` as the HTTP server sends it: the body built in
        one buffer of its size, never copied."""
        # list() of a dict's values is atomic under the GIL: the manager may replace
        # snapshots meanwhile, this scrape renders the ones it read
        snapshots = list(self._source.snapshots.values())
        statuses = list(self._source.statuses())
        try:
            texts = self.cache.texts(snapshots, fmt)
        except Unsupported:  # a name outside the legacy set, escaping=allow-utf-8
            return generate(fmt, self)
        # fresh at every scrape (a dozen series per node): formatted as the node
        # texts, after them (the plugin series they dropped are counted there)
        try:
            own = self._own_text(statuses, fmt) + format_families(self._beamside_rest(), fmt)
        except Unsupported:
            own = format_families(self._beamside(statuses), fmt)
        return write_texts(texts, fmt, own + (b"# EOF\n" if fmt.openmetrics else b""))

    def _beamside(self, statuses: Sequence[NodeStatus]) -> Iterator[Metric]:
        """beamside's own families, fresh at every scrape."""
        yield from self._own(statuses)
        yield from self._beamside_rest()

    def _beamside_rest(self) -> Iterator[Metric]:
        """Those after the per-node ones of :meth:`_own`."""
        yield self._dropped_family()
        if self._alarms is not None:
            yield self._alarm_family(self._alarms.active())
        for provider in self._extra:
            yield from provider()

    def _dropped_family(self) -> Metric:
        family = CounterMetricFamily(
            "beamside_series_dropped",
            "Plugin samples left out of /metrics because the node's plugin families went "
            "over the series budget, by metric family (metric_family; family is the node's)",
            labels=[*NODE_LABELS, "metric_family"],
        )
        cluster = self._source.cluster
        snapshots = self._source.snapshots
        for node, counts in sorted(self.cache.dropped().items()):
            snap = snapshots.get(node)
            node_family = snap.family if snap is not None else ""
            for name, count in sorted(counts.items()):
                family.add_metric([node, node_family, cluster, name], float(count))
        return family

    def _alarm_family(self, active: Sequence[Alarm]) -> Metric:
        family = GaugeMetricFamily(
            "beamside_alarm_active",
            "1 for each active alarm (node is empty for a family-wide alarm)",
            labels=["alarm", "severity", "node", "family", "cluster"],
        )
        for alarm in active:
            family.add_metric(
                [alarm.id, str(alarm.severity), alarm.node, alarm.family, self._source.cluster],
                1.0,
            )
        return family

    def _own(self, statuses: Sequence[NodeStatus]) -> Iterator[Metric]:
        yield from self._own_totals(len(statuses))
        cluster = self._source.cluster
        families = self._own_node_families()
        up, state, agent, duration, last_ok, age, errors, failures, attaches = families
        now = time.time()
        for s in statuses:
            labels = [s.node, s.family, cluster]
            is_up = s.state is NodeState.UP
            up.add_metric(labels, 1.0 if is_up else 0.0)
            for name in NodeState:
                state.add_metric([*labels, name.value], 1.0 if s.state is name else 0.0)
            agent.add_metric(labels, float(s.agent_version if is_up else 0))
            duration.add_metric(labels, s.last_collect_duration)
            errors.add_metric(labels, float(s.collect_errors))
            attaches.add_metric(labels, float(s.attaches))
            for reason, count in sorted(s.connect_failures.items()):
                failures.add_metric([*labels, reason], float(count))
            if s.last_success:
                last_ok.add_metric(labels, s.last_success)
                age.add_metric(labels, max(now - s.last_success, 0.0))
        yield from families

    def _own_totals(self, managed_count: int) -> list[Metric]:
        cluster = self._source.cluster
        build = InfoMetricFamily("beamside_build", "beamside version", labels=["cluster"])
        build.add_metric([cluster], {"version": self._version})
        managed = GaugeMetricFamily(
            "beamside_nodes_managed", "Nodes beamside manages", labels=["cluster"]
        )
        managed.add_metric([cluster], managed_count)
        return [build, managed]

    @staticmethod
    def _own_node_families() -> _NodeFamilies:
        """The per-node families of :meth:`_own`, without samples, in order."""
        return (
            GaugeMetricFamily(
                "beamside_node_up", "1 when beamside is attached to the node", labels=NODE_LABELS
            ),
            GaugeMetricFamily(
                "beamside_node_state",
                "The node's attachment state (1 for the current state)",
                labels=[*NODE_LABELS, "state"],
            ),
            GaugeMetricFamily(
                "beamside_agent_version",
                "Version of the agent loaded on the node (0 when not attached)",
                labels=NODE_LABELS,
            ),
            GaugeMetricFamily(
                "beamside_collect_duration_seconds",
                "Time the last collection on the node took, round trip",
                labels=NODE_LABELS,
            ),
            GaugeMetricFamily(
                "beamside_collect_last_success_timestamp_seconds",
                "Unix time of the last successful collection on the node",
                labels=NODE_LABELS,
            ),
            GaugeMetricFamily(
                "beamside_snapshot_age_seconds",
                "Age of the snapshot the node's series come from",
                labels=NODE_LABELS,
            ),
            CounterMetricFamily(
                "beamside_collect_errors", "Failed collections on the node", labels=NODE_LABELS
            ),
            CounterMetricFamily(
                "beamside_node_connect_failures",
                "Failed attempts to connect to the node, by reason",
                labels=[*NODE_LABELS, "reason"],
            ),
            CounterMetricFamily(
                "beamside_node_attaches",
                "Times beamside attached to the node (first time and after each reconnect)",
                labels=NODE_LABELS,
            ),
        )

    def _own_text(self, statuses: Sequence[NodeStatus], fmt: Format) -> bytes:
        """:meth:`_own`'s families, the same bytes, written line by line: at
        10,000 nodes prometheus_client's ``add_metric`` for their 160,000
        samples took a sixth of the daemon's CPU."""
        cluster = self._source.cluster
        heads = self._own_node_families()
        lines: list[list[str]] = [[] for _ in heads]
        up, state, agent, duration, last_ok, age, errors, failures, attaches = lines
        states = [(x, x.value) for x in NodeState]
        known, self._label_texts = self._label_texts, {}
        now = time.time()
        for s in statuses:
            key = (s.node, s.family)
            base = known.get(key)
            if base is None:
                base = (
                    f'cluster="{escape_value(cluster)}",family="{escape_value(s.family)}",'
                    f'node="{escape_value(s.node)}"'
                )
            self._label_texts[key] = base
            is_up = s.state is NodeState.UP
            up.append(f"beamside_node_up{{{base}}} {'1.0' if is_up else '0.0'}")
            for member, value in states:
                flag = "1.0" if s.state is member else "0.0"
                state.append(f'beamside_node_state{{{base},state="{value}"}} {flag}')
            agent.append(
                f"beamside_agent_version{{{base}}} "
                f"{go_float(float(s.agent_version if is_up else 0))}"
            )
            duration.append(
                f"beamside_collect_duration_seconds{{{base}}} "
                f"{go_float(float(s.last_collect_duration))}"
            )
            errors.append(
                f"beamside_collect_errors_total{{{base}}} {go_float(float(s.collect_errors))}"
            )
            attaches.append(f"beamside_node_attaches_total{{{base}}} {go_float(float(s.attaches))}")
            for reason, count in sorted(s.connect_failures.items()):
                failures.append(
                    f'beamside_node_connect_failures_total{{{base},reason="{escape_value(reason)}"}}'
                    f" {go_float(float(count))}"
                )
            if s.last_success:
                last_ok.append(
                    f"beamside_collect_last_success_timestamp_seconds{{{base}}} "
                    f"{go_float(float(s.last_success))}"
                )
                age.append(
                    f"beamside_snapshot_age_seconds{{{base}}} "
                    f"{go_float(max(now - s.last_success, 0.0))}"
                )
        parts = [format_families(self._own_totals(len(statuses)), fmt)]
        for family, written in zip(heads, lines, strict=True):
            parts.append(format_lines(fmt, family.type, family.name, family.documentation, written))
        return b"".join(parts)


class BeamsideRegistry(CollectorRegistry):
    """Our registry: ``generate_latest(registry)`` works as for any registry,
    :meth:`exposition` is the cached path /metrics serves."""

    def __init__(self, collector: BeamsideCollector) -> None:
        super().__init__(auto_describe=False)
        self.collector = collector
        self.register(collector)

    def exposition(self, fmt: Format) -> bytes:
        return self.collector.exposition(fmt)

    def exposition_buffer(self, fmt: Format) -> bytes | bytearray:
        return self.collector.exposition_buffer(fmt)


def build_registry(
    source: SnapshotSource,
    version: str,
    *,
    alarms: AlarmSource | None = None,
    extra: Sequence[MetricsProvider] = (),
    series_budget: int = 1000,
) -> BeamsideRegistry:
    """Our own registry (never the global one) holding only our collector.

    ``series_budget``: samples per node the plugin families may have."""
    return BeamsideRegistry(
        BeamsideCollector(source, version, alarms=alarms, extra=extra, series_budget=series_budget)
    )
