"""The rabbitmq plugin against real RabbitMQ 3.10 (Debian's ``rabbitmq-server``,
started by the real-application fixtures): its memory alarm (kept by
rabbit_alarm, apart from SASL's alarm_handler, so beamside never saw it)
raised and cleared as ``rabbitmq_resource_alarm``; totals, messages per
vhost and global counters under rabbitmq_prometheus' names, the same figures
that plugin serves on the same node; ``rabbitmqctl stop_app`` seen as not
running; the per-node switch; and nothing written to RabbitMQ's log."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from sidecar import agents
from sidecar.alarms.checks import AlarmChecker
from sidecar.alarms.engine import AlarmEngine
from sidecar.erldist.node import LocalNode
from sidecar.exporter.exposition import TEXT, ExpositionCache
from sidecar.model import (
    NodeSnapshot,
    RabbitCluster,
    RabbitMemory,
    RabbitMessages,
    RabbitMQ,
    decode_snapshot,
)
from tests.realapps.applog import offending
from tests.realapps.conftest import RunningApp
from tests.support.prometheus import promtool_check_metrics

pytestmark = pytest.mark.parametrize("real_app", ["rabbitmq"], indirect=True)


class Rabbit:
    """The agents on RabbitMQ's node, collected as the node manager does."""

    def __init__(self, app: RunningApp, local: LocalNode) -> None:
        self.app, self.local, self.name = app, local, app.node.name

    def eval(self, expr: str) -> str:
        return self.app.probe.eval(expr)

    async def snapshot(self, opts: dict[str, Any] | None = None) -> NodeSnapshot:
        data = await agents.collect(self.local, self.name, opts, timeout=30)
        return decode_snapshot(
            data, node=self.name, family="rabbitmq", cluster="rt", taken_at=time.time(),
            duration=0.0,
        )  # fmt: skip

    async def section(self, opts: dict[str, Any] | None = None) -> RabbitMQ:
        snap = await self.snapshot(opts)
        assert not [k for k in snap.errors if k.startswith("plugins")], snap.errors
        assert snap.rabbitmq is not None, snap.plugin_names
        return snap.rabbitmq


@pytest.fixture
async def rabbit(app: RunningApp) -> AsyncIterator[Rabbit]:
    local = LocalNode(
        f"beamside-rmq{os.getpid()}@localhost", app.node.cookie, epmd_port=app.node.epmd_port
    )
    try:
        await agents.ensure_loaded(local, app.node.name)
        yield Rabbit(app, local)
    finally:
        await agents.detach(local, app.node.name)
        await local.close()


def _prometheus_plugin(app: RunningApp) -> dict[str, float]:
    """rabbitmq_prometheus' own samples on the same node (its aggregated endpoint)."""
    port = app.node.ports["prometheus"]
    body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    samples: dict[str, float] = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


async def test_memory_alarm_totals_and_vhosts(rabbit: Rabbit) -> None:
    app = rabbit.app
    offsets = app.node.log_offsets()
    # two vhosts, three queues, messages ready in two of them
    rabbit.eval(
        "application:set_env(rabbit, collect_statistics_interval, 200),"
        ' ok = case rabbit_vhost:exists(<<"bs_v2">>) of true -> ok;'
        ' false -> rabbit_vhost:add(<<"bs_v2">>, <<"beamside-test">>) end,'
        " Q = fun(V, N) -> QN = rabbit_misc:r(V, queue, N),"
        ' {_, _} = rabbit_amqqueue:declare(QN, false, false, [], none, <<"beamside-test">>),'
        " QN end,"
        " Pub = fun(V, N, K) -> [ok = rabbit_basic:publish(rabbit_misc:r(V, exchange, <<>>),"
        ' N, [], <<"m">>) || _ <- lists:seq(1, K)], ok end,'
        ' _ = Q(<<"/">>, <<"bs_q1">>), _ = Q(<<"/">>, <<"bs_q2">>),'
        ' _ = Q(<<"bs_v2">>, <<"bs_q3">>),'
        ' ok = Pub(<<"/">>, <<"bs_q1">>, 3), ok = Pub(<<"bs_v2">>, <<"bs_q3">>, 5).'
    )
    deadline = time.monotonic() + 20
    while True:
        s = await rabbit.section()
        vhosts = dict(s.vhosts) if isinstance(s.vhosts, tuple) else {}
        if (
            vhosts.get("bs_v2", RabbitMessages()).ready == 5
            and vhosts.get("/", RabbitMessages()).ready == 3
        ) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert s.running is True and s.version == "3.10.8"
    assert vhosts["/"] == RabbitMessages(queues=2, ready=3, unacked=0, total=3), vhosts
    assert vhosts["bs_v2"] == RabbitMessages(queues=1, ready=5, unacked=0, total=5), vhosts
    assert isinstance(s.messages, RabbitMessages) and s.messages.ready == 8
    assert not s.vhosts_truncated and s.alarms == () and s.vhosts_down == ()
    assert isinstance(s.cluster, RabbitCluster)
    assert (s.cluster.nodes, s.cluster.running, s.cluster.partitions) == (1, 1, ())
    assert isinstance(s.memory, RabbitMemory) and s.memory.used and s.memory.limit
    groups = {dict(g.labels).get("protocol"): g for g in (s.counters or ()) if not g.labels[1:]}
    assert "messages_received_total" in dict(groups["amqp091"].values), groups

    # the same figures rabbitmq_prometheus serves, under the same names
    body = ExpositionCache().exposition([await rabbit.snapshot()], TEXT).decode()
    lint = promtool_check_metrics(body.encode())
    assert lint.returncode == 0, lint.stdout + lint.stderr
    ours = {
        line.split("{")[0]: float(line.rpartition(" ")[2])
        for line in body.splitlines()
        if line.startswith("rabbitmq_") and "{" in line
    }
    theirs = _prometheus_plugin(app)
    for family in ("rabbitmq_queues", "rabbitmq_connections", "rabbitmq_channels",
                   "rabbitmq_consumers", "rabbitmq_queue_messages_ready",
                   "rabbitmq_queue_messages", "rabbitmq_resident_memory_limit_bytes",
                   "rabbitmq_disk_space_available_limit_bytes",
                   "rabbitmq_alarms_memory_used_watermark"):  # fmt: skip
        assert ours[family] == theirs[family], (family, ours[family], theirs[family])
    assert "rabbitmq_vhost_queue_messages_ready{" in body and 'vhost="bs_v2"' in body
    assert "rabbitmq_global_messages_received_total{" in body and 'protocol="amqp091"' in body

    # the memory alarm RabbitMQ shows; beamside forwarded none of it before
    engine = AlarmEngine("c")
    checker = AlarmChecker(engine)
    try:
        rabbit.eval("ok = vm_memory_monitor:set_vm_memory_high_watermark(0.0001).")
        deadline = time.monotonic() + 20
        while rabbit.eval("rabbit_alarm:get_local_alarms().") == "[]":
            assert time.monotonic() < deadline, "RabbitMQ set no memory alarm"
            time.sleep(0.2)
        snap = await rabbit.snapshot()
        assert snap.rabbitmq is not None and snap.rabbitmq.alarms == ("memory",)
        checker.on_snapshot(snap)
        (alarm,) = [a for a in engine.active() if a.id == "rabbitmq_resource_alarm"]
        assert alarm.severity.name == "CRITICAL"
        assert "memory alarm" in alarm.cause and "publishers are blocked" in alarm.cause
        assert alarm.info["resources"] == ["memory"]
        body = ExpositionCache().exposition([snap], TEXT).decode()
        (line,) = [x for x in body.splitlines() if x.startswith("rabbitmq_alarms_memory_used")]
        assert line.endswith(" 1.0"), line
    finally:
        rabbit.eval("ok = vm_memory_monitor:set_vm_memory_high_watermark(0.4).")
    deadline = time.monotonic() + 20
    while rabbit.eval("rabbit_alarm:get_local_alarms().") != "[]":
        assert time.monotonic() < deadline, "RabbitMQ kept its memory alarm"
        time.sleep(0.2)
    checker.on_snapshot(await rabbit.snapshot())
    assert not [a for a in engine.active() if a.id == "rabbitmq_resource_alarm"]

    # per queue only when asked for (top_queues), the largest first, bounded
    assert s.top_queues is None
    top = (await rabbit.section({"top_queues": 2})).top_queues
    assert isinstance(top, tuple), top
    assert [(q.vhost, q.name, q.ready, q.total) for q in top] == [
        ("bs_v2", "bs_q3", 5, 5),
        ("/", "bs_q1", 3, 3),
    ]
    body = ExpositionCache().exposition([await rabbit.snapshot({"top_queues": 2})], TEXT)
    assert b'rabbitmq_detailed_queue_messages_ready{' in body
    assert b'queue="bs_q3"' in body and b'queue="bs_q2"' not in body  # empty: not listed

    # the per-node switch: the section is not there when rabbitmq is not asked for
    snap = await rabbit.snapshot({"plugins": ["os_mon"]})
    assert snap.rabbitmq is None and "rabbitmq" not in snap.plugin_names
    assert offending(app.node, offsets) == []


async def test_stop_app_is_not_running(rabbit: Rabbit) -> None:
    """``rabbitmqctl stop_app``: the node stays up, rabbit does not run; the
    section says so alone and ``rabbitmq_unhealthy`` comes after its delay."""
    engine = AlarmEngine("c")
    checker = AlarmChecker(engine, {"rabbitmq_unhealthy": {"delay": 0}})
    rabbit.eval("ok = rabbit:stop().")
    try:
        s = await rabbit.section()
        assert s.running is False and s.alarms is None and s.totals is None
        checker.on_snapshot(await rabbit.snapshot())
        (alarm,) = [a for a in engine.active() if a.id == "rabbitmq_unhealthy"]
        assert alarm.cause == "RabbitMQ is not running" and alarm.severity.name == "MAJOR"
    finally:
        rabbit.eval("ok = rabbit:start().")
    s = await rabbit.section()
    assert s.running is True
    checker.on_snapshot(await rabbit.snapshot())
    assert not [a for a in engine.active() if a.id == "rabbitmq_unhealthy"]
