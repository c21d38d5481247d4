"""A real Alertmanager (Debian's ``prometheus-alertmanager``, 0.25) for tests.

``Alertmanager(workdir).start()`` runs one on a free 127.0.0.1 port with its
own storage dir and a config whose receiver is either nothing (``null``) or,
with ``webhook=True``, a :class:`WebhookSink` in this process that records the
notifications Alertmanager sends (firing, and resolved with their
``endsAt``).  Clustering is off unless ``cluster_peers`` is given (an HA pair:
see :func:`ha_pair`).  ``stop()`` then ``start()`` again reuses the same port
and storage, as a restarted Alertmanager would (alerts are lost: Alertmanager
keeps them in memory only; silences and the notification log survive).

Reading: ``alerts(...)`` is ``GET /api/v2/alerts`` (resolved alerts are never
listed there: an alert that left the list is resolved or expired), ``amtool(...)``
is ``amtool alert query -o json``; ``wait_alert`` / ``wait_gone`` are the
async polls a test uses while its sink runs on the same event loop.

:class:`TcpProxy` sits in front of one to cut the network without restarting
it (``block()`` / ``unblock()``); :class:`Blackhole` is a port that accepts TCP
connections and never answers (a hung Alertmanager).

A missing binary fails the test with the install line; it never skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import httpx

from tests.support.nodes import free_port

INSTALL = (
    "apt-get install -y --no-install-recommends prometheus-alertmanager"
    " (gives prometheus-alertmanager and amtool)"
)
LOOPBACK = "127.0.0.1"

Alert = dict[str, Any]


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found: {INSTALL}")
    return path


def matches(alert: Alert, labels: Mapping[str, str]) -> bool:
    """Every label in ``labels`` equal on ``alert`` ("" = absent, as in Alertmanager)."""
    have = alert.get("labels", {})
    return all(have.get(k, "") == v for k, v in labels.items())


class WebhookSink:
    """An HTTP server recording Alertmanager's webhook notifications."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with sink._lock:
                    sink.notifications.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.url = f"http://{LOOPBACK}:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def alerts(self, status: str | None = None, **labels: str) -> list[Alert]:
        """Every alert of every notification so far (in order), filtered."""
        with self._lock:
            notes = list(self.notifications)
        return [
            a
            for n in notes
            for a in n.get("alerts", [])
            if (status is None or a.get("status") == status) and matches(a, labels)
        ]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Alertmanager:
    def __init__(
        self,
        workdir: Path,
        *,
        resolve_timeout: str = "5m",
        webhook: WebhookSink | None = None,
        cluster_port: int | None = None,
        cluster_peers: Iterable[str] = (),
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.cluster_port = cluster_port
        self.cluster_peers = list(cluster_peers)
        self.config_path = workdir / "alertmanager.yml"
        if webhook is None:
            receiver = "  - name: sink\n"
        else:
            receiver = (
                "  - name: sink\n"
                "    webhook_configs:\n"
                f"      - url: '{webhook.url}'\n"
                "        send_resolved: true\n"
            )
        self.config_path.write_text(
            "global:\n"
            f"  resolve_timeout: {resolve_timeout}\n"
            "route:\n"
            "  receiver: sink\n"
            "  group_by: ['...']\n"  # every alert its own group: notified on its own
            "  group_wait: 0s\n"
            "  group_interval: 1s\n"
            "  repeat_interval: 1h\n"
            "receivers:\n" + receiver
        )
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = workdir / "alertmanager.log"

    def start(self, timeout: float = 20) -> Self:
        if self.running:
            return self
        if self.cluster_port is None:
            cluster = ["--cluster.listen-address="]
        else:
            cluster = [
                f"--cluster.listen-address={LOOPBACK}:{self.cluster_port}",
                f"--cluster.advertise-address={LOOPBACK}:{self.cluster_port}",
                "--cluster.gossip-interval=100ms",
                "--cluster.pushpull-interval=1s",
                *(f"--cluster.peer={p}" for p in self.cluster_peers),
            ]
        log = self._log.open("ab")
        self._proc = subprocess.Popen(
            [
                binary("prometheus-alertmanager"),
                f"--config.file={self.config_path}",
                f"--storage.path={self.workdir / 'data'}",
                f"--web.listen-address={LOOPBACK}:{self.port}",
                *cluster,
                "--log.level=debug",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"alertmanager exited:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"alertmanager not ready in {timeout}s:\n{self.log_tail()}")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """SIGTERM and reap; the port and storage stay ours for ``start()``."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def log_tail(self) -> str:
        return self._log.read_text(errors="replace")[-4000:] if self._log.exists() else ""

    # ---------------------------------------------------------------- reading

    def alerts(
        self,
        *,
        active: bool | None = None,
        silenced: bool | None = None,
        inhibited: bool | None = None,
        unprocessed: bool | None = None,
        filter: Mapping[str, str] | None = None,
    ) -> list[Alert]:
        """``GET /api/v2/alerts``; ``filter`` as ``label=value`` matchers."""
        params: list[tuple[str, str]] = []
        for name, value in (
            ("active", active),
            ("silenced", silenced),
            ("inhibited", inhibited),
            ("unprocessed", unprocessed),
        ):
            if value is not None:
                params.append((name, "true" if value else "false"))
        for k, v in (filter or {}).items():
            params.append(("filter", f'{k}="{v}"'))
        reply = httpx.get(f"{self.url}/api/v2/alerts", params=params, timeout=5)
        reply.raise_for_status()
        result: list[Alert] = reply.json()
        return result

    def amtool(self, *matchers: str) -> list[Alert]:
        """``amtool alert query --alertmanager.url=... -o json MATCHERS``."""
        out = subprocess.run(
            [
                binary("amtool"),
                "alert",
                "query",
                f"--alertmanager.url={self.url}",
                "-o",
                "json",
                *matchers,
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if out.returncode != 0:
            raise AssertionError(f"amtool failed ({out.returncode}): {out.stderr}")
        result: list[Alert] = json.loads(out.stdout or "[]")
        return result

    def find(self, **labels: str) -> list[Alert]:
        """Listed (not resolved) alerts whose labels include ``labels``."""
        return [a for a in self.alerts() if matches(a, labels)]

    async def wait_alert(self, timeout: float = 5, **labels: str) -> Alert:
        """The one listed alert matching ``labels``, once there is one."""
        found = await until(lambda: self.find(**labels), timeout, f"alert {labels} in {self.url}")
        return found[0]

    async def wait_gone(self, timeout: float = 5, **labels: str) -> None:
        await until(lambda: not self.find(**labels), timeout, f"{labels} gone from {self.url}")


async def until(probe: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll ``probe`` (sync, run in a thread) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = await asyncio.to_thread(probe)
        except (httpx.HTTPError, OSError) as e:
            last = e
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        await asyncio.sleep(interval)


def ha_pair(workdir: Path, **kwargs: Any) -> tuple[Alertmanager, Alertmanager]:
    """Two clustered Alertmanagers gossiping on loopback (unstarted).  They
    share silences and the notification log, not alerts: a client sends every
    alert to both."""
    a_port, b_port = free_port(), free_port()
    a = Alertmanager(
        workdir / "am-a",
        cluster_port=a_port,
        cluster_peers=[f"{LOOPBACK}:{b_port}"],
        **kwargs,
    )
    b = Alertmanager(
        workdir / "am-b",
        cluster_port=b_port,
        cluster_peers=[f"{LOOPBACK}:{a_port}"],
        **kwargs,
    )
    return a, b


class TcpProxy:
    """Forwards 127.0.0.1:port to a target port; ``block()`` refuses new
    connections and cuts the open ones (a network partition), ``unblock()``
    listens again on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def unblock(self) -> Self:
        if self._thread is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, self.port))
        listener.listen(64)
        listener.settimeout(0.05)
        self._stop.clear()
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._thread.start()
        return self

    start = unblock

    def block(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            conns, self._conns = self._conns, set()
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    close = block

    def _accept(self, listener: socket.socket) -> None:
        with listener:
            while not self._stop.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                client.settimeout(None)
                try:
                    upstream = socket.create_connection((LOOPBACK, self.target_port), timeout=5)
                except OSError:
                    client.close()
                    continue
                upstream.settimeout(None)
                with self._lock:
                    self._conns |= {client, upstream}
                for src, dst in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)


class Blackhole:
    """A listening port nobody accepts on: TCP connects (the kernel's backlog),
    requests are never answered."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((LOOPBACK, 0))
        self._sock.listen(128)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://{LOOPBACK}:{self.port}"

    def close(self) -> None:
        self._sock.close()


def refused_url() -> str:
    """A URL on a port nothing listens on (connection refused)."""
    return f"http://{LOOPBACK}:{free_port()}"
