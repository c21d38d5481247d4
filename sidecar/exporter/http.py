"""The HTTP endpoint: ``/metrics``, ``/healthz``, ``/readyz``.

Served from threads (``ThreadingHTTPServer``) so a slow scraper never holds
up the asyncio loop that talks to the nodes.  The format is prometheus_client's
choice from the Accept header (``choose_encoder``: OpenMetrics for Prometheus,
text 0.0.4 by default, with the content type it gives); a registry from
:func:`~sidecar.exporter.collector.build_registry` writes it from its per-node
text cache (the same bytes), any other registry through prometheus_client.
The body is gzipped when the scraper accepts gzip, at level 1 with ISA-L's
igzip (``isal``) where it is installed: 4 ms for the 15 MB body of 300 nodes
against zlib's 24 ms at its own level 1 (bench/RESULTS.md), zlib otherwise.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from .collector import BeamsideRegistry
from .exposition import format_of

try:  # a dependency where wheels exist (pyproject.toml); zlib elsewhere
    from isal.igzip import compress as _gzip
except ImportError:  # pragma: no cover - installed wherever the tests run
    from gzip import compress as _gzip  # type: ignore[assignment]

log = logging.getLogger(__name__)

#: the fastest level of either compressor that still compresses
#: (ISA-L's 0 leaves the body a third larger)
GZIP_LEVEL = 1


def gzip_body(body: bytes | bytearray) -> bytes:
    """``body`` as a gzip member (``Content-Encoding: gzip``)."""
    return _gzip(body, GZIP_LEVEL)


class MetricsServer:
    def __init__(
        self,
        registry: CollectorRegistry,
        host: str,
        port: int,
        *,
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self.registry = registry
        self._ready = ready
        handler = self._handler_class()
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "beamside"

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._metrics()
                elif path == "/healthz":
                    self._reply(200, b"ok\n")
                elif path == "/readyz":
                    if outer._ready():
                        self._reply(200, b"ready\n")
                    else:
                        self._reply(503, b"not ready: first round of attachments pending\n")
                elif path == "/":
                    self._reply(200, b"beamside: see /metrics, /healthz, /readyz\n")
                else:
                    self._reply(404, b"not found\n")

            def _metrics(self) -> None:
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                fmt = format_of(encoder)
                registry = outer.registry
                body: bytes | bytearray
                try:
                    if fmt is not None and isinstance(registry, BeamsideRegistry):
                        body = registry.exposition_buffer(fmt)  # the cached node texts
                    else:
                        body = encoder(registry)
                except Exception:
                    log.exception("rendering /metrics failed")
                    self._reply(500, b"rendering metrics failed\n")
                    return
                headers = {}
                if "gzip" in self.headers.get("Accept-Encoding", ""):
                    body = gzip_body(body)
                    headers["Content-Encoding"] = "gzip"
                self._reply(200, body, content_type, headers)

            def _reply(
                self,
                code: int,
                body: bytes | bytearray,
                content_type: str = "text/plain; charset=utf-8",
                headers: dict[str, str] | None = None,
            ) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("http %s", format % args)

        return Handler
