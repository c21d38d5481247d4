"""Loki delivery: log entries (:mod:`.model`), the settings (:mod:`.config`),
the batching, retrying, spooling sink (:mod:`.sink`) and its crash-safe disk
spool (:mod:`.spool`).

The sink (and with it httpx) is imported on first use of one of its names,
so that reading the settings does not load the HTTP client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import LokiConfig
from .model import LogEntry, make_entry
from .spool import Spool, SpoolError

if TYPE_CHECKING:
    from .sink import LokiPushError, LokiSink

__all__ = [
    "LogEntry",
    "LokiConfig",
    "LokiPushError",
    "LokiSink",
    "Spool",
    "SpoolError",
    "make_entry",
]

_FROM_SINK = frozenset({"LokiPushError", "LokiSink"})


def __getattr__(name: str) -> Any:
    if name in _FROM_SINK:
        return getattr(importlib.import_module(".sink", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
