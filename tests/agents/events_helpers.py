"""Helpers for the log and notification tests: attach with a registered
``beamside_events`` mailbox and read decoded batches from it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from sidecar import agents
from sidecar.agents import EVENTS_MAILBOX, EventOptions
from sidecar.agents.events import EventBatch, NodeEvent, decode_batch
from sidecar.erldist.errors import DistTimeout
from sidecar.erldist.node import LocalNode, Mailbox
from tests.support.nodes import ErlangNode

HANDLERS = "logger:get_handler_ids()."


async def attach_events(
    local: LocalNode, node: ErlangNode, options: EventOptions | None = None, **extra: Any
) -> Mailbox:
    """Load the agents and attach with event options; our mailbox (registered
    before the attach, so no batch is missed)."""
    box = local.mailbox(EVENTS_MAILBOX)
    await agents.ensure_loaded(local, node.name)
    opts = (options or EventOptions()).to_attach_opts()
    opts.update(extra)
    await agents.attach(local, node.name, opts)
    return box


class Collected:
    """Every batch and event read so far from one mailbox."""

    def __init__(self, box: Mailbox) -> None:
        self.box = box
        self.batches: list[EventBatch] = []

    @property
    def events(self) -> list[NodeEvent]:
        return [e for b in self.batches for e in b.events]

    def dropped(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for batch in self.batches:
            for reason, count in batch.dropped.items():
                total[reason] = total.get(reason, 0) + count
        return total

    async def drain(self, seconds: float) -> None:
        """Read whatever arrives during ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = await self.box.receive(timeout=left)
            except DistTimeout:
                return
            self.batches.append(decode_batch(message))

    async def until(
        self, pred: Callable[[NodeEvent], bool], count: int = 1, timeout: float = 10.0
    ) -> list[NodeEvent]:
        """Read until ``count`` events match ``pred``; those events."""
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events if pred(e)]
            if len(found) >= count:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"only {len(found)} of {count} expected events within {timeout}s; "
                    f"got {[(e.type, e.level, e.message[:80]) for e in self.events]}"
                )
            try:
                message = await self.box.receive(timeout=left)
            except DistTimeout:
                continue
            self.batches.append(decode_batch(message))


def has_text(text: str) -> Callable[[NodeEvent], bool]:
    return lambda e: text in e.message


async def wait_value(
    node: ErlangNode, expr: str, pred: Callable[[str], bool], timeout: float = 10.0
) -> str:
    deadline = time.monotonic() + timeout
    while True:
        value = await node.aeval(expr)
        if pred(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)
