"""Shared helpers for the Loki sink tests."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable

from sidecar.loki import LogEntry, make_entry
from tests.support.loki_double import LokiDouble, StoredEntry

NODES = ("a@h1", "b@h2", "c@h3")


def entry(
    seq: int, *, node: str | None = None, pad: int = 0, time_ns: int | None = None
) -> LogEntry:
    """Entry number ``seq``; its node (so its stream) cycles through NODES.
    ``pad`` adds that many random hex characters (incompressible bulk)."""
    details: dict[str, object] = {"seq": seq, "msg": "hello"}
    if pad:
        details["pad"] = os.urandom(pad // 2 + 1).hex()[:pad]
    return make_entry(
        "log",
        "info",
        node or NODES[seq % len(NODES)],
        "fam",
        "c1",
        time.time_ns() if time_ns is None else time_ns,
        details,
    )


def seqs(entries: Iterable[StoredEntry]) -> list[int]:
    return [int(json.loads(e.line)["seq"]) for e in entries]


def by_stream(entries: Iterable[StoredEntry]) -> dict[str, list[StoredEntry]]:
    out: dict[str, list[StoredEntry]] = defaultdict(list)
    for e in entries:
        out[e.label_dict["node"]].append(e)
    return out


def assert_in_order(double: LokiDouble) -> None:
    """Per stream: sequence numbers and timestamps strictly increasing."""
    for node, items in by_stream(double.entries()).items():
        s = seqs(items)
        assert s == sorted(s), f"stream {node} out of order"
        ts = [e.ts for e in items]
        assert all(a < b for a, b in itertools.pairwise(ts)), f"stream {node} timestamps"


async def wait_until(cond: Callable[[], bool], timeout: float = 10.0, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(step)
    return True
