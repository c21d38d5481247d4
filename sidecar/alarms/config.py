"""``alertmanager:`` of the beamside config: where and how often the
Alertmanager sink (:mod:`sidecar.alarms.alertmanager`) posts.

Kept apart from the sink so that reading a config loads no HTTP client.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

__all__ = ["AlertmanagerConfig", "redact"]


@dataclass(frozen=True, slots=True)
class AlertmanagerConfig:
    """Where and how often.  ``urls`` are Alertmanager base URLs
    (``http://am:9093``, a path prefix is kept; a URL already ending in
    ``/api/v2/alerts`` is used as is; ``user:password@`` becomes basic auth and
    never shows in logs or metric labels).  Durations are in seconds."""

    urls: tuple[str, ...]
    resend_interval: float = 60.0
    timeout: float = 5.0
    max_backoff: float = 10.0
    generator_url: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.urls, str):
            raise ValueError("urls: expected a list of URLs, not one string")
        urls = tuple(u.rstrip("/") for u in self.urls)
        object.__setattr__(self, "urls", urls)
        if not urls:
            raise ValueError("urls: at least one Alertmanager URL is needed")
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"urls: {redact(url)!r} is not an http(s) URL")
        if len(set(urls)) != len(urls):
            raise ValueError("urls: duplicate URL")
        for name in ("resend_interval", "timeout", "max_backoff"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a positive number of seconds, got {value!r}")


def redact(url: str) -> str:
    """``url`` without ``user:password@``."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
