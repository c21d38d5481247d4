"""The one backoff helper (sidecar.backoff): schedule, cap, reset, jitter."""

from __future__ import annotations

import asyncio
import random

import pytest

from sidecar.backoff import Backoff, BackoffPolicy, wait_event


def exact(policy: BackoffPolicy) -> Backoff:
    """A backoff whose draws are pinned to 0: no jitter taken off."""
    return Backoff(policy, random=lambda: 0.0)


def test_grows_by_factor_up_to_the_cap() -> None:
    b = exact(BackoffPolicy(initial=0.25, maximum=2.0, factor=2.0))
    assert [b.next() for _ in range(6)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert b.attempts == 6


def test_other_factor() -> None:
    b = exact(BackoffPolicy(initial=1.0, maximum=100.0, factor=3.0))
    assert [b.next() for _ in range(5)] == [1.0, 3.0, 9.0, 27.0, 81.0]
    assert b.next() == 100.0


def test_maximum_below_initial_caps_the_first_delay() -> None:
    b = exact(BackoffPolicy(initial=0.5, maximum=0.2))
    assert [b.next() for _ in range(3)] == [0.2, 0.2, 0.2]


def test_reset_starts_over() -> None:
    b = exact(BackoffPolicy(initial=0.5, maximum=10.0))
    for _ in range(5):
        b.next()
    assert b.peek() == 10.0
    b.reset()
    assert b.attempts == 0
    assert b.peek() == 0.5
    assert b.next() == 0.5
    assert b.next() == 1.0


def test_many_failures_do_not_overflow() -> None:
    b = exact(BackoffPolicy(initial=0.05, maximum=10.0))
    for _ in range(5000):
        delay = b.next()
    assert delay == 10.0


def test_equal_jitter_bounds_with_pinned_draws() -> None:
    policy = BackoffPolicy(initial=1.0, maximum=8.0)  # jitter 0.5: equal jitter
    assert Backoff(policy, random=lambda: 0.0).next() == 1.0
    assert Backoff(policy, random=lambda: 0.5).next() == 0.75
    # random() < 1, so the lowest value is never quite reached
    assert Backoff(policy, random=lambda: 0.999999).next() == pytest.approx(0.5, abs=1e-5)


def test_jitter_range_over_many_draws() -> None:
    rng = random.Random(12)
    policy = BackoffPolicy(initial=0.25, maximum=2.0)
    b = Backoff(policy, random=rng.random)
    seen: dict[int, list[float]] = {}
    for _ in range(2000):
        b.reset()
        for step in range(5):
            seen.setdefault(step, []).append(b.next())
    for step, scheduled in enumerate([0.25, 0.5, 1.0, 2.0, 2.0]):
        draws = seen[step]
        assert all(scheduled / 2 <= d <= scheduled for d in draws), step
        # spread over the whole half-interval, not stuck at one end
        assert min(draws) < scheduled * 0.55
        assert max(draws) > scheduled * 0.95


def test_no_jitter_and_full_jitter_fractions() -> None:
    none = Backoff(BackoffPolicy(1.0, 4.0, jitter=0.0), random=lambda: 0.9)
    assert [none.next() for _ in range(3)] == [1.0, 2.0, 4.0]
    full = Backoff(BackoffPolicy(1.0, 4.0, jitter=1.0), random=lambda: 0.75)
    assert full.next() == 0.25


def test_jittered_fixed_delay_same_rule() -> None:
    b = Backoff(BackoffPolicy(0.25, 2.0), random=lambda: 0.5)
    assert b.jittered(15.0) == 11.25
    assert b.peek() == 0.25  # the schedule did not move
    assert b.attempts == 0


def test_fixed_policy() -> None:
    b = exact(BackoffPolicy.fixed(5.0))
    assert [b.next() for _ in range(3)] == [5.0, 5.0, 5.0]


def test_default_random_source_stays_in_range() -> None:
    b = Backoff(BackoffPolicy(0.5, 10.0))
    for scheduled in [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]:
        assert scheduled / 2 <= b.next() <= scheduled


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"initial": 0.0, "maximum": 1.0}, "initial"),
        ({"initial": -1.0, "maximum": 1.0}, "initial"),
        ({"initial": 1.0, "maximum": float("inf")}, "maximum"),
        ({"initial": 1.0, "maximum": 2.0, "factor": 0.5}, "factor"),
        ({"initial": 1.0, "maximum": 2.0, "jitter": 1.5}, "jitter"),
        ({"initial": 1.0, "maximum": 2.0, "jitter": -0.1}, "jitter"),
    ],
)
def test_policy_rejects_nonsense(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        BackoffPolicy(**kwargs)


async def test_wait_event_woken_or_timed_out() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_event(event, 5) is True
    assert await wait_event(event, None) is True  # already set, no limit


async def test_a_retry_loop_cancelled_as_it_is_woken_stops() -> None:
    """The manager's stop() hung on this: a node task cancelled in the same
    loop iteration as its wake event was set (the node went down) kept
    retrying, because asyncio.wait_for (Python 3.11) dropped the cancellation."""
    event = asyncio.Event()
    rounds = 0

    async def retry_loop() -> None:
        nonlocal rounds
        while True:
            rounds += 1
            event.clear()
            await wait_event(event, 10)

    task = asyncio.create_task(retry_loop())
    await asyncio.sleep(0.01)
    event.set()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    assert done == {task} and task.cancelled(), f"still running after {rounds} rounds"


def test_a_floor_raises_one_delay_and_the_schedule_grows_underneath() -> None:
    b = exact(BackoffPolicy(initial=0.25, maximum=60.0))
    # schedule 0.25, 0.5, ... 8 (all raised to 15), then 16, 32, capped at 60
    assert [b.next(floor=15.0) for _ in range(9)] == [15.0] * 6 + [16.0, 32.0, 60.0]
    assert b.next() == 60.0  # capped, floor or not
    assert b.attempts == 10


def test_a_floor_above_the_cap_is_the_cap() -> None:
    b = exact(BackoffPolicy(initial=0.25, maximum=10.0))
    assert b.next(floor=15.0) == 10.0
    assert b.next() == 0.5  # the floor did not move the schedule


def test_a_floored_delay_is_jittered_by_the_same_rule() -> None:
    b = Backoff(BackoffPolicy(initial=0.25, maximum=60.0), random=lambda: 0.5)
    assert b.next(floor=5.0) == 3.75
