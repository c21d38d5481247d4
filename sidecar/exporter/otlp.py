"""OTLP push of the same series ``/metrics`` serves (off unless ``otlp.endpoint`` is set).

The Prometheus registry stays the single source: :meth:`OtlpBridge.refresh`
renders it (from snapshots, no network) and keeps the samples; one
observable OpenTelemetry instrument per sample name reads them when the
SDK's periodic reader exports.  Counters stay counters (cumulative), the
rest are gauges; labels become attributes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from prometheus_client.registry import CollectorRegistry

log = logging.getLogger(__name__)

Points = list[tuple[float, dict[str, str]]]


def otlp_http_reader(
    endpoint: str, interval: float, headers: Mapping[str, str] | None = None
) -> MetricReader:
    """A periodic reader pushing OTLP/HTTP (protobuf) to ``endpoint``."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    exporter = OTLPMetricExporter(endpoint=endpoint, headers=dict(headers or {}), timeout=10)
    return PeriodicExportingMetricReader(exporter, export_interval_millis=int(interval * 1000))


class OtlpBridge:
    def __init__(
        self, registry: CollectorRegistry, reader: MetricReader, *, service: str = "beamside"
    ) -> None:
        self._registry = registry
        self._provider = MeterProvider(
            metric_readers=[reader], resource=Resource.create({"service.name": service})
        )
        self._meter = self._provider.get_meter("beamside")
        self._latest: dict[str, Points] = {}
        self._instruments: set[str] = set()

    def refresh(self) -> None:
        """Render the registry once and create instruments for new series names."""
        latest: dict[str, Points] = {}
        counters: set[str] = set()
        helps: dict[str, str] = {}
        for family in self._registry.collect():
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                latest.setdefault(sample.name, []).append((sample.value, dict(sample.labels)))
                helps[sample.name] = family.documentation
                if family.type == "counter":
                    counters.add(sample.name)
        self._latest = latest  # swapped whole: the export thread reads it
        for name in sorted(latest.keys() - self._instruments):
            callback = self._callback(name)
            if name in counters:
                self._meter.create_observable_counter(name, [callback], description=helps[name])
            else:
                self._meter.create_observable_gauge(name, [callback], description=helps[name])
            self._instruments.add(name)

    def _callback(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(value, attrs) for value, attrs in self._latest.get(name, ())]

        return observe

    def shutdown(self) -> None:
        """Flush what is pending and stop the reader."""
        try:
            self._provider.shutdown()
        except Exception as exc:  # a receiver that is down must not block exit
            log.warning("OTLP shutdown: %s", exc)
