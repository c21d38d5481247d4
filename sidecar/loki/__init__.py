"""Loki delivery: log entries (:mod:`.model`), the batching, retrying,
spooling sink (:mod:`.sink`) and its crash-safe disk spool (:mod:`.spool`)."""

from .model import LogEntry, make_entry
from .sink import LokiConfig, LokiPushError, LokiSink
from .spool import Spool, SpoolError

__all__ = [
    "LogEntry",
    "LokiConfig",
    "LokiPushError",
    "LokiSink",
    "Spool",
    "SpoolError",
    "make_entry",
]
