"""Exponential backoff with jitter: one rule for every retry loop in beamside.

The node manager (reconnecting to a node), the Alertmanager sink and the Loki
sink (re-POSTing) all wait the same way: :class:`Backoff` over a
:class:`BackoffPolicy` - ``initial`` seconds, multiplied by ``factor`` after
each failure, never more than ``maximum`` (which caps the first delay too).

Jitter: "equal jitter"
    Each delay ``d`` of the schedule is drawn uniformly from
    ``[d * (1 - jitter), d]``; the default ``jitter = 0.5`` is the classic
    equal jitter (half fixed, half random).  Chosen over full jitter
    (``[0, d]``) because a retry never comes sooner than half the schedule,
    so a server that is down is not hit again at once by an unlucky draw,
    while the spread over half the interval still keeps many sidecars (or
    many nodes of one sidecar) from retrying in step.  And the drawn delay is
    never above the schedule: ``maximum`` is a real bound, and the manager's
    first retry for a node that just went away (``initial`` = 0.25 s) stays
    at most 0.25 s, so a returning node is re-attached at once.
    ``jitter = 0`` gives the exact schedule (tests).

``random`` (a function returning a float in ``[0, 1)``) is injectable, so
tests can pin the draw.  :func:`wait_event` is the one way those loops sleep
until woken.
"""

from __future__ import annotations

import asyncio
import math
import random as _random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Backoff", "BackoffPolicy", "wait_event"]


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """A schedule: ``initial`` seconds, times ``factor`` after each failure,
    capped at ``maximum``; ``jitter`` is the fraction of each delay drawn at
    random (0.5: equal jitter, 0: none)."""

    initial: float
    maximum: float
    factor: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        for name in ("initial", "maximum"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a positive number of seconds, got {value!r}")
        if not (math.isfinite(self.factor) and self.factor >= 1):
            raise ValueError(f"factor: expected a number >= 1, got {self.factor!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter: expected a fraction in [0, 1], got {self.jitter!r}")

    @classmethod
    def fixed(cls, delay: float, jitter: float = 0.5) -> BackoffPolicy:
        """The same ``delay`` every time (jittered the same way)."""
        return cls(delay, delay, 1.0, jitter)


class Backoff:
    """The delays of one retry loop: :meth:`next` after each failure,
    :meth:`reset` after a success (the next delay is ``initial`` again)."""

    __slots__ = ("_attempts", "_current", "_random", "policy")

    def __init__(
        self, policy: BackoffPolicy, *, random: Callable[[], float] = _random.random
    ) -> None:
        self.policy = policy
        self._random = random
        self._current = min(policy.initial, policy.maximum)
        self._attempts = 0

    @property
    def attempts(self) -> int:
        """Delays handed out since the last :meth:`reset`."""
        return self._attempts

    def peek(self) -> float:
        """The scheduled (not jittered) delay :meth:`next` draws from."""
        return self._current

    def next(self, floor: float = 0.0) -> float:
        """The delay before the next attempt, in seconds; advances the schedule.

        ``floor`` raises this one delay (a failure known to be slow to fix,
        such as a refused cookie) without leaving the schedule: the delay is
        ``max(scheduled, floor)``, never above ``maximum``, jittered the same
        way, and the schedule grows underneath as it would have."""
        scheduled = self._current
        self._current = min(self.policy.maximum, scheduled * self.policy.factor)
        self._attempts += 1
        return self.jittered(max(scheduled, min(floor, self.policy.maximum)))

    def jittered(self, delay: float) -> float:
        """``delay`` with the policy's jitter: uniform in ``[delay * (1 - jitter), delay]``."""
        return delay * (1.0 - self.policy.jitter * self._random())

    def reset(self) -> None:
        """Back to ``initial`` (after a success)."""
        self._current = min(self.policy.initial, self.policy.maximum)
        self._attempts = 0


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds pass (None: no limit);
    True when it was set.

    Not ``asyncio.wait_for(event.wait(), timeout)``: on Python 3.11 that drops
    a cancellation that arrives as the event is set, so a retry loop cancelled
    at that moment runs on and whoever waits for it (the manager's ``stop``)
    waits forever.  ``asyncio.timeout`` keeps the cancellation.
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
