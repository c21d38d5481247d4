"""``beamside run``: the daemon wiring (local node, node manager, HTTP endpoint).

Runs until ``stop`` is set (SIGTERM/SIGINT in the CLI), then stops
collecting, detaches from every node, and closes the HTTP endpoint last so
the final state can still be scraped while detaching.
"""

from __future__ import annotations

import asyncio
import logging

from sidecar.exporter.collector import MetricsProvider, build_registry
from sidecar.exporter.http import MetricsServer
from sidecar.exporter.otlp import OtlpBridge, otlp_http_reader

from . import __version__
from .agents.events import EVENTS_MAILBOX
from .alarms.alertmanager import AlertmanagerSink
from .alarms.checks import AlarmChecker
from .alarms.engine import AlarmEngine
from .config import Config
from .control.base import Deps
from .control.server import bound_port, create_server, set_serving
from .discovery.sharding import SINGLE, ShardSpec
from .erldist.names import NodeName, default_local_name, parse_node_name
from .erldist.node import LocalNode
from .gc_policy import keep_tuned
from .loki.sink import LokiSink
from .manager import NodeManager
from .notify import Notifier

log = logging.getLogger(__name__)


def local_name_for(config: Config) -> NodeName:
    """Our hidden node's name: configured, else one of the same kind as the targets."""
    if config.node_name:
        return parse_node_name(config.node_name)
    return default_local_name(parse_node_name(config.targets[0].nodes[0]), "beamside")


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        epmd_port: int | None = None,
        shard: ShardSpec = SINGLE,
        gc_tuning: bool = False,
    ) -> None:
        self.config = config
        #: the collector's thresholds follow the nodes (``beamside run``'s process)
        self.gc_tuning = gc_tuning
        # The default cookie is never used: every target brings its own.
        self.local = LocalNode(
            local_name_for(config),
            "unused-default",
            epmd_port=epmd_port,
            limits=config.distribution,  # memory budget and net_ticktime (issue 14)
        )
        self.alarms = AlarmEngine(config.cluster)
        self.checker = AlarmChecker(
            self.alarms,
            config.alarms.overrides,
            config.alarms.global_params,
            interval=config.intervals.metrics,
        )
        extra: list[MetricsProvider] = []
        self.loki: LokiSink | None = None
        if config.loki is not None:
            self.loki = LokiSink(config.loki)
            extra.append(self.loki.metric_families)
        self.notifier = Notifier(
            config.cluster,
            self._family_of,
            self.loki.publish if self.loki is not None else None,
            logs=config.logs,
            notifications=config.notifications,
        )
        extra.append(self.notifier.metric_families)
        if self.loki is not None:
            self.alarms.subscribe(self.notifier.alarm_event)
            # Node agents push event batches here (see sidecar.agents.events).
            self.local.mailbox(EVENTS_MAILBOX, callback=self.notifier.on_message)
            # ... and keep each batch until we acknowledge it (once durable).
            self.notifier.enable_acks(self.local, self.loki)
        self.manager = NodeManager(
            config.manager_config(), self.local, self.checker, shard=shard, hooks=self.notifier
        )
        self.alertmanager: AlertmanagerSink | None = None
        if config.alertmanager is not None:
            self.alertmanager = AlertmanagerSink(config.alertmanager, config.cluster)
            self.alarms.subscribe(self.alertmanager.publish)
            extra.append(self.alertmanager.metric_families)
        self.registry = build_registry(
            self.manager,
            __version__,
            alarms=self.alarms,
            extra=extra,
            series_budget=config.metrics.series_budget,
        )
        # each new snapshot rendered as it comes while scrapes read every one
        self.manager.snapshot_listeners.append(self.registry.collector.cache.prepare)
        host, port = config.http_listen
        self.http = MetricsServer(self.registry, host, port, ready=lambda: self.manager.ready)
        # The control plane: bound now (a taken port fails at startup), served in run().
        self.grpc = create_server(
            Deps(
                self.manager,
                self.alarms,
                self.checker,
                audit=self.notifier.audit,
                trace_events=self.notifier.trace_event,
            ),
            config.grpc,
        )
        self.otlp: OtlpBridge | None = None
        if config.otlp is not None:
            reader = otlp_http_reader(
                config.otlp.endpoint, config.otlp.interval, dict(config.otlp.headers)
            )
            self.otlp = OtlpBridge(self.registry, reader)

    def _family_of(self, node: str) -> str:
        status = self.manager.status(node)
        return status.family if status is not None else "unknown"

    async def _refresh_otlp(self, bridge: OtlpBridge, interval: float) -> None:
        while True:
            bridge.refresh()
            await asyncio.sleep(interval / 2)

    async def run(self, stop: asyncio.Event) -> None:
        self.http.start()
        log.info(
            "beamside %s serving %s/metrics as %s",
            __version__,
            self.http.url,
            self.local.name,
            extra={"cluster": self.config.cluster},
        )
        refresher: asyncio.Task[None] | None = None
        gc_tuner: asyncio.Task[None] | None = None
        if self.gc_tuning:
            gc_tuner = asyncio.create_task(
                keep_tuned(lambda: len(self.manager.statuses())), name="gc thresholds"
            )
        try:
            if self.loki is not None:
                await self.loki.start()
            if self.alertmanager is not None:
                await self.alertmanager.start()
            await self.manager.start()
            await self.grpc.start()
            await set_serving(self.grpc, True)
            log.info("gRPC control plane on port %d", bound_port(self.grpc))
            if self.otlp is not None and self.config.otlp is not None:
                refresher = asyncio.create_task(
                    self._refresh_otlp(self.otlp, self.config.otlp.interval), name="otlp refresh"
                )
            await stop.wait()
            log.info("stopping: detaching from %d node(s)", len(self.manager.statuses()))
        finally:
            for task in (refresher, gc_tuner):
                if task is not None:
                    task.cancel()
            await set_serving(self.grpc, False)
            await self.grpc.stop(2.0)  # in-flight calls get 2 s
            await self.manager.stop()
            await self.notifier.aclose()
            if self.alertmanager is not None:
                await self.alertmanager.stop()
            if self.loki is not None:
                # Last: what detaching produced is delivered or spooled too.
                await self.loki.stop()
            if self.otlp is not None:
                self.otlp.refresh()
                await asyncio.to_thread(self.otlp.shutdown)
            self.http.stop()
            log.info("stopped")
