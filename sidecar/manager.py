"""The node registry: one supervised task per managed node.

Each node's task connects (with that target's cookie), loads and attaches the
agents, then collects one snapshot per interval until the connection drops;
then it backs off and starts over, so a node that returns is attached again
with its agents reloaded.  A node whose cookie is refused is reported (state,
counter, one log line per change) and retried slowly; the others are not
affected.

Reconnect schedule (one :class:`NodeRetry` per node)
    Every failure of a node - refused, timeout, handshake, cookie, TLS,
    protocol error, a connection that ends before the node was healthy -
    takes the next delay of one schedule: 0.25 s, times 1.5 per failure,
    capped at 60 s (0.25, 0.38, 0.56, 0.84, 1.3, 1.9, 2.8, 4.3, 6.4, 9.6, 14,
    22, 32, 49, 60, 60, ...: the cap after 15 failures, about 3.5 minutes),
    each drawn with equal jitter (:mod:`sidecar.backoff`: uniform in
    ``[d/2, d]``).  Factor 1.5, not 2: a node back from a restart of ``t``
    seconds is re-attached within about ``t/2`` more.  A refused or unreadable
    cookie and a TLS set-up mistake take at least 15 s, an agent conflict at
    least 5 s (floors: the schedule still grows underneath, so they reach the
    cap too).  A successful attach does not reset it:
    the schedule starts over only once the node has been *healthy* - attached
    and collecting successfully for ``healthy_after`` (30 s) - so a node that
    was healthy and goes away is retried within 0.25 s, while one that
    attaches and dies at once (or sends garbage after the handshake) is
    retried ever more slowly, up to once a minute.  A node-down event does
    not cut a wait short.

Log lines per state change, not per attempt
    The first failure of a streak, and a failure whose ``reason`` differs
    from the last one told, is one WARNING (ERROR for a refused cookie) with
    the reason and the failure count; further failures for the same reason
    log at DEBUG only.  The first attach after failures is one INFO
    ``<node> is up again after N attempts (M s)``; if the node fails again
    before it is healthy that is one more WARNING, and once it is healthy one
    more INFO says it is up.  The ``reason`` (log field, ``last_error`` and
    the ``beamside_node_connect_failures_total`` label) is the error that
    ended the connection (the connection's own close error, e.g. a protocol
    error), not the generic ``down`` of whoever noticed it.  Collects that
    fail in a row on a live connection are likewise one WARNING and, when
    one succeeds again, one INFO.

``discover: connected`` follows each seed's ``nodes()``: nodes joining the
mesh are added with the seed's cookie and family override, nodes that left
every seed's view are dropped.  ``discover: kubernetes`` and ``dns`` follow
the pods / A records of :mod:`sidecar.discovery` the same way.

Sharded (N replicas), each replica manages only the nodes whose name hashes
to its shard (:mod:`sidecar.discovery.sharding`), listed or discovered; a
node an operator adds at run time is managed wherever it was asked.

Nothing here is called by a scrape: the exporter reads :attr:`snapshots` and
:meth:`statuses`, which are replaced whole, never mutated in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random as _random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Protocol

from . import agents
from .alarms.checks import AlarmChecker
from .backoff import Backoff, BackoffPolicy, wait_event
from .config import CookieSource, ManagerConfig, Target
from .discovery import Discoverer, FollowStatus, follow
from .discovery.dns import DnsDiscoverer
from .discovery.kubernetes import KubernetesDiscoverer
from .discovery.sharding import SINGLE, ShardSpec, owns
from .erldist.errors import (
    DistError,
    DistTimeout,
    NodeDown,
    TlsError,
    TlsNotSpoken,
    TlsRequired,
)
from .erldist.node import LocalNode
from .erldist.term import Atom
from .erldist.tls import TlsConfig
from .model import NodeSnapshot, NodeState, NodeStatus, decode_snapshot

log = logging.getLogger(__name__)

RETRY_MIN = 0.25  # a healthy node that went away is retried at once
RETRY_MAX = 60.0  # a node failing for good is tried about once a minute
RETRY_FACTOR = 1.5
RETRY_COOKIE = 15.0  # floor: a refused cookie will not fix itself quickly
RETRY_CONFLICT = 5.0  # floor: the other beamside may go (its agent is then ours)
#: every failure of a node takes the next delay: RETRY_MIN, times RETRY_FACTOR,
#: up to RETRY_MAX (at most: equal jitter, see sidecar.backoff)
RETRY_POLICY = BackoffPolicy(initial=RETRY_MIN, maximum=RETRY_MAX, factor=RETRY_FACTOR)
#: seconds a node must stay attached, collecting, before its schedule starts over
HEALTHY_AFTER = 30.0
STOP_DEADLINE = 10.0  # seconds for detaching every node at stop (the rest: watchdogs)
DETACH_TIMEOUT = 15.0  # unloading ~10 modules on a busy 100k-process node takes seconds
#: how often a family not fixed by config or a release is asked again: attached
#: while the node boots, its main application may not run yet
FAMILY_RECHECK = 60.0
RELEASE_SOURCES = ("boot_script", "release_handler")


class CookieUnavailable(DistError):
    """The target's cookie file or variable could not be read."""

    metric_reason: ClassVar[str] = "cookie_unavailable"


class NodeHooks(Protocol):
    """What other parts of beamside add to each node's life (the notifier does)."""

    def attach_options(self, node: str) -> Mapping[str, Any] | None:
        """Extra options for the agent's attach (log handler, notifications)."""

    def collect_options(self, node: str) -> Mapping[str, Any]:
        """Extra options for every collect."""

    def on_snapshot(self, snapshot: NodeSnapshot) -> None:
        """A new snapshot of ``snapshot.node``."""

    def on_node_state(self, node: str, event: str, detail: str) -> None:
        """``attached`` (detail: agent action) or ``lost`` (detail: why)."""


@dataclass(frozen=True, slots=True)
class Streak:
    """A run of failures of one node, as told in its log lines."""

    reason: str  # the latest failure's reason
    failures: int  # failures in the run (each was followed by one attempt)
    seconds: float  # since the first of them


class NodeRetry:
    """One node's reconnect schedule and its current run of failures.

    :meth:`failed` after every failure gives the delay before the next
    attempt and says whether the failure is news (log it above DEBUG);
    :meth:`attached` and :meth:`collected` say when the node's return is
    news.  The schedule starts over only when :meth:`collected` finds the
    node attached for ``healthy_after`` seconds.  ``clock`` and ``random``
    are injectable for tests.
    """

    def __init__(
        self,
        policy: BackoffPolicy = RETRY_POLICY,
        *,
        healthy_after: float = HEALTHY_AFTER,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.backoff = Backoff(policy, random=random)
        self.healthy_after = healthy_after
        self._clock = clock
        self.reason: str | None = None  # latest failure of the run; None: no run
        self.failures = 0
        self._since = 0.0
        self._told: str | None = None  # what the last line above DEBUG said: a reason, or "up"
        self._up_told = False  # "up again" said in this run
        self._attached_at: float | None = None

    def streak(self) -> Streak | None:
        if self.reason is None:
            return None
        return Streak(self.reason, self.failures, self._clock() - self._since)

    def failed(self, reason: str, floor: float = 0.0) -> tuple[float, bool]:
        """A failed attempt, or a connection that ended: (delay before the
        next attempt, whether this is news: the run starts or its reason changed,
        or the node was said to be up since)."""
        if self.reason is None:
            self._since = self._clock()
            self.failures = 0
            self._up_told = False
        self.failures += 1
        self.reason = reason
        self._attached_at = None
        news = self._told != reason
        self._told = reason
        return self.backoff.next(floor), news

    def attached(self) -> Streak | None:
        """An attach succeeded: the run to tell of (the first attach after
        failures), else None."""
        self._attached_at = self._clock()
        if self.reason is None or self._up_told:
            return None
        self._up_told = True
        self._told = "up"
        return self.streak()

    def collected(self) -> Streak | None:
        """A collect succeeded.  Once the node has been attached for
        ``healthy_after`` the run ends and the schedule starts over; the run
        is returned if the last line told was a failure (else None)."""
        if self.reason is None or self._attached_at is None:
            return None
        if self._clock() - self._attached_at < self.healthy_after:
            return None
        streak = self.streak()
        news = self._told != "up"
        self.backoff.reset()
        self.reason = None
        self.failures = 0
        self._told = "up"
        return streak if news else None


@dataclass
class _Managed:
    target: Target
    discovered_by: str | None
    retry: NodeRetry
    task: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    #: the family is the config's or a release's: never asked again
    family_fixed: bool = False
    family_asked: float = 0.0
    #: why the node's connection ended (the connection's close error), this attempt
    lost: BaseException | None = None
    #: the reason of the collects failing in a row on this connection ("": none), and how many
    collect_failing: str = ""
    collect_failures: int = 0


def failure_reason(exc: BaseException) -> str:
    """A short label value for a connection failure: the error class's
    ``metric_reason`` (see :mod:`sidecar.erldist.errors`), ``error`` for others."""
    return exc.metric_reason if isinstance(exc, DistError) else "error"


def _is_tls_setup(exc: DistError) -> bool:
    """A TLS set-up mistake (certificates, names, TLS on one side only): it
    will not fix itself, so it is an error, retried slowly, not a node down."""
    return isinstance(exc, TlsError | TlsRequired) and not isinstance(exc, TlsNotSpoken)


class NodeManager:
    def __init__(
        self,
        config: ManagerConfig,
        local: LocalNode,
        checker: AlarmChecker | None = None,
        *,
        shard: ShardSpec = SINGLE,
        hooks: NodeHooks | None = None,
        retry_policy: BackoffPolicy = RETRY_POLICY,
        healthy_after: float = HEALTHY_AFTER,
    ) -> None:
        self.config = config
        self.retry_policy = retry_policy
        self.healthy_after = healthy_after
        self.shard = shard
        self.hooks = hooks
        self.discovery_status: dict[str, FollowStatus] = {}
        # Made now, so a discovery that cannot work (no namespace, no API
        # address, no resolver) is a DiscoveryError at startup.
        self._discoverers: list[tuple[Target, Discoverer]] = [
            (target, self._discoverer(target))
            for target in config.targets
            if target.discover in ("kubernetes", "dns")
        ]
        self.local = local
        self.checker = checker
        self.cluster = config.cluster
        self.snapshots: dict[str, NodeSnapshot] = {}
        #: called with each new snapshot after the checks and hooks (the
        #: exporter renders ahead of a scrape there)
        self.snapshot_listeners: list[Callable[[NodeSnapshot], object]] = []
        self._status: dict[str, NodeStatus] = {}
        self._nodes: dict[str, _Managed] = {}
        self._discovery: list[asyncio.Task[None]] = []
        self._seen_by: dict[str, set[str]] = {}  # seed -> its nodes() at last look
        self.ticks_completed = 0  # successful collections, all nodes
        self._stopping = False
        local.on_node_down(self._on_node_down)

    # ------------------------------------------------------------ public API

    def statuses(self) -> list[NodeStatus]:
        return list(self._status.values())

    def status(self, node: str) -> NodeStatus | None:
        return self._status.get(node)

    @property
    def ready(self) -> bool:
        """Every node has been tried at least once."""
        return all(s.state is not NodeState.CONNECTING for s in self._status.values())

    async def start(self) -> None:
        if self.checker is not None:
            self._discovery.append(
                asyncio.create_task(self._evaluate(self.checker), name="alarm checks")
            )
        for target in self.config.targets:
            for node in target.nodes:
                if owns(self.shard, node):
                    self.add_target(node, target)
            if target.discover == "connected":
                for seed in target.nodes:
                    self._discovery.append(
                        asyncio.create_task(self._discover(seed, target), name=f"discover {seed}")
                    )
        for target, discoverer in self._discoverers:
            status = self.discovery_status.setdefault(discoverer.description, FollowStatus())
            self._discovery.append(
                asyncio.create_task(
                    follow(
                        discoverer,
                        self._follower(discoverer.description, target),
                        self._discovery_interval(target),
                        status=status,
                    ),
                    name=f"discover {discoverer.description}",
                )
            )

    def add_target(
        self,
        node: str,
        target: Target | None = None,
        *,
        cookie: CookieSource | None = None,
        family: str | None = None,
        discovered_by: str | None = None,
        tls: TlsConfig | None = None,
    ) -> bool:
        """Manage ``node`` from now on; False if it already is.  A node given
        by name only (``cookie``, ``family``, ``tls``) connects over TLS when
        ``tls`` says so."""
        if node in self._nodes or self._stopping:
            return False
        if target is None:
            if cookie is None:
                raise ValueError("a new target needs a cookie source")
            target = Target((node,), cookie, "none", family, tls=tls)
        retry = NodeRetry(self.retry_policy, healthy_after=self.healthy_after)
        managed = _Managed(target, discovered_by, retry)
        self._nodes[node] = managed
        self._status[node] = NodeStatus(
            node, target.family or "unknown", discovered_by=discovered_by
        )
        managed.task = asyncio.create_task(self._run_node(node, managed), name=f"node {node}")
        log.info("managing %s", node, extra={"node": node, "discovered_by": discovered_by})
        return True

    async def remove_target(self, node: str) -> bool:
        """Stop managing ``node``: detach its agents and close the connection."""
        managed = self._nodes.pop(node, None)
        if managed is None:
            return False
        if managed.task is not None:
            managed.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await managed.task
        await self._detach(node)
        self._status.pop(node, None)
        self.snapshots.pop(node, None)
        if self.checker is not None:
            self.checker.forget(node)
        log.info("stopped managing %s", node, extra={"node": node})
        return True

    async def live(self, node: str, keys: list[str], timeout: float = 2.0) -> dict[str, Any]:
        """The live subset of metrics for ``node``, read now (one small call)."""
        if node not in self._nodes:
            raise KeyError(node)
        return await agents.live(self.local, node, keys, timeout=timeout)

    async def live_stream(self, node: str, keys: list[str]) -> AsyncIterator[dict[str, Any]]:
        """:meth:`live` every ``intervals.live`` (what the gRPC stream serves)."""
        interval = self.config.intervals.live
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            yield await self.live(node, keys, timeout=max(interval, 1.0))
            next_tick = max(next_tick + interval, loop.time())
            await asyncio.sleep(next_tick - loop.time())

    async def stop(self, deadline: float = STOP_DEADLINE) -> None:
        """Stop collecting, detach every node cleanly, close connections.

        Detaching takes a few dozen calls per node, all nodes at once; those
        not done within ``deadline`` seconds (thousands of nodes, or slow
        ones) are simply disconnected: each node's watchdog then removes
        beamside as it does after a sidecar crash, so a stop stays within a
        pod's grace period and leaves nothing behind either way."""
        self._stopping = True
        for task in self._discovery:
            task.cancel()
        tasks = [m.task for m in self._nodes.values() if m.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, *self._discovery, return_exceptions=True)
        detaching = [
            asyncio.create_task(self._detach(node), name=f"detach {node}")
            for node in list(self._nodes)
        ]
        if detaching:
            _, late = await asyncio.wait(detaching, timeout=deadline)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            if late:
                log.warning(
                    "detached %d of %d nodes within %g s; disconnecting from the other %d:"
                    " their watchdogs remove beamside",
                    len(detaching) - len(late),
                    len(detaching),
                    deadline,
                    len(late),
                )
        for _, discoverer in self._discoverers:
            if isinstance(discoverer, KubernetesDiscoverer):
                await discoverer.aclose()
        await self.local.close()

    # ------------------------------------------------------------ per node

    def _set(self, node: str, **changes: Any) -> NodeStatus:
        status = replace(self._status[node], **changes)
        self._status[node] = status
        return status

    def _on_node_down(self, peer: str, error: BaseException | None) -> None:
        managed = self._nodes.get(peer)
        if managed is not None:
            if error is not None:
                managed.lost = error
            managed.wake.set()

    async def _run_node(self, node: str, managed: _Managed) -> None:
        while True:
            managed.lost = None
            try:
                await self._attach(node, managed)
                await self._collect_loop(node, managed)
            except asyncio.CancelledError:
                raise
            except DistError as exc:
                delay = self._connection_failed(node, managed, self._cause(managed, exc))
            except Exception as exc:  # a bug must not kill supervision
                log.exception("unexpected failure managing %s", node, extra={"node": node})
                self._set(node, state=NodeState.ERROR, last_error=repr(exc))
                delay, _ = managed.retry.failed("error")
            self.snapshots.pop(node, None)
            # Not woken by a node-down: a connection of a failed attempt that
            # ends late must not cut the wait short.
            await asyncio.sleep(delay)

    @staticmethod
    def _cause(managed: _Managed, exc: DistError) -> DistError:
        """The error that really ended the attempt: a generic :class:`NodeDown`
        (a call or the collect loop noticing the connection is gone) is
        replaced by the connection's own close error (a protocol error, the
        peer closing, silence), which carries the specific reason."""
        lost = managed.lost
        if (
            isinstance(exc, NodeDown)
            and failure_reason(exc) == NodeDown.metric_reason
            and isinstance(lost, DistError)
        ):
            return lost
        return exc

    def _connection_failed(self, node: str, managed: _Managed, exc: DistError) -> float:
        """Record the failure (one log line if it is news); the (jittered)
        delay before the next attempt."""
        reason = failure_reason(exc)
        before = self._status[node]
        failures = dict(before.connect_failures)
        failures[reason] = failures.get(reason, 0) + 1
        state = {
            "cookie": NodeState.COOKIE_REFUSED,
            "cookie_unavailable": NodeState.ERROR,
            "agent_conflict": NodeState.AGENT_CONFLICT,
        }.get(reason, NodeState.ERROR if _is_tls_setup(exc) else NodeState.DOWN)
        self._set(node, state=state, last_error=str(exc), connect_failures=failures)
        if before.state is NodeState.UP and self.hooks is not None:
            self.hooks.on_node_state(node, "lost", str(exc))
        if state is NodeState.AGENT_CONFLICT:
            floor = RETRY_CONFLICT
        elif state is not NodeState.DOWN:
            floor = RETRY_COOKIE
        else:
            floor = 0.0
        delay, news = managed.retry.failed(reason, floor)
        if not news:
            level = logging.DEBUG
        elif state is NodeState.COOKIE_REFUSED:
            level = logging.ERROR
        else:
            level = logging.WARNING
        count = managed.retry.failures
        log.log(
            level,
            "%s is %s (%s): %s; failure %d, next attempt in %.1f s",
            node,
            state.value,
            reason,
            exc,
            count,
            delay,
            extra={"node": node, "reason": reason, "attempts": count, "retry_in": delay},
        )
        return delay

    async def _attach(self, node: str, managed: _Managed) -> None:
        try:
            cookie = managed.target.cookie.read()
        except ValueError as exc:
            raise CookieUnavailable(str(exc)) from None
        await self.local.connect(node, cookie=cookie, tls=managed.target.tls)
        if not self.local.is_connected(node):
            # Lost at once (garbage after the handshake): fail this attempt
            # rather than let the next call open another connection.
            raise NodeDown(f"{node} went down right after the handshake")
        # Never downgrade an agent a newer beamside is using (that one wins:
        # AgentConflict, and we let go of the connection); an orphaned newer
        # agent is replaced.
        try:
            info = await agents.ensure_loaded(self.local, node, allow_downgrade=False)
        except agents.AgentConflict:
            await self.local.disconnect(node)
            raise
        user_plugins = self.config.plugins.user
        if user_plugins:
            for problem in await agents.load_user_plugins(
                self.local, node, user_plugins, info.modules
            ):
                log.warning("plugin not loaded on %s: %s", node, problem, extra={"node": node})
        opts: dict[str, Any] = self.config.agents.attach_options()
        if self.hooks is not None:
            opts.update(self.hooks.attach_options(node) or {})
        await agents.attach(self.local, node, opts)
        family = managed.target.family or info.family_hint or "unknown"
        managed.family_fixed = (
            managed.target.family is not None or info.family_source in RELEASE_SOURCES
        )
        managed.family_asked = time.monotonic()
        managed.collect_failing, managed.collect_failures = "", 0
        status = self._set(
            node,
            state=NodeState.UP,
            family=family,
            last_error="",
            agent_version=info.version,
            otp_release=info.otp_release,
            attaches=self._status[node].attaches + 1,
        )
        extra = {"node": node, "family": status.family, "otp_release": info.otp_release}
        streak = managed.retry.attached()
        if streak is not None:
            log.info(
                "%s after %d attempts (%.0f s)",
                f"{node} is up again" if status.attaches > 1 else f"attached to {node}",
                streak.failures,
                streak.seconds,
                extra={**extra, "attempts": streak.failures, "reason": streak.reason},
            )
        else:
            # the first attach; later ones while failing are not news
            level = logging.INFO if status.attaches == 1 else logging.DEBUG
            log.log(level, "attached to %s", node, extra=extra)
        if self.hooks is not None:
            self.hooks.on_node_state(node, "attached", info.action)

    async def _collect_loop(self, node: str, managed: _Managed) -> None:
        interval = self.config.intervals.metrics
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            started = time.monotonic()
            # distribution per node or per peer (metrics:), plugins switched off (plugins:);
            # checker and hooks add theirs
            opts: dict[str, Any] = self.config.collect_options(node)
            if self.checker is not None:
                opts.update(self.checker.collect_options(node, self._status[node].family))
            if self.hooks is not None:
                opts.update(self.hooks.collect_options(node))
            if not managed.family_fixed and started - managed.family_asked >= FAMILY_RECHECK:
                await self._recheck_family(node, managed)
            try:
                data = await agents.collect(
                    self.local, node, opts, timeout=max(interval * 0.8, 1.0)
                )
            except (NodeDown, DistTimeout):
                if not self.local.is_connected(node):
                    raise NodeDown(f"{node} went down") from None
                self._count_collect_error(node, managed, "timeout", "timeout")
            except DistError as exc:
                self._count_collect_error(node, managed, failure_reason(exc), str(exc))
            else:
                if managed.collect_failing:
                    log.info(
                        "collection on %s works again after %d failures",
                        node,
                        managed.collect_failures,
                        extra={"node": node, "attempts": managed.collect_failures},
                    )
                    managed.collect_failing, managed.collect_failures = "", 0
                duration = time.monotonic() - started
                snapshot = decode_snapshot(
                    data,
                    node=node,
                    family=self._status[node].family,
                    cluster=self.cluster,
                    taken_at=time.time(),
                    duration=duration,
                )
                self._set(
                    node,
                    last_collect_duration=duration,
                    last_success=time.time(),
                    uptime_seconds=(snapshot.uptime_ms or 0.0) / 1000,
                )
                self.snapshots[node] = snapshot
                self.ticks_completed += 1
                streak = managed.retry.collected()
                if streak is not None:  # healthy again, after a failure was told
                    log.info(
                        "%s is up again after %d attempts (%.0f s)",
                        node,
                        streak.failures,
                        streak.seconds,
                        extra={"node": node, "attempts": streak.failures},
                    )
                if self.checker is not None:
                    try:
                        self.checker.on_snapshot(snapshot)
                    except Exception:  # a check bug must not stop collection
                        log.exception("alarm checks on %s failed", node, extra={"node": node})
                if self.hooks is not None:
                    try:
                        self.hooks.on_snapshot(snapshot)
                    except Exception:
                        log.exception("snapshot hook on %s failed", node, extra={"node": node})
                for listener in self.snapshot_listeners:
                    try:
                        listener(snapshot)
                    except Exception:
                        log.exception("snapshot listener on %s failed", node, extra={"node": node})
            next_tick += interval
            wait = next_tick - loop.time()
            if wait < 0:  # fell behind: skip ticks rather than burst
                next_tick = loop.time()
                wait = 0
            managed.wake.clear()
            await wait_event(managed.wake, wait)
            if not self.local.is_connected(node):
                raise NodeDown(f"{node} went down")

    async def _recheck_family(self, node: str, managed: _Managed) -> None:
        """The agent's family hint again (no release, no config override): the
        main application may have started since the attach."""
        managed.family_asked = time.monotonic()
        try:
            term = await self.local.rpc(node, "beamside_agent", "info", [], timeout=5.0)
            info = agents.AgentInfo.from_term(term)
        except DistError as exc:
            log.debug("family of %s not re-read: %s", node, exc, extra={"node": node})
            return
        managed.family_fixed = info.family_source in RELEASE_SOURCES
        family = info.family_hint or "unknown"
        before = self._status[node].family
        if family != before:
            self._set(node, family=family)
            log.info(
                "family of %s is now %s (was %s; from %s)",
                node,
                family,
                before,
                info.family_source,
                extra={"node": node, "family": family},
            )

    def _count_collect_error(self, node: str, managed: _Managed, reason: str, error: str) -> None:
        """Count a failed collect; one WARNING when collects start failing (or
        fail for another reason), DEBUG while they go on failing alike."""
        status = self._status[node]
        self._set(node, collect_errors=status.collect_errors + 1, last_error=error)
        level = logging.DEBUG if managed.collect_failing == reason else logging.WARNING
        managed.collect_failing = reason
        managed.collect_failures += 1
        log.log(
            level,
            "collection on %s failed (%s): %s; failure %d",
            node,
            reason,
            error,
            managed.collect_failures,
            extra={"node": node, "reason": reason, "attempts": managed.collect_failures},
        )

    async def _detach(self, node: str) -> None:
        if not self.local.is_connected(node):
            return
        try:
            await agents.detach(self.local, node, timeout=DETACH_TIMEOUT)
        except DistError as exc:
            log.warning("detaching from %s failed: %s", node, exc, extra={"node": node})
        await self.local.disconnect(node)

    async def _evaluate(self, checker: AlarmChecker) -> None:
        """Availability and family checks, every second (in memory, cheap)."""
        while True:
            try:
                statuses = self.statuses()
                checker.on_statuses(statuses)
                checker.on_family(self.snapshots, statuses)
            except Exception:
                log.exception("alarm evaluation failed")
            await asyncio.sleep(1.0)

    # ------------------------------------------------------------ discovery

    async def _discover(self, seed: str, target: Target) -> None:
        """Follow ``nodes()`` on ``seed`` every interval."""
        interval = max(min(self.config.intervals.metrics, 5.0), 1.0)
        known: set[str] = set()
        while True:
            await asyncio.sleep(interval)
            if not self.local.is_connected(seed):
                continue
            try:
                peers = await self.local.rpc(seed, "erlang", "nodes", [], timeout=5)
            except DistError as exc:
                log.debug("discovery on %s failed: %s", seed, exc)
                continue
            current = {str(p) for p in peers if isinstance(p, Atom)}
            for node in sorted(current - known):
                if not owns(self.shard, node):
                    continue
                self.add_target(
                    node,
                    target=target.single(node),
                    discovered_by=seed,
                )
            for node in sorted(known - current):
                managed = self._nodes.get(node)
                still_seen = any(
                    node in self._seen_by.get(other, set())
                    for other in self._seen_by
                    if other != seed
                )
                if managed is not None and managed.discovered_by is not None and not still_seen:
                    await self.remove_target(node)
            known = current
            self._seen_by[seed] = current

    def _discoverer(self, target: Target) -> Discoverer:
        if target.kubernetes is not None:
            return KubernetesDiscoverer(target.kubernetes)
        if target.dns is not None:
            return DnsDiscoverer(target.dns)
        raise ValueError(f"target has discover: {target.discover} but no settings for it")

    @staticmethod
    def _discovery_interval(target: Target) -> float:
        settings = target.kubernetes or target.dns
        return settings.interval if settings is not None else 10.0

    def _follower(self, source: str, target: Target) -> Callable[[frozenset[str]], Awaitable[None]]:
        """What to do with each new answer of a Kubernetes / DNS discoverer."""

        async def apply(found: frozenset[str]) -> None:
            mine = {node for node in found if owns(self.shard, node)}
            for node in sorted(mine):
                self.add_target(
                    node,
                    target=target.single(node),
                    discovered_by=source,
                )
            gone = [
                node
                for node, managed in self._nodes.items()
                if managed.discovered_by == source and node not in mine
            ]
            for node in gone:
                await self.remove_target(node)

        return apply
