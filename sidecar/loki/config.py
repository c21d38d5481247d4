"""``loki:`` of the beamside config: where and how the Loki sink delivers.

Kept apart from :mod:`sidecar.loki.sink` so that reading a config loads no
HTTP client: only the sink needs httpx.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

__all__ = ["PUSH_PATH", "LokiConfig"]

PUSH_PATH: Final = "/loki/api/v1/push"


def _is_http_url(url: str) -> bool:
    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        return False  # httpx refuses control characters
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


@dataclass(frozen=True, slots=True)
class LokiConfig:
    """Where and how.  ``url`` is Loki's base URL (``http://loki:3100``; a
    path prefix is kept; a URL already ending in the push path is used as
    is).  Sizes in bytes, durations in seconds."""

    url: str
    tenant: str | None = None
    batch_bytes: int = 1 << 20
    batch_wait: float = 1.0
    timeout: float = 10.0
    min_backoff: float = 0.5
    max_backoff: float = 10.0
    memory_bytes: int = 64 << 20
    spool_dir: Path | None = None
    spool_bytes: int = 1 << 30
    spill_after: float = 5.0
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not _is_http_url(self.url):
            raise ValueError(f"url: {self.url!r} is not an http(s) URL")
        for name in ("batch_bytes", "memory_bytes", "spool_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}: expected a positive number of bytes, got {value!r}")
        for name in ("batch_wait", "timeout", "min_backoff", "max_backoff", "spill_after"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a positive number of seconds, got {value!r}")
        if self.max_backoff < self.min_backoff:
            raise ValueError("max_backoff: must not be below min_backoff")
        if self.memory_bytes < 2 * self.batch_bytes:
            raise ValueError("memory_bytes: must hold at least two batches (2 x batch_bytes)")
        if self.spool_dir is not None:
            object.__setattr__(self, "spool_dir", Path(self.spool_dir))
            if self.spool_bytes < 4 * self.batch_bytes:
                raise ValueError("spool_bytes: must hold at least four batches (4 x batch_bytes)")
        if self.tenant is not None and not self.tenant.strip():
            raise ValueError("tenant: empty")
        object.__setattr__(self, "headers", tuple((str(k), str(v)) for k, v in self.headers))

    @property
    def push_url(self) -> str:
        base = self.url.rstrip("/")
        return base if base.endswith(PUSH_PATH) else base + PUSH_PATH
