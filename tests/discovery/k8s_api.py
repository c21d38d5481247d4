"""A local double of the few Kubernetes API endpoints beamside calls.

Serves ``GET /api/v1/namespaces/{ns}/pods`` on 127.0.0.1 like a real API
server: bearer-token checks (401 with a Status object), an RBAC switch (403
with the real message shape), equality-based label selectors (400 for the
rest), ``limit``/``continue`` pagination, and a ``resourceVersion`` in the
list metadata.  Tests change the pods while it runs.  Optional TLS with a
throwaway self-signed certificate made by ``openssl``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

LOOPBACK = "127.0.0.1"


def make_pod(
    name: str,
    ip: str | None,
    *,
    namespace: str = "shop",
    labels: Mapping[str, str] | None = None,
    phase: str = "Running",
    ready: bool = True,
    hostname: str | None = None,
    subdomain: str | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    """A pod object with the fields a real one has where beamside looks."""
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": dict(labels if labels is not None else {"app": "shop"}),
        "uid": f"uid-{name}",
    }
    if deleting:
        metadata["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "shop:1"}]}
    if hostname is not None:
        spec["hostname"] = hostname
    if subdomain is not None:
        spec["subdomain"] = subdomain
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": [
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": "True" if ready else "False"},
            {"type": "ContainersReady", "status": "True" if ready else "False"},
        ],
    }
    if ip is not None:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    return {"metadata": metadata, "spec": spec, "status": status}


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _selector_terms(selector: str) -> list[tuple[str, str, str]] | None:
    """Equality-based selectors (``a=b,c!=d,e``) as (key, op, value); None if
    the selector uses anything else (set-based terms)."""
    terms = []
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if any(c in term for c in " ()"):
            return None
        if "!=" in term:
            key, value = term.split("!=", 1)
            terms.append((key, "!=", value))
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            terms.append((key, "=", value))
        else:
            terms.append((term, "exists", ""))
    return terms


def _selector_matches(terms: list[tuple[str, str, str]], labels: Mapping[str, str]) -> bool:
    for key, op, value in terms:
        if op == "=" and labels.get(key) != value:
            return False
        if op == "!=" and labels.get(key) == value:
            return False
        if op == "exists" and key not in labels:
            return False
    return True


@dataclass
class Request:
    path: str
    query: dict[str, str]
    authorization: str | None


@dataclass
class KubeApiState:
    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    token: str | None = None  # required bearer token; None accepts any
    forbidden: bool = False  # RBAC refuses listing pods
    fail_status: int | None = None  # answer every request with this code
    requests: list[Request] = field(default_factory=list)
    resource_version: int = 1000


class KubeApiDouble:
    """The fake API server; use as a context manager or start()/stop()."""

    def __init__(self, *, port: int = 0, tls: tuple[Path, Path] | None = None) -> None:
        self.state = KubeApiState()
        self.lock = threading.Lock()
        self._port = port
        self._tls = tls
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.connections: set[socket.socket] = set()

    # -- test controls

    def set_pods(self, *pods: dict[str, Any]) -> None:
        with self.lock:
            self.state.pods = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in pods}
            self.state.resource_version += 1

    def add_pod(self, pod: dict[str, Any]) -> None:
        with self.lock:
            self.state.pods[(pod["metadata"]["namespace"], pod["metadata"]["name"])] = pod
            self.state.resource_version += 1

    def remove_pod(self, namespace: str, name: str) -> None:
        with self.lock:
            del self.state.pods[(namespace, name)]
            self.state.resource_version += 1

    @property
    def requests(self) -> list[Request]:
        with self.lock:
            return list(self.state.requests)

    # -- lifecycle

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://{LOOPBACK}:{self.port}"

    def start(self) -> KubeApiDouble:
        server = ThreadingHTTPServer((LOOPBACK, self._port), _handler_for(self))
        server.daemon_threads = True
        if self._tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(self._tls[0]), str(self._tls[1]))
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._port = self.port  # a restart comes back on the same port
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            # Like a dying API server: kept-alive connections go too.
            with self.lock:
                connections, self.connections = self.connections, set()
            for connection in connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> KubeApiDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the API

    def answer(self, path: str, query: dict[str, str], auth: str | None) -> tuple[int, Any]:
        with self.lock:
            state = self.state
            state.requests.append(Request(path, query, auth))
            if state.fail_status is not None:
                return state.fail_status, _status(
                    state.fail_status, "InternalError", "etcdserver: request timed out"
                )
            if state.token is not None and auth != f"Bearer {state.token}":
                return 401, _status(401, "Unauthorized", "Unauthorized")
            parts = path.strip("/").split("/")
            if len(parts) != 5 or parts[:3] != ["api", "v1", "namespaces"] or parts[4] != "pods":
                return 404, _status(
                    404, "NotFound", "the server could not find the requested resource"
                )
            namespace = parts[3]
            if state.forbidden:
                return 403, _status(
                    403,
                    "Forbidden",
                    f'pods is forbidden: User "system:serviceaccount:{namespace}:beamside" '
                    f'cannot list resource "pods" in API group "" in the namespace "{namespace}"',
                )
            selector = query.get("labelSelector", "")
            terms = _selector_terms(selector)
            if terms is None:
                return 400, _status(400, "BadRequest", f"unable to parse requirement: {selector!r}")
            matching = []
            for (ns, _name), pod in sorted(state.pods.items()):
                if ns != namespace:
                    continue
                if _selector_matches(terms, pod["metadata"]["labels"]):
                    matching.append(pod)
            start = int(query.get("continue") or 0)
            limit = int(query.get("limit") or 0) or len(matching) or 1
            page = matching[start : start + limit]
            metadata: dict[str, Any] = {"resourceVersion": str(state.resource_version)}
            if start + limit < len(matching):
                metadata["continue"] = str(start + limit)
            return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": metadata, "items": page}


def _handler_for(api: KubeApiDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with api.lock:
                api.connections.add(self.connection)

        def finish(self) -> None:
            with api.lock:
                api.connections.discard(self.connection)
            super().finish()

        def do_GET(self) -> None:
            split = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(split.query).items()}
            code, body = api.answer(split.path, query, self.headers.get("Authorization"))
            payload = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def self_signed_cert(directory: Path, host: str = LOOPBACK) -> tuple[Path, Path]:
    """A throwaway certificate for ``host`` (openssl CLI): (cert, key)."""
    cert, key = directory / "apiserver.crt", directory / "apiserver.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            f"/CN={host}",
            "-addext",
            f"subjectAltName=IP:{host}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key
