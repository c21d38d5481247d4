"""CPython's cyclic garbage collector, set for a daemon that keeps every
node's last reply (issue 15).

The default first threshold (700 container allocations) suits small
programs.  The daemon decodes a reply of hundreds of containers per node and
tick and keeps each node's last one for an interval, so with the defaults it
ran a full collection of everything it holds every few seconds: at 2,000
nodes, 20 full collections in 100 s and 6.5 s of collector time.  Allocations
grow with the nodes, so the first threshold does too (:func:`threshold_for`):
a young collection comes about as often with 50 nodes as with 10,000, cyclic
garbage is still found within seconds to minutes, and the replies a
collection walks are mostly replaced before it comes (bench/RESULTS.md, "The
collector's thresholds").

Only ``beamside run`` applies it (its process is the daemon's): tests and
embedders keep their own settings.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from typing import Final

#: container allocations allowed between young collections, per managed node
PER_NODE: Final = 20
#: the bounds of the first threshold (20,000: what 1,000 nodes or fewer get,
#: measured better than CPython's 700 at 2,000 nodes; 200,000: measured best
#: at 10,000 nodes)
FIRST_MIN: Final = 20_000
FIRST_MAX: Final = 200_000
#: the older generations' thresholds (CPython's own)
OLDER: Final = (10, 10)
#: how often the first threshold follows the number of nodes
EVERY: Final = 30.0


def threshold_for(nodes: int) -> int:
    """The first threshold for a daemon managing ``nodes`` nodes."""
    return min(max(nodes * PER_NODE, FIRST_MIN), FIRST_MAX)


def tune_at_start() -> None:
    """Once, before the daemon starts: the start-up objects (modules,
    classes, configuration) moved out of the collector's sight, and the
    thresholds for no node yet."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(threshold_for(0), *OLDER)


async def keep_tuned(nodes: Callable[[], int], every: float = EVERY) -> None:
    """The first threshold following ``nodes()`` until cancelled."""
    while True:
        gc.set_threshold(threshold_for(nodes()), *OLDER)
        await asyncio.sleep(every)


__all__ = [
    "EVERY",
    "FIRST_MAX",
    "FIRST_MIN",
    "OLDER",
    "PER_NODE",
    "keep_tuned",
    "threshold_for",
    "tune_at_start",
]
