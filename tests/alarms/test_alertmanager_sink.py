"""The Alertmanager sink against a real Alertmanager (Debian's 0.25).

Most tests share one Alertmanager (module scope) whose receiver is a webhook
in this process, so a resolution can be seen as Alertmanager notifies it;
each test labels its alarms with its own ``cluster`` so they never see each
other's.  Tests that stop Alertmanager or need a pair start their own.  The
last group runs the sink over ``httpx.MockTransport`` (no Alertmanager) for
what a real one cannot easily show: exact retries, refusals, log lines.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import statistics
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from sidecar.alarms.alertmanager import (
    ENDS_AT_FACTOR,
    INFO_LIMIT,
    AlertmanagerConfig,
    AlertmanagerSink,
    alert_labels,
    rfc3339,
)
from sidecar.alarms.model import Alarm, AlarmEvent, AlarmKey, Comment, EventKind, Severity
from tests.support.alertmanager import (
    Alertmanager,
    Blackhole,
    TcpProxy,
    WebhookSink,
    ha_pair,
    refused_url,
    until,
)
from tests.support.prometheus import promtool_check_metrics

NODE = "app@10.0.0.1"
FAMILY = "payments"


# ------------------------------------------------------------------ helpers


def make_alarm(
    cluster: str,
    alarm_id: str = "process_message_queue",
    *,
    node: str = NODE,
    family: str = FAMILY,
    severity: Severity = Severity.MAJOR,
    info: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Alarm:
    now = time.time()
    return Alarm(
        key=AlarmKey(alarm_id, node or f"family:{family}"),
        severity=severity,
        node=node,
        family=family,
        cluster=cluster,
        cause=kwargs.pop("cause", f"{alarm_id}: 120000 messages in one queue"),
        repair=kwargs.pop("repair", "find the slow consumer and drain or restart it"),
        info=info if info is not None else {"pid": "<0.123.0>", "len": 120000},
        raised_at=now,
        updated_at=now,
        **kwargs,
    )


def raised(alarm: Alarm) -> AlarmEvent:
    return AlarmEvent(EventKind.RAISED, alarm)


def cleared(alarm: Alarm) -> tuple[AlarmEvent, Alarm]:
    done = dataclasses.replace(alarm, cleared_at=time.time())
    return AlarmEvent(EventKind.CLEARED, done), done


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def cluster() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def hook() -> Iterator[WebhookSink]:
    sink = WebhookSink()
    yield sink
    sink.close()


@pytest.fixture(scope="module")
def am(tmp_path_factory: pytest.TempPathFactory, hook: WebhookSink) -> Iterator[Alertmanager]:
    manager = Alertmanager(tmp_path_factory.mktemp("am"), webhook=hook).start()
    yield manager
    manager.stop()


SinkFactory = Callable[..., AlertmanagerSink]


@pytest.fixture
async def make_sink() -> AsyncIterator[SinkFactory]:
    """``make_sink(urls, cluster, **config)``: a sink (timeout and max backoff
    1 s unless given), stopped at teardown."""
    sinks: list[AlertmanagerSink] = []

    def make(urls: list[str], cluster: str, **config: Any) -> AlertmanagerSink:
        cfg = AlertmanagerConfig(urls=tuple(urls), **{"timeout": 1.0, "max_backoff": 1.0, **config})
        sink = AlertmanagerSink(cfg, cluster)
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        await sink.stop(timeout=0.5)


# ---------------------------------------------------------- real Alertmanager


async def test_raise_appears_with_labels_and_annotations(
    am: Alertmanager, make_sink: SinkFactory, cluster: str
) -> None:
    sink = make_sink([am.url], cluster)
    await sink.start()
    alarm = make_alarm(
        cluster,
        info={"top": [{"pid": "<0.99.0>", "name": b"worker", "len": 100000}], "threshold": 10000},
    )
    started = time.monotonic()
    sink.publish(raised(alarm))
    got = await am.wait_alert(timeout=2, cluster=cluster)
    latency = time.monotonic() - started
    assert got["labels"] == {
        "alertname": "process_message_queue",
        "severity": "major",
        "node": NODE,
        "family": FAMILY,
        "cluster": cluster,
    }
    notes = got["annotations"]
    assert notes["summary"] == alarm.cause
    assert notes["cause"] == alarm.cause
    assert notes["repair_action"] == alarm.repair
    assert "process_message_queue (major) on node app@10.0.0.1" in notes["description"]
    assert json.loads(notes["additional_info"]) == {
        "top": [{"pid": "<0.99.0>", "name": "worker", "len": 100000}],
        "threshold": 10000,
    }
    assert "acknowledged_by" not in notes and "comments" not in notes
    assert got["status"]["state"] == "active"
    assert abs(ts(got["startsAt"]) - alarm.raised_at) < 0.002
    expected_end = time.time() + ENDS_AT_FACTOR * sink.config.resend_interval
    assert abs(ts(got["endsAt"]) - expected_end) < 5

    # once through amtool, as an operator would look
    via_amtool = await asyncio.to_thread(am.amtool, f"cluster={cluster}")
    assert [a["labels"] for a in via_amtool] == [got["labels"]]
    assert via_amtool[0]["annotations"] == notes

    # a few more for a figure: publish -> listed by the API
    latencies = [latency]
    for i in range(5):
        t0 = time.monotonic()
        sink.publish(raised(make_alarm(cluster, f"atom_limit_{i}")))
        await am.wait_alert(timeout=2, alertname=f"atom_limit_{i}", cluster=cluster)
        latencies.append(time.monotonic() - t0)
    print(
        f"publish -> visible in Alertmanager: median {statistics.median(latencies) * 1000:.0f} ms,"
        f" max {max(latencies) * 1000:.0f} ms"
    )
    assert max(latencies) < 2


async def test_clear_resolves_with_ends_at_the_clear_time(
    am: Alertmanager, hook: WebhookSink, make_sink: SinkFactory, cluster: str
) -> None:
    sink = make_sink([am.url], cluster)
    await sink.start()
    alarm = make_alarm(cluster, "node_down")
    sink.publish(raised(alarm))
    await am.wait_alert(timeout=2, cluster=cluster)
    await until(lambda: hook.alerts("firing", cluster=cluster), 5, "firing notification")

    event, done = cleared(alarm)
    sink.publish(event)
    await am.wait_gone(timeout=2, cluster=cluster)  # resolved alerts are not listed
    # Alertmanager's own view of it, as it notifies: resolved, endsAt = clear time
    notes = await until(lambda: hook.alerts("resolved", cluster=cluster), 5, "resolved note")
    assert done.cleared_at is not None
    assert abs(ts(notes[0]["endsAt"]) - done.cleared_at) < 0.001
    assert notes[0]["labels"]["alertname"] == "node_down"
    assert sink.active == {}
    assert sink.queue_size == 0


async def test_acknowledge_and_comment_become_annotations(
    am: Alertmanager, make_sink: SinkFactory, cluster: str
) -> None:
    sink = make_sink([am.url], cluster)
    await sink.start()
    alarm = make_alarm(cluster, "old_code")
    sink.publish(raised(alarm))
    await am.wait_alert(timeout=2, cluster=cluster)
    acked = dataclasses.replace(
        alarm,
        acknowledged_by="alice",
        comments=tuple(Comment(alarm.raised_at + i, "bob", f"note {i}") for i in range(8)),
    )
    sink.publish(AlarmEvent(EventKind.ACKNOWLEDGED, acked, "alice"))

    def annotated() -> bool:
        found = am.find(cluster=cluster)
        return bool(found) and found[0]["annotations"].get("acknowledged_by") == "alice"

    await until(annotated, 2, "acknowledged_by annotation")
    comments = am.find(cluster=cluster)[0]["annotations"]["comments"].splitlines()
    assert len(comments) == 5  # the last few
    assert comments[-1].endswith("bob: note 7")


async def test_severity_change_resolves_the_old_label_set(
    am: Alertmanager, make_sink: SinkFactory, cluster: str
) -> None:
    sink = make_sink([am.url], cluster)
    await sink.start()
    minor = make_alarm(cluster, "atom_limit", severity=Severity.MINOR)
    sink.publish(raised(minor))
    await am.wait_alert(timeout=2, cluster=cluster, severity="minor")
    major = dataclasses.replace(minor, severity=Severity.MAJOR, updated_at=time.time())
    sink.publish(AlarmEvent(EventKind.CHANGED, major))
    await am.wait_alert(timeout=2, cluster=cluster, severity="major")
    await am.wait_gone(timeout=2, cluster=cluster, severity="minor")
    assert [a["labels"]["severity"] for a in am.find(cluster=cluster)] == ["major"]


async def test_family_wide_alarm_has_no_node_label(
    am: Alertmanager, make_sink: SinkFactory, cluster: str
) -> None:
    sink = make_sink([am.url], cluster)
    await sink.start()
    alarm = make_alarm(cluster, "different_module_versions", node="")
    assert dict(alert_labels(alarm)).get("node") is None
    sink.publish(raised(alarm))
    got = await am.wait_alert(timeout=2, cluster=cluster)
    assert got["labels"] == {
        "alertname": "different_module_versions",
        "severity": "major",
        "family": FAMILY,
        "cluster": cluster,
    }
    assert "family payments" in got["annotations"]["description"]
    # matching node="" finds it, as a route or silence would
    assert am.alerts(filter={"node": "", "cluster": cluster})


async def test_ha_pair_both_receive(tmp_path: Path, make_sink: SinkFactory, cluster: str) -> None:
    a, b = ha_pair(tmp_path)
    try:
        a.start()
        b.start()
        sink = make_sink([a.url, b.url], cluster)
        await sink.start()
        alarm = make_alarm(cluster, "dist_link_down")
        sink.publish(raised(alarm))
        await asyncio.gather(
            a.wait_alert(timeout=2, cluster=cluster), b.wait_alert(timeout=2, cluster=cluster)
        )
        sink.publish(cleared(alarm)[0])
        await asyncio.gather(
            a.wait_gone(timeout=2, cluster=cluster), b.wait_gone(timeout=2, cluster=cluster)
        )
        assert [t.failed_total for t in sink.targets] == [0, 0]
        assert all(t.sent_total >= 2 for t in sink.targets)
    finally:
        a.stop()
        b.stop()


async def test_one_url_down_does_not_delay_the_others(
    am: Alertmanager, make_sink: SinkFactory, cluster: str
) -> None:
    hole = Blackhole()  # accepts, never answers: each POST there takes the full timeout
    try:
        sink = make_sink([refused_url(), hole.url, am.url], cluster, timeout=3.0)
        await sink.start()
        await asyncio.sleep(0.2)  # the first (full) sends are under way
        started = time.monotonic()
        sink.publish(raised(make_alarm(cluster, "port_limit")))
        await am.wait_alert(timeout=1, cluster=cluster)
        assert time.monotonic() - started < 1  # well under the hung URL's 3 s timeout
        refused, hung, good = sink.targets
        assert refused.failed_total >= 1 and refused.healthy is False
        assert hung.sent_total == 0 and hung.queue_size == 1
        assert good.failed_total == 0 and good.queue_size == 0
    finally:
        hole.close()


async def test_alertmanager_down_then_back_gets_the_alarm(
    tmp_path: Path, make_sink: SinkFactory, cluster: str
) -> None:
    manager = Alertmanager(tmp_path).start()
    try:
        manager.stop()
        sink = make_sink([manager.url], cluster, max_backoff=1.0)
        await sink.start()
        sink.publish(raised(make_alarm(cluster, "node_down")))
        await asyncio.sleep(6)  # a short outage
        target = sink.targets[0]
        assert target.failed_total >= 3 and target.healthy is False
        assert target.queue_size == 1 and target.last_success_timestamp == 0
        manager.start()  # same port, same storage
        back = time.monotonic()
        await manager.wait_alert(timeout=3, cluster=cluster, alertname="node_down")
        print(f"delivered {time.monotonic() - back:.2f}s after Alertmanager came back")
        assert target.healthy is True and target.queue_size == 0
    finally:
        manager.stop()


async def test_partition_raise_and_clear_during_outage_is_not_firing_after(
    am: Alertmanager, make_sink: SinkFactory, cluster: str
) -> None:
    """The network goes, not Alertmanager: it keeps what it had firing, so only
    a delivered resolution can end it (endsAt is three minutes away)."""
    proxy = TcpProxy(am.port).start()
    try:
        sink = make_sink([proxy.url], cluster, max_backoff=1.0)
        await sink.start()
        before = make_alarm(cluster, "ets_limit")
        sink.publish(raised(before))
        await am.wait_alert(timeout=2, cluster=cluster, alertname="ets_limit")

        proxy.block()
        sink.publish(cleared(before)[0])  # cleared during the outage
        flap = make_alarm(cluster, "open_file_limit")
        sink.publish(raised(flap))  # raised and cleared during the outage
        await asyncio.sleep(0.3)
        sink.publish(cleared(flap)[0])
        sink.publish(raised(make_alarm(cluster, "module_limit")))  # raised during it
        await asyncio.sleep(3)
        assert sink.targets[0].failed_total >= 1
        assert sink.targets[0].queue_size == 3  # two resolutions, one firing
        assert am.find(cluster=cluster, alertname="ets_limit")  # still firing there

        proxy.unblock()
        await am.wait_alert(timeout=3, cluster=cluster, alertname="module_limit")
        await am.wait_gone(timeout=1, cluster=cluster, alertname="ets_limit")
        assert [a["labels"]["alertname"] for a in am.find(cluster=cluster)] == ["module_limit"]
    finally:
        proxy.close()


async def test_resend_keeps_it_firing_past_its_first_ends_at(
    am: Alertmanager, make_sink: SinkFactory, cluster: str
) -> None:
    sink = make_sink([am.url], cluster, resend_interval=0.5)
    await sink.start()
    sink.publish(raised(make_alarm(cluster, "os_cpu_load")))
    first = await am.wait_alert(timeout=2, cluster=cluster)
    first_end = ts(first["endsAt"])
    assert first_end - time.time() < ENDS_AT_FACTOR * 0.5 + 0.5
    await asyncio.sleep(max(first_end - time.time(), 0) + 0.5)
    later = am.find(cluster=cluster)
    assert later, "expired although re-sent"
    assert ts(later[0]["endsAt"]) > first_end
    assert later[0]["startsAt"] == first["startsAt"]

    # a beamside that stops re-sending lets it end by itself (no zombie alerts)
    await sink.stop()
    await am.wait_gone(timeout=ENDS_AT_FACTOR * 0.5 + 1.5, cluster=cluster)


async def test_publish_never_blocks_or_raises_with_every_url_down(
    make_sink: SinkFactory, cluster: str
) -> None:
    hole = Blackhole()
    try:
        sink = make_sink([refused_url(), hole.url], cluster, timeout=2.0)
        sink.publish(raised(make_alarm(cluster, "early")))  # before start: kept
        await sink.start()
        weird = {b"k": {1, 2}, 3: float("nan"), "o": object(), "deep": [[[[[[]]]]]] * 3}
        alarms = [make_alarm(cluster, f"a{i}", info=weird) for i in range(200)]
        durations = []
        for _round in range(10):
            for alarm in alarms:
                t0 = time.perf_counter()
                sink.publish(raised(alarm))
                sink.publish(cleared(alarm)[0])
                durations.append(time.perf_counter() - t0)
            await asyncio.sleep(0)  # let the senders run in between
        # from another thread too
        thread = threading.Thread(target=lambda: sink.publish(raised(make_alarm(cluster, "t"))))
        thread.start()
        thread.join()
        durations.sort()
        median, p99 = durations[len(durations) // 2], durations[int(len(durations) * 0.99)]
        print(
            f"publish (raise + clear), 2 URLs down: median {median * 1e6:.0f} us,"
            f" p99 {p99 * 1e6:.0f} us, max {durations[-1] * 1e6:.0f} us"
        )
        assert sum(durations) < 2.0  # 4000 calls
        assert p99 < 0.005
        assert sink.queue_size == 2 * (200 + 2)  # per URL: 200 resolutions, early, t
        # stopping is bounded too, whatever the URLs do
        t0 = time.monotonic()
        await sink.stop(timeout=0.5)
        assert time.monotonic() - t0 < 1.5
        sink.publish(raised(make_alarm(cluster, "after_stop")))  # no loop: still fine
    finally:
        hole.close()


async def test_metric_families_render_and_pass_promtool(
    am: Alertmanager, make_sink: SinkFactory, cluster: str
) -> None:
    dead = refused_url()
    sink = make_sink([am.url, dead], cluster)
    await sink.start()
    sink.publish(raised(make_alarm(cluster, "ets_limit")))
    await am.wait_alert(timeout=2, cluster=cluster)
    await until(lambda: sink.targets[1].failed_total > 0, 2, "a failure")

    registry = CollectorRegistry(auto_describe=False)
    registry.register(sink)
    text = generate_latest(registry)
    check = promtool_check_metrics(text)
    assert check.returncode == 0, check.stdout + check.stderr
    lines = text.decode().splitlines()
    ok = f'beamside_alertmanager_pushes_total{{cluster="{cluster}",result="ok",url="{am.url}"}}'
    err = f'beamside_alertmanager_pushes_total{{cluster="{cluster}",result="error",url="{dead}"}}'
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if line[0] != "#"
    }
    assert values[ok] >= 1 and values[err] >= 1
    assert (
        values[f'beamside_alertmanager_pending_alerts{{cluster="{cluster}",url="{am.url}"}}'] == 0
    )
    assert values[f'beamside_alertmanager_pending_alerts{{cluster="{cluster}",url="{dead}"}}'] == 1
    assert (
        values[
            f'beamside_alertmanager_last_success_timestamp_seconds{{cluster="{cluster}",url="{am.url}"}}'
        ]
        > time.time() - 10
    )
    assert not any("last_success" in k and dead in k for k in values)
    assert values[f'beamside_alertmanager_active_alerts{{cluster="{cluster}"}}'] == 1


@pytest.mark.slow
async def test_alertmanager_down_for_a_minute(
    tmp_path: Path, make_sink: SinkFactory, cluster: str
) -> None:
    """SPEC §4: Alertmanager down for a minute, the alarms arrive once it is
    back (within the backoff cap, 10 s here, of its return)."""
    manager = Alertmanager(tmp_path).start()
    try:
        sink = make_sink([manager.url], cluster, max_backoff=10.0)
        await sink.start()
        manager.stop()
        during = [make_alarm(cluster, f"alarm_{i}") for i in range(3)]
        for alarm in during:
            sink.publish(raised(alarm))
        gone = make_alarm(cluster, "short_lived")
        sink.publish(raised(gone))
        await asyncio.sleep(20)
        sink.publish(cleared(gone)[0])
        await asyncio.sleep(40)
        assert sink.targets[0].healthy is False
        manager.start()
        back = time.monotonic()
        names = {a.id for a in during}
        await until(
            lambda: {a["labels"]["alertname"] for a in manager.find(cluster=cluster)} == names,
            12,
            f"{names} in Alertmanager",
        )
        print(f"after a one-minute outage: delivered {time.monotonic() - back:.1f}s after return")
    finally:
        manager.stop()


# ---------------------------------------------------------- no Alertmanager


class Recorder:
    """A MockTransport handler: answers ``statuses`` in turn (then 200) and
    records every batch it was sent."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.requests: list[httpx.Request] = []
        self.batches: list[list[dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.batches.append(json.loads(request.content))
        status = self.statuses.pop(0) if self.statuses else 200
        return httpx.Response(status, text="" if status < 300 else "nope")


def mock_sink(
    recorder: Recorder, cluster: str = "c", url: str = "http://am:9093", **config: Any
) -> tuple[AlertmanagerSink, httpx.AsyncClient]:
    client = httpx.AsyncClient(transport=httpx.MockTransport(recorder))
    cfg = AlertmanagerConfig(urls=(url,), **{"max_backoff": 1.0, **config})
    return AlertmanagerSink(cfg, cluster, client=client), client


async def test_burst_is_coalesced_and_resolution_is_an_ends_at() -> None:
    rec = Recorder()
    sink, client = mock_sink(rec, generator_url="http://beamside:9568/alarms")
    await sink.start()
    await until(lambda: rec.batches, 1, "the first (empty) full send")
    assert rec.batches == [[]]
    assert rec.requests[0].url == "http://am:9093/api/v2/alerts"
    alarms = [make_alarm("c", f"a{i}") for i in range(50)]
    for alarm in alarms:
        sink.publish(raised(alarm))
    event, done = cleared(alarms[0])
    sink.publish(event)
    await until(lambda: len(rec.batches) >= 2, 1, "the burst")
    await asyncio.sleep(0.3)
    assert len(rec.batches) == 2, "a burst within 100 ms is one POST"
    batch = {a["labels"]["alertname"]: a for a in rec.batches[1]}
    assert len(batch) == 50
    assert done.cleared_at is not None
    assert batch["a0"]["endsAt"] == rfc3339(done.cleared_at)
    assert ts(batch["a1"]["endsAt"]) > time.time() + 60
    assert batch["a1"]["generatorURL"] == "http://beamside:9568/alarms"
    await sink.stop()
    await client.aclose()


async def test_server_errors_are_retried_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="sidecar.alarms.alertmanager")
    rec = Recorder(503, 503, 503)
    sink, client = mock_sink(rec, url="http://user:secret@am:9093/prefix/")
    alarm = make_alarm("c", "node_down")
    sink.publish(raised(alarm))
    sink.publish(cleared(alarm)[0])  # before start: raise and clear both pending
    await sink.start()
    target = sink.targets[0]
    await until(lambda: target.healthy, 5, "recovery")
    assert target.failed_total == 3 and target.sent_total == 1
    assert target.url == "http://am:9093/prefix"  # no password in labels or logs
    assert rec.requests[-1].url.path == "/prefix/api/v2/alerts"
    assert rec.requests[-1].headers["authorization"].startswith("Basic ")
    assert [a["labels"]["alertname"] for a in rec.batches[-1]] == ["node_down"]
    assert ts(rec.batches[-1][0]["endsAt"]) < time.time()  # delivered as resolved
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unreachable" in m for m in messages) == 1, messages
    assert sum("reachable again" in m for m in messages) == 1, messages
    assert not any("secret" in m for m in messages)
    await sink.stop()
    await client.aclose()


async def test_refusal_is_counted_not_retried() -> None:
    rec = Recorder(200, 400)
    sink, client = mock_sink(rec)
    await sink.start()
    await until(lambda: rec.batches, 1, "the first send")
    sink.publish(raised(make_alarm("c", "bad")))
    await until(lambda: sink.targets[0].failed_total, 2, "the refusal")
    await asyncio.sleep(1.2)
    assert len(rec.batches) == 2 and sink.queue_size == 0
    await sink.stop()
    await client.aclose()


async def test_refused_full_send_waits_for_the_next_resend() -> None:
    rec = Recorder(*[400] * 50)
    sink, client = mock_sink(rec)
    sink.publish(raised(make_alarm("c", "bad")))
    await sink.start()
    await asyncio.sleep(0.5)
    assert len(rec.batches) == 1 and sink.targets[0].failed_total == 1
    await sink.stop()
    await client.aclose()


def test_additional_info_is_bounded() -> None:
    from sidecar.alarms.alertmanager import alert_annotations

    big = make_alarm("c", info={"procs": [{"pid": f"<0.{i}.0>", "len": i} for i in range(5000)]})
    info = alert_annotations(big)["additional_info"]
    assert len(info.encode()) <= INFO_LIMIT
    assert "truncated" in info
    small = alert_annotations(make_alarm("c", info={"a": (1, 2), "b": b"x"}))
    assert small["additional_info"] == '{"a":[1,2],"b":"x"}'
    assert "additional_info" not in alert_annotations(make_alarm("c", info={}))


def test_config_is_checked() -> None:
    assert AlertmanagerConfig(urls=("http://a:9093/",)).urls == ("http://a:9093",)
    for bad in (
        {"urls": ()},
        {"urls": "http://a:9093"},
        {"urls": ("ftp://a",)},
        {"urls": ("http://a", "http://a/")},
        {"urls": ("http://a",), "resend_interval": 0},
        {"urls": ("http://a",), "timeout": float("inf")},
    ):
        with pytest.raises(ValueError):
            AlertmanagerConfig(**bad)
