"""Polling until a condition holds, for tests that watch something converge."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def eventually(
    check: Callable[[], Any], timeout: float, what: str, *, step: float = 0.1
) -> None:
    """Await until ``check()`` is truthy; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(step)
    raise AssertionError(f"{what}: not within {timeout}s")


def wait_for(check: Callable[[], Any], timeout: float, what: str, *, step: float = 0.2) -> Any:
    """Poll ``check()`` until it is truthy and return that value; AssertionError
    naming ``what`` after ``timeout`` s (the blocking twin of :func:`eventually`)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(step)
