"""``follow``: what is applied, when, and what an error leaves in place.

The discoverer here is a scripted input (a list of answers and errors), so
each rule of the loop is checked in isolation; the Kubernetes and DNS tests
run the same loop against real servers."""

from __future__ import annotations

import asyncio
import logging

import pytest

from sidecar.discovery import Discoverer, DiscoveryError, FollowStatus, follow


class Script:
    """Answers one scripted outcome per call, then repeats the last one."""

    def __init__(self, *outcomes: frozenset[str] | DiscoveryError) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    @property
    def description(self) -> str:
        return "script"

    async def discover(self) -> frozenset[str]:
        outcome = self.outcomes[min(self.calls, len(self.outcomes) - 1)]
        self.calls += 1
        if isinstance(outcome, DiscoveryError):
            raise outcome
        return outcome


async def run_until(
    script: Script, calls: int, apply_fail: int = 0
) -> tuple[list[frozenset[str]], FollowStatus]:
    applied: list[frozenset[str]] = []
    failures_left = [apply_fail]

    async def apply(nodes: frozenset[str]) -> None:
        if failures_left[0]:
            failures_left[0] -= 1
            raise RuntimeError("manager busy")
        applied.append(nodes)

    status = FollowStatus()
    task = asyncio.create_task(follow(script, apply, 0.01, status=status, jitter=0))
    while script.calls < calls:
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return applied, status


def test_script_is_a_discoverer() -> None:
    assert isinstance(Script(frozenset()), Discoverer)


async def test_first_answer_applied_even_if_empty_then_only_changes() -> None:
    a, b = frozenset({"app@h1"}), frozenset({"app@h1", "app@h2"})
    applied, status = await run_until(Script(frozenset(), a, a, a, b, b), 8)
    assert applied == [frozenset(), a, b]
    assert status.nodes == b and status.changes == 2


async def test_errors_keep_the_set_and_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    a = frozenset({"app@h1"})
    boom = DiscoveryError("API server unreachable")
    caplog.set_level(logging.INFO, logger="sidecar.discovery")
    applied, status = await run_until(Script(a, boom, boom, boom, boom, a), 8)
    assert applied == [a]
    assert status.failures == 4 and status.consecutive_failures == 0 and status.last_error is None
    failed = [r for r in caplog.records if "failed, keeping 1 known node(s)" in r.getMessage()]
    assert len(failed) == 1
    assert any("works again" in r.getMessage() for r in caplog.records)


async def test_a_failed_apply_is_retried_with_the_next_answer() -> None:
    a = frozenset({"app@h1"})
    applied, status = await run_until(Script(a), 5, apply_fail=2)
    assert applied == [a] and status.applied


async def test_bad_interval() -> None:
    with pytest.raises(ValueError, match="positive"):
        await follow(Script(frozenset()), lambda nodes: asyncio.sleep(0), 0)
