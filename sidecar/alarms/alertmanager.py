"""Alertmanager sink: alarms to every configured Alertmanager, over its v2 API.

:class:`AlertmanagerSink` subscribes to the engine's event bus
(:meth:`~AlertmanagerSink.publish`, synchronous, cheap, never raises, never
waits on the network) and keeps two things: the set of active alarms (by
:class:`~sidecar.alarms.model.AlarmKey`) and, per Alertmanager URL, what that
URL has not yet acknowledged (changed alarms and resolutions).  One asyncio
task per URL POSTs to ``/api/v2/alerts``; URLs are independent, so an
Alertmanager that is down or hangs never delays the others (an HA pair does
not gossip alerts: each member must be sent every alert, as Prometheus does).

When things are sent
    A raise, change (severity, info), acknowledgement, comment or clear is
    pushed promptly: events arriving within ``COALESCE`` (100 ms) of the first
    one are sent in one POST.  Every ``resend_interval`` (default 60 s) all
    active alarms are re-sent (an empty list when there are none: it keeps
    ``last_success_timestamp`` meaningful as a liveness signal).  A failed
    POST is retried with exponential backoff (0.5 s doubling up to
    ``max_backoff``, equal jitter: :mod:`sidecar.backoff`), and the first
    successful one after a failure is a full re-send, so an Alertmanager that
    restarted (they keep alerts in memory only) gets everything back at once.

``startsAt`` / ``endsAt``
    ``startsAt`` is the alarm's ``raised_at``.  A firing alert carries an
    explicit ``endsAt`` = now + ``ENDS_AT_FACTOR`` (3) x ``resend_interval``:
    Alertmanager keeps an alert active until its ``endsAt`` and each re-send
    moves it forward (Alertmanager never moves the ``endsAt`` of a firing alert
    back), so a live beamside keeps it firing with two re-sends to spare, and
    a beamside that died or lost its network lets its alerts resolve by
    themselves within three intervals instead of firing forever (the
    ``BeamsideDown`` rule in ``alert_rules/`` says why).  Because ``endsAt``
    is explicit, Alertmanager's ``resolve_timeout`` (default 5 m) plays no
    part: it applies only to alerts sent without ``endsAt``.  What matters is
    that re-sends come before ``endsAt``, which the factor 3 ensures; keeping
    ``resend_interval`` below ``resolve_timeout`` as well (the default 60 s
    is) costs nothing, and Alertmanager's client docs expect re-sends every
    30 s to 3 min.  A clear sends the alert once more with ``endsAt`` = the
    clear time: Alertmanager marks it resolved at once (this relies on
    beamside's and Alertmanager's clocks agreeing to within the delivery
    delay: with a larger skew the alert resolves at the latest ``endsAt``
    instead, still at most three intervals later).

Labels
    ``alertname`` (the alarm id), ``severity``, ``node``, ``family``,
    ``cluster``.  A family-wide alarm has no ``node`` label at all:
    Alertmanager drops empty-valued labels on receipt (Prometheus semantics:
    an empty label is an absent one), so sending ``node=""`` would be the same
    thing with extra bytes; route or silence them with ``node=""``.  Labels
    are an alert's identity in Alertmanager, and ``severity`` is one of them:
    when an alarm's severity changes the alert under the old label set is
    resolved and one under the new label set fires (what Prometheus does for
    its minor/major rule pairs).

Annotations
    ``summary`` (the cause), ``description`` (one readable sentence),
    ``cause``, ``repair_action``, ``additional_info`` (compact JSON of the
    alarm's info, at most ``INFO_LIMIT`` bytes: longer is cut and marked),
    ``acknowledged_by`` once acknowledged and ``comments`` (the last
    ``MAX_COMMENTS``, one per line).

While a URL is down its pending resolutions are kept (at most
``MAX_PENDING_RESOLUTIONS`` per URL, the oldest dropped and counted), so an
alarm raised and cleared during an outage reaches that Alertmanager as
resolved; had one been dropped, the alert still ends at its last ``endsAt``.

Errors never leave the sink: transport errors, timeouts and HTTP errors are
translated at the boundary into :class:`PushError`, counted per URL and
logged (logger ``sidecar.alarms.alertmanager``) once per change of a URL's
state, not once per attempt.  A 400 (Alertmanager rejected part of a batch:
it keeps the valid alerts) is counted and not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import httpx
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from ..backoff import Backoff, BackoffPolicy
from .config import AlertmanagerConfig, redact
from .model import Alarm, AlarmEvent, AlarmKey, EventKind

log = logging.getLogger(__name__)

API_PATH: Final = "/api/v2/alerts"
ENDS_AT_FACTOR: Final = 3
COALESCE: Final = 0.1
INITIAL_BACKOFF: Final = 0.5
MAX_PENDING_RESOLUTIONS: Final = 10_000
INFO_LIMIT: Final = 4096
TEXT_LIMIT: Final = 4096
MAX_COMMENTS: Final = 5
_JSON_DEPTH: Final = 32

Labels = tuple[tuple[str, str], ...]


class PushError(Exception):
    """One POST to one Alertmanager failed (what httpx and HTTP errors become)."""

    def __init__(self, reason: str, *, retryable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class _Resolution:
    alarm: Alarm
    labels: Labels
    ends_at: float


class AlertmanagerTarget:
    """One configured URL: what it still has to receive, and its counters."""

    def __init__(self, url: str, max_backoff: float = 10.0) -> None:
        self.url = redact(url)  # for logs and metric labels
        self.endpoint = url if url.endswith(API_PATH) else url + API_PATH
        # label set -> (key, version) of an alarm to send as firing
        self.firing: dict[Labels, tuple[AlarmKey, int]] = {}
        # label set -> resolution to send, oldest first
        self.resolved: OrderedDict[Labels, _Resolution] = OrderedDict()
        self.sent_total = 0  # successful POSTs
        self.failed_total = 0  # failed POSTs (transport, timeout, HTTP error)
        self.dropped_total = 0  # resolutions dropped because too many were pending
        self.last_success_timestamp = 0.0  # Unix time of the last successful POST, 0 = never
        self.last_error: str | None = None
        self.healthy: bool | None = None  # None until the first attempt
        self._failing_since = 0.0
        self._refusal_logged: str | None = None
        self._flush_at: float | None = None  # monotonic; pending changes go out then
        self._retry_at = 0.0  # monotonic; no attempt before (backoff)
        self._next_resend = 0.0  # monotonic; full re-send due then
        self._backoff = Backoff(BackoffPolicy(INITIAL_BACKOFF, max_backoff))
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def queue_size(self) -> int:
        """Alerts waiting for this URL (changes and resolutions)."""
        return len(self.firing) + len(self.resolved)

    def _add_firing(self, labels: Labels, entry: tuple[AlarmKey, int]) -> None:
        self.resolved.pop(labels, None)
        self.firing[labels] = entry

    def _add_resolution(self, res: _Resolution) -> None:
        self.firing.pop(res.labels, None)
        self.resolved.pop(res.labels, None)
        self.resolved[res.labels] = res
        while len(self.resolved) > MAX_PENDING_RESOLUTIONS:
            self.resolved.popitem(last=False)
            self.dropped_total += 1


class AlertmanagerSink:
    """Delivers alarm events to Alertmanager.  ``cluster`` labels the metrics
    (and alerts whose alarm has no cluster).  Pass ``client`` to choose the
    transport (tests, proxies, TLS); otherwise the sink makes and closes its
    own.  Subscribe :meth:`publish` to the engine, then ``await start()``."""

    def __init__(
        self,
        config: AlertmanagerConfig,
        cluster: str,
        *,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = config
        self.cluster = cluster
        self.targets: tuple[AlertmanagerTarget, ...] = tuple(
            AlertmanagerTarget(u, config.max_backoff) for u in config.urls
        )
        self._client = client
        self._own_client = client is None
        self._lock = threading.Lock()  # publish may come from another thread
        self._active: dict[AlarmKey, Alarm] = {}
        self._labels: dict[AlarmKey, Labels] = {}
        self._version = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._publish_failed = False

    # ------------------------------------------------------------------ state

    @property
    def active(self) -> dict[AlarmKey, Alarm]:
        """A copy of the active alarms, as last published."""
        with self._lock:
            return dict(self._active)

    @property
    def queue_size(self) -> int:
        """Alerts waiting to be delivered, summed over the URLs."""
        return sum(t.queue_size for t in self.targets)

    def publish(self, event: AlarmEvent) -> None:
        """Record ``event`` and wake the senders.  Never blocks on I/O, never
        raises; callable before :meth:`start` (sent once started) and from any
        thread."""
        try:
            self._apply(event)
            self._wake()
        except Exception:
            if not self._publish_failed:  # log the first one, not a flood
                self._publish_failed = True
                log.exception("alertmanager sink: could not take event %r", event.kind)

    def _apply(self, event: AlarmEvent) -> None:
        alarm = event.alarm
        key = alarm.key
        labels = alert_labels(alarm, self.cluster)
        now = time.time()
        flush_at = time.monotonic() + COALESCE
        with self._lock:
            self._version += 1
            old = self._labels.get(key)
            if event.kind is EventKind.CLEARED or not alarm.active:
                self._active.pop(key, None)
                self._labels.pop(key, None)
                ends = alarm.cleared_at if alarm.cleared_at is not None else now
                for t in self.targets:
                    t._add_resolution(_Resolution(alarm, labels, ends))
                    if old is not None and old != labels:
                        t._add_resolution(_Resolution(alarm, old, ends))
            else:
                self._active[key] = alarm
                self._labels[key] = labels
                for t in self.targets:
                    if old is not None and old != labels:
                        t._add_resolution(_Resolution(alarm, old, now))
                    t._add_firing(labels, (key, self._version))
            for t in self.targets:
                if t._flush_at is None:
                    t._flush_at = flush_at

    def _wake(self) -> None:
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._set_wake_events()
        else:
            with contextlib.suppress(RuntimeError):  # loop closed: stopped meanwhile
                loop.call_soon_threadsafe(self._set_wake_events)

    def _set_wake_events(self) -> None:
        for t in self.targets:
            if t._wake is not None:
                t._wake.set()

    # -------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start one sender task per URL (a full send of the active alarms first)."""
        if any(t._task is not None for t in self.targets):
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.config.timeout, headers={"User-Agent": "beamside"}
            )
            self._own_client = True
        now = time.monotonic()
        for t in self.targets:
            t._wake = asyncio.Event()
            t._next_resend = now
            t._retry_at = 0.0
            t._task = asyncio.create_task(self._run(t), name=f"alertmanager sink {t.url}")

    async def stop(self, timeout: float | None = None) -> None:
        """Stop the senders, then try once, for at most ``timeout`` seconds
        (default: the config's), to deliver what is still pending to each URL.
        Active alarms are left as they are (they end at their ``endsAt`` unless
        a beamside re-sends them)."""
        tasks = [t._task for t in self.targets if t._task is not None]
        for t in self.targets:
            t._task = None
            t._wake = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop = None
        bound = self.config.timeout if timeout is None else timeout
        pending = [t for t in self.targets if t.queue_size]
        if pending and self._client is not None and bound > 0:
            try:
                async with asyncio.timeout(bound):
                    await asyncio.gather(
                        *(self._push(t, full=False) for t in pending), return_exceptions=True
                    )
            except TimeoutError:
                log.warning(
                    "alertmanager sink: final flush gave up after %.1fs; %d alert(s) not sent",
                    bound,
                    self.queue_size,
                )
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    # ---------------------------------------------------------------- sending

    async def _run(self, t: AlertmanagerTarget) -> None:
        wake = t._wake
        assert wake is not None
        while t._wake is wake:  # stop() clears it (belt and braces with the cancel)
            wake.clear()
            now = time.monotonic()
            due = t._next_resend
            if t._flush_at is not None:
                due = min(due, t._flush_at)
            due = max(due, t._retry_at)
            if due > now:
                # not asyncio.wait_for: on 3.11 it can swallow a cancel that
                # comes as the event is set
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(due - now):
                        await wake.wait()
                continue
            try:
                await self._push(t, full=now >= t._next_resend)
            except Exception:  # a bug must not end deliveries for good
                log.exception("alertmanager sink: sender for %s failed", t.url)
                self._failed(t, PushError("internal error"), time.monotonic())

    async def _push(self, t: AlertmanagerTarget, *, full: bool) -> None:
        now = time.time()
        started = time.monotonic()
        with self._lock:
            firing = dict(t.firing)
            resolved = dict(t.resolved)
            if full:
                alarms = [(a, self._labels[k]) for k, a in self._active.items()]
            else:
                alarms = [
                    (self._active[k], labels)
                    for labels, (k, _) in firing.items()
                    if self._labels.get(k) == labels
                ]
            t._flush_at = None
        ends = now + ENDS_AT_FACTOR * self.config.resend_interval
        alerts = [self._payload(a, labels, ends) for a, labels in alarms]
        alerts += [self._payload(r.alarm, r.labels, r.ends_at) for r in resolved.values()]
        try:
            await self._post(t, alerts)
        except PushError as e:
            self._failed(t, e, started)
            if e.retryable:
                return
            # Alertmanager kept the valid alerts of the batch; sending the same
            # again would be refused again: on to the next re-send.
            if full:
                t._next_resend = started + self.config.resend_interval
        else:
            self._succeeded(t, full, started)
        with self._lock:
            for labels, entry in firing.items():
                if t.firing.get(labels) == entry:
                    del t.firing[labels]
            for labels, res in resolved.items():
                if t.resolved.get(labels) is res:
                    del t.resolved[labels]

    async def _post(self, t: AlertmanagerTarget, alerts: list[dict[str, Any]]) -> None:
        """POST ``alerts``; any failure comes out as :class:`PushError`."""
        client = self._client
        if client is None:
            raise PushError("sink not started")
        body = json.dumps(alerts, separators=(",", ":")).encode()
        try:
            async with asyncio.timeout(self.config.timeout):
                response = await client.post(
                    t.endpoint,
                    content=body,
                    headers={"Content-Type": "application/json"},
                    timeout=self.config.timeout,
                )
        except TimeoutError:
            raise PushError(f"timed out after {self.config.timeout:g}s") from None
        except httpx.TimeoutException as e:
            raise PushError(f"timed out ({type(e).__name__})") from None
        except httpx.HTTPError as e:
            raise PushError(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__) from None
        except OSError as e:
            raise PushError(f"{type(e).__name__}: {e}") from None
        if response.is_success:
            return
        text = " ".join(response.text.split())[:200]
        raise PushError(
            f"HTTP {response.status_code}: {text}", retryable=response.status_code != 400
        )

    def _succeeded(self, t: AlertmanagerTarget, full: bool, started: float) -> None:
        t.sent_total += 1
        t.last_success_timestamp = time.time()
        t._backoff.reset()
        t._retry_at = 0.0
        if full:
            t._next_resend = started + self.config.resend_interval
        if t.healthy is False:
            log.info(
                "alertmanager %s reachable again after %.0fs (%s)",
                t.url,
                time.monotonic() - t._failing_since,
                t.last_error,
            )
        t.healthy = True
        t.last_error = None

    def _failed(self, t: AlertmanagerTarget, error: PushError, started: float) -> None:
        t.failed_total += 1
        t.last_error = error.reason
        if not error.retryable:
            # counted, logged once per distinct refusal; deliveries go on
            if error.reason != t._refusal_logged:
                t._refusal_logged = error.reason
                log.warning("alertmanager %s refused alerts: %s", t.url, error.reason)
            return
        if t.healthy is not False:
            log.warning(
                "alertmanager %s unreachable: %s; retrying with backoff up to %gs",
                t.url,
                error.reason,
                self.config.max_backoff,
            )
            t._failing_since = started
        t.healthy = False
        t._retry_at = time.monotonic() + t._backoff.next()
        t._next_resend = 0.0  # everything again once it answers

    def _payload(self, alarm: Alarm, labels: Labels, ends_at: float) -> dict[str, Any]:
        starts = alarm.raised_at or alarm.updated_at or ends_at
        payload: dict[str, Any] = {
            "labels": dict(labels),
            "annotations": alert_annotations(alarm),
            "startsAt": rfc3339(starts),
            "endsAt": rfc3339(max(ends_at, starts)),
        }
        if self.config.generator_url:
            payload["generatorURL"] = self.config.generator_url
        return payload

    # ---------------------------------------------------------------- metrics

    def metric_families(self) -> list[Metric]:
        """The sink's own series, labelled ``cluster`` and ``url``."""
        pushes = CounterMetricFamily(
            "beamside_alertmanager_pushes",
            "POSTs to an Alertmanager's /api/v2/alerts, by result (ok or error)",
            labels=["cluster", "url", "result"],
        )
        last = GaugeMetricFamily(
            "beamside_alertmanager_last_success_timestamp_seconds",
            "Unix time of the last successful POST to the Alertmanager",
            labels=["cluster", "url"],
        )
        pending = GaugeMetricFamily(
            "beamside_alertmanager_pending_alerts",
            "Alerts (changes and resolutions) waiting to be delivered to the Alertmanager",
            labels=["cluster", "url"],
        )
        dropped = CounterMetricFamily(
            "beamside_alertmanager_dropped_resolutions",
            "Resolutions dropped because too many were pending for an unreachable Alertmanager",
            labels=["cluster", "url"],
        )
        active = GaugeMetricFamily(
            "beamside_alertmanager_active_alerts",
            "Active alarms the sink keeps firing in Alertmanager",
            labels=["cluster"],
        )
        for t in self.targets:
            pushes.add_metric([self.cluster, t.url, "ok"], float(t.sent_total))
            pushes.add_metric([self.cluster, t.url, "error"], float(t.failed_total))
            if t.last_success_timestamp:
                last.add_metric([self.cluster, t.url], t.last_success_timestamp)
            pending.add_metric([self.cluster, t.url], float(t.queue_size))
            dropped.add_metric([self.cluster, t.url], float(t.dropped_total))
        active.add_metric([self.cluster], float(len(self._active)))
        return [pushes, last, pending, dropped, active]

    def collect(self) -> Iterator[Metric]:
        """So the sink can be registered as a prometheus_client collector."""
        yield from self.metric_families()


# -------------------------------------------------------------------- helpers


def alert_labels(alarm: Alarm, cluster: str = "") -> Labels:
    """The alert's identity; empty values are left out (Alertmanager drops them)."""
    pairs = (
        ("alertname", alarm.id),
        ("severity", str(alarm.severity)),
        ("node", alarm.node),
        ("family", alarm.family),
        ("cluster", alarm.cluster or cluster),
    )
    return tuple((k, v) for k, v in pairs if v)


def alert_annotations(alarm: Alarm) -> dict[str, str]:
    where = f"node {alarm.node}" if alarm.node else f"family {alarm.family}"
    description = f"{alarm.id} ({alarm.severity}) on {where}: {alarm.cause}"
    if alarm.repair:
        description += f". Repair: {alarm.repair}"
    notes = {
        "summary": alarm.cause or alarm.id,
        "description": description,
        "cause": alarm.cause,
        "repair_action": alarm.repair,
        "acknowledged_by": alarm.acknowledged_by or "",
        "comments": "\n".join(
            f"{rfc3339(c.at)} {c.who}: {c.text}" for c in alarm.comments[-MAX_COMMENTS:]
        ),
    }
    out = {k: clip(v, TEXT_LIMIT) for k, v in notes.items() if v}
    if alarm.info:
        out["additional_info"] = info_json(alarm.info)
    return out


def info_json(info: Any, limit: int = INFO_LIMIT) -> str:
    """Compact JSON of ``info`` (bytes as text, tuples as lists, anything
    else by ``str``), at most ``limit`` UTF-8 bytes."""
    text = json.dumps(
        _jsonable(info, 0), separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return clip(text, limit)


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, marked when cut."""
    data = text.encode("utf-8", "replace")  # a lone surrogate becomes "?"
    if len(data) <= limit:
        return data.decode()
    marker = f"…[truncated, {len(data)} bytes]"
    room = max(limit - len(marker.encode()), 0)
    return data[:room].decode("utf-8", "ignore") + marker


def _jsonable(value: Any, depth: int) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth >= _JSON_DEPTH:
        return "…"
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, dict):
        return {_key(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v, depth + 1) for v in value]
    return str(value)


def _key(key: Any) -> str:
    if isinstance(key, bytes | bytearray):
        return bytes(key).decode("utf-8", "replace")
    return key if isinstance(key, str) else str(key)


def rfc3339(t: float) -> str:
    """Unix time as RFC 3339 UTC with milliseconds (``2024-05-01T12:00:00.000Z``)."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
