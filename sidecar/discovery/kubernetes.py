"""Kubernetes discovery: the pods matching a label selector, as node names.

Every interval beamside lists the pods of one namespace by label selector
(``GET /api/v1/namespaces/{ns}/pods?labelSelector=...``) and keeps those that
can be attached to now: phase ``Running``, condition ``Ready``, a pod IP, and
not terminating.  Each becomes a node name through a template such as
``app@{pod_ip}`` or ``app@{hostname}.{subdomain}.{namespace}.svc.cluster.local``.

Polling, not watching: one list per interval (10 s by default) is cheap for
the API server (``resourceVersion=0`` lets it answer from its watch cache),
needs only the ``list`` verb, and has no stream to resume after API server
restarts.  A node that dies is noticed at once anyway, by its connection.

In a pod everything comes from the service account: API server from
``$KUBERNETES_SERVICE_HOST``/``$KUBERNETES_SERVICE_PORT``, the namespace, the
CA and the token from ``/var/run/secrets/kubernetes.io/serviceaccount``.  The
token is read again for every request since the kubelet rotates it.  Outside a
pod, ``api_url: http://127.0.0.1:8001`` with ``token_file: null`` works through
``kubectl proxy``.

Failures (401, 403, API server unreachable or overloaded, nonsense answers)
raise a :class:`KubernetesDiscoveryError` subclass whose message says what to
fix; the caller keeps the last known set.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from . import render_node_name
from .config import (
    SERVICE_ACCOUNT_DIR,
    KubernetesConfigError,
    KubernetesDiscoveryConfig,
    KubernetesDiscoveryError,
)

log = logging.getLogger(__name__)

__all__ = [
    "SERVICE_ACCOUNT_DIR",
    "KubernetesApiError",
    "KubernetesConfigError",
    "KubernetesDiscoverer",
    "KubernetesDiscoveryConfig",
    "KubernetesDiscoveryError",
    "KubernetesForbidden",
    "KubernetesUnauthorized",
    "KubernetesUnavailable",
    "pod_fields",
    "pod_is_attachable",
]

PAGE_SIZE = 500
MAX_PAGES = 200  # 100,000 pods: far past any namespace; stops a looping server
_MESSAGE_LIMIT = 300


class KubernetesUnauthorized(KubernetesDiscoveryError):
    """401: the API server does not accept the token (or it could not be read)."""


class KubernetesForbidden(KubernetesDiscoveryError):
    """403: the service account may not list pods in the namespace (RBAC)."""


class KubernetesUnavailable(KubernetesDiscoveryError):
    """The API server is unreachable, timed out, or answered 429/5xx."""


class KubernetesApiError(KubernetesDiscoveryError):
    """Any other unexpected answer (bad URL, bad selector, not a pod list)."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


def pod_is_attachable(pod: Mapping[str, Any]) -> bool:
    """Running, Ready, has an IP, and is not being deleted."""
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    if metadata.get("deletionTimestamp") or status.get("phase") != "Running":
        return False
    if not status.get("podIP"):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or ()
        if isinstance(c, dict)
    )


def pod_fields(pod: Mapping[str, Any]) -> dict[str, str]:
    """The template fields of one pod (empty strings where absent)."""
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    name = str(metadata.get("name") or "")
    return {
        "pod_ip": str(status.get("podIP") or ""),
        "pod_name": name,
        "namespace": str(metadata.get("namespace") or ""),
        "hostname": str(spec.get("hostname") or name),
        "subdomain": str(spec.get("subdomain") or ""),
    }


class KubernetesDiscoverer:
    """Lists the pods of :class:`KubernetesDiscoveryConfig` as node names.

    Pass ``client`` to choose the transport (tests, proxies); otherwise one is
    made, trusting ``ca_file`` for https, and :meth:`aclose` closes it.
    """

    def __init__(
        self,
        config: KubernetesDiscoveryConfig,
        client: httpx.AsyncClient | None = None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.namespace = config.resolved_namespace()
        self.api_url = config.resolved_api_url(environ)
        self._owns_client = client is None
        self._client = client if client is not None else self._make_client()
        self.skipped: tuple[str, ...] = ()  # ready pods whose fields made no node name
        self.pods_seen = 0  # pods listed at the last successful request

    def _make_client(self) -> httpx.AsyncClient:
        verify: ssl.SSLContext | bool = True
        if self.api_url.startswith("https://") and self.config.ca_file is not None:
            try:
                verify = ssl.create_default_context(cafile=self.config.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise KubernetesConfigError(
                    f"cannot load the API server CA from {self.config.ca_file}: {exc}"
                ) from None
        return httpx.AsyncClient(verify=verify, timeout=self.config.timeout)

    @property
    def description(self) -> str:
        return f"kubernetes {self.namespace}/{self.config.label_selector}"

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        token_file = self.config.token_file
        if token_file is not None:
            try:
                token = Path(token_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise KubernetesUnauthorized(
                    f"cannot read the service account token {token_file} ({exc.strerror}): "
                    "is automountServiceAccountToken off?"
                ) from None
            if not token:
                raise KubernetesUnauthorized(f"the service account token {token_file} is empty")
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def list_pods(self) -> list[dict[str, Any]]:
        """Every pod matching the selector (all pages)."""
        url = f"{self.api_url}/api/v1/namespaces/{self.namespace}/pods"
        pods: list[dict[str, Any]] = []
        token: str | None = None
        for _page in range(MAX_PAGES):
            params = {"labelSelector": self.config.label_selector, "limit": str(PAGE_SIZE)}
            if token:
                params["continue"] = token
            else:
                params["resourceVersion"] = "0"  # from the API server's cache
            body = await self._get(url, params)
            items = body.get("items")
            if not isinstance(items, list):
                raise KubernetesApiError(f"GET {url} did not return a pod list")
            pods.extend(item for item in items if isinstance(item, dict))
            token = (body.get("metadata") or {}).get("continue") or None
            if token is None:
                return pods
        raise KubernetesApiError(f"GET {url}: more than {MAX_PAGES} pages, giving up")

    async def _get(self, url: str, params: dict[str, str]) -> dict[str, Any]:
        headers = self._headers()
        try:
            response = await self._client.get(
                url, params=params, headers=headers, timeout=self.config.timeout
            )
        except httpx.TimeoutException:
            raise KubernetesUnavailable(
                f"the API server at {self.api_url} did not answer within {self.config.timeout:g}s"
            ) from None
        except httpx.HTTPError as exc:
            raise KubernetesUnavailable(
                f"cannot reach the API server at {self.api_url}: {exc or type(exc).__name__}"
            ) from None
        if response.status_code != 200:
            raise self._status_error(response)
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise KubernetesApiError(
                f"GET {url}: the answer is not JSON", response.status_code
            ) from None
        if not isinstance(body, dict):
            raise KubernetesApiError(f"GET {url}: the answer is not a JSON object")
        return body

    def _status_error(self, response: httpx.Response) -> KubernetesDiscoveryError:
        code = response.status_code
        detail = _status_message(response)
        where = f"namespace {self.namespace}"
        if code == 401:
            return KubernetesUnauthorized(
                f"the API server refused the service account token (401 Unauthorized)"
                f"{detail}: the token in {self.config.token_file} is invalid or expired"
            )
        if code == 403:
            return KubernetesForbidden(
                f"not allowed to list pods in {where} (403 Forbidden){detail}: grant the "
                "service account 'list' on pods there (the Helm chart does this when "
                "Kubernetes discovery is on)"
            )
        if code == 429 or code >= 500:
            return KubernetesUnavailable(
                f"the API server at {self.api_url} answered {code} listing pods in {where}{detail}"
            )
        if code == 400:
            return KubernetesApiError(
                f"the API server rejected the request (400){detail}: check label_selector "
                f"{self.config.label_selector!r}",
                code,
            )
        return KubernetesApiError(
            f"the API server answered {code} listing pods in {where}{detail}", code
        )

    async def discover(self) -> frozenset[str]:
        pods = await self.list_pods()
        names: set[str] = set()
        skipped: list[str] = []
        for pod in pods:
            if not pod_is_attachable(pod):
                continue
            fields = pod_fields(pod)
            node = render_node_name(self.config.node_name_template, fields)
            if node is None:
                skipped.append(fields["pod_name"])
            else:
                names.add(node)
        if skipped and tuple(sorted(skipped)) != self.skipped:
            log.warning(
                "%d ready pod(s) give no valid node name with %r: %s",
                len(skipped),
                self.config.node_name_template,
                ", ".join(sorted(skipped)[:10]),
            )
        self.skipped = tuple(sorted(skipped))
        self.pods_seen = len(pods)
        return frozenset(names)


def _status_message(response: httpx.Response) -> str:
    """``: <message>`` from a Kubernetes Status object, or from the body."""
    try:
        body = response.json()
        message = body.get("message") if isinstance(body, dict) else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        message = None
    if not isinstance(message, str) or not message.strip():
        message = response.text.strip()
    message = " ".join(message.split())[:_MESSAGE_LIMIT]
    return f": {message}" if message else ""
