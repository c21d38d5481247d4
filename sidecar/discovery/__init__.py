"""Finding the nodes to manage: Kubernetes pods, DNS records, and shards.

A *discoverer* answers one question, "which node names exist now?", as a
``frozenset[str]``.  :func:`follow` asks it every interval and hands each new
answer to a callback (the node manager adds and removes targets from it).

Two kinds of outcome are kept apart on purpose:

- an authoritative answer, even an empty one (no pod matches the selector,
  NXDOMAIN for a headless Service with no ready endpoints), replaces the set:
  scaling an app to zero must stop beamside from chasing its old nodes;
- a failure to get an answer (API server down, RBAC refusal, DNS timeout)
  raises a :class:`DiscoveryError`; :func:`follow` then keeps the last known
  set, logs the error once per change of message, and tries again.

Node names are built from a template such as ``app@{pod_ip}``; templates are
checked when a config is built, so a typo is a config error, not a runtime
surprise.
"""

from __future__ import annotations

import asyncio
import logging
import random
import string
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..erldist.names import parse_node_name

log = logging.getLogger(__name__)

__all__ = [
    "Discoverer",
    "DiscoveryError",
    "FollowStatus",
    "check_template",
    "follow",
    "render_node_name",
]


class DiscoveryError(Exception):
    """Discovery could not get an answer; the last known set stays in force."""


@runtime_checkable
class Discoverer(Protocol):
    """Anything that can list the node names that exist now."""

    @property
    def description(self) -> str:
        """Short text for logs, e.g. ``kubernetes prod/app=shop``."""
        ...

    async def discover(self) -> frozenset[str]:
        """The current node names; raise :class:`DiscoveryError` when unknown."""
        ...


def check_template(template: str, allowed: Iterable[str], what: str = "node_name_template") -> None:
    """Raise ``ValueError`` unless ``template`` uses only ``allowed`` fields and
    renders (with sample values) to a valid node name."""
    allowed = tuple(allowed)
    used: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"{what} {template!r}: {exc}") from None
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in allowed or spec or conversion:
            raise ValueError(
                f"{what} {template!r}: unknown field {{{name}}}"
                f" (use {', '.join('{' + a + '}' for a in allowed)})"
            )
        used.append(name)
    if not used:
        raise ValueError(f"{what} {template!r} uses no field: every node would get the same name")
    sample = dict.fromkeys(allowed, "x1")
    sample.update({"pod_ip": "10.0.0.1", "ip": "10.0.0.1"})
    try:
        parse_node_name(template.format_map(sample))
    except ValueError as exc:
        raise ValueError(f"{what} {template!r} does not make a node name: {exc}") from None


def render_node_name(template: str, fields: Mapping[str, str]) -> str | None:
    """The node name for one discovered thing, or None when a field it needs
    is empty or the result is not a valid node name (the caller logs it)."""
    try:
        name = template.format_map(fields)
    except (KeyError, ValueError):
        return None
    for _literal, field_name, _spec, _conv in string.Formatter().parse(template):
        if field_name is not None and not fields.get(field_name):
            return None
    try:
        return str(parse_node_name(name))
    except ValueError:
        return None


@dataclass(slots=True)
class FollowStatus:
    """What :func:`follow` knows, for metrics and health endpoints."""

    nodes: frozenset[str] = frozenset()
    applied: bool = False  # at least one answer was applied
    last_success: float | None = None  # time.time() of the last answer
    last_error: DiscoveryError | None = None  # None after a success
    failures: int = 0  # total failed attempts
    consecutive_failures: int = 0
    changes: int = 0  # answers that differed from the one before


async def follow(
    discoverer: Discoverer,
    apply: Callable[[frozenset[str]], Awaitable[None]],
    interval: float,
    *,
    status: FollowStatus | None = None,
    jitter: float = 0.1,
) -> None:
    """Run ``discoverer`` every ``interval`` seconds until cancelled.

    ``apply`` is awaited with the first answer and then with every answer that
    differs from the last applied one.  Errors keep the last set: ``apply``
    is not called, the error is logged once per distinct message (and again
    when discovery recovers), and the loop goes on.  ``apply`` raising is
    logged and retried at the next answer.  ``jitter`` spreads the requests of
    several replicas (each sleep is ``interval`` ± that fraction).
    """
    if interval <= 0:
        raise ValueError("interval must be positive")
    status = status if status is not None else FollowStatus()
    logged_error: str | None = None
    logged_empty = False
    while True:
        try:
            current = await discoverer.discover()
        except DiscoveryError as exc:
            status.failures += 1
            status.consecutive_failures += 1
            status.last_error = exc
            if str(exc) != logged_error:
                logged_error = str(exc)
                log.warning(
                    "discovery (%s) failed, keeping %d known node(s): %s",
                    discoverer.description,
                    len(status.nodes),
                    exc,
                    extra={"discovery": discoverer.description},
                )
        else:
            if logged_error is not None:
                log.info(
                    "discovery (%s) works again",
                    discoverer.description,
                    extra={"discovery": discoverer.description},
                )
                logged_error = None
            status.last_error = None
            status.consecutive_failures = 0
            status.last_success = time.time()
            if not current and not logged_empty:
                # Legitimate after a scale to zero; on first use, usually a typo.
                log.warning(
                    "discovery (%s) found no node",
                    discoverer.description,
                    extra={"discovery": discoverer.description},
                )
            logged_empty = not current
            if not status.applied or current != status.nodes:
                try:
                    await apply(current)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("applying discovered nodes failed")
                else:
                    if status.applied:
                        status.changes += 1
                    status.nodes = current
                    status.applied = True
        spread = interval * jitter
        await asyncio.sleep(max(0.0, interval + random.uniform(-spread, spread)))
