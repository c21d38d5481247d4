"""``targets[].kubernetes`` and ``targets[].dns`` of the beamside config.

Kept apart from the discoverers so that reading a config loads neither the
HTTP client (Kubernetes) nor the DNS resolver; only ``dns.name`` is needed,
to check a name the way the resolver will read it.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import dns.exception
import dns.name

from . import DiscoveryError, check_template

__all__ = [
    "DNS_TEMPLATE_FIELDS",
    "SERVICE_ACCOUNT_DIR",
    "TEMPLATE_FIELDS",
    "DnsDiscoveryConfig",
    "KubernetesConfigError",
    "KubernetesDiscoveryConfig",
    "KubernetesDiscoveryError",
    "Record",
]

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
TEMPLATE_FIELDS = ("pod_ip", "pod_name", "namespace", "hostname", "subdomain")

Record = Literal["A", "AAAA", "SRV"]
# The template fields each record type gives.
DNS_TEMPLATE_FIELDS: dict[str, tuple[str, ...]] = {
    "A": ("ip",),
    "AAAA": ("ip",),
    "SRV": ("hostname",),
}


class KubernetesDiscoveryError(DiscoveryError):
    """Kubernetes discovery failed this time; the last known set stays."""


class KubernetesConfigError(KubernetesDiscoveryError):
    """Not enough to talk to the API: not in a pod, or files/settings missing."""


@dataclass(frozen=True, slots=True)
class KubernetesDiscoveryConfig:
    """Which pods to follow and how to name their nodes.

    ``namespace`` None means the service account's namespace (the file
    ``namespace_file``); ``api_url`` None means the in-cluster address from
    the environment; ``token_file`` None sends no token (``kubectl proxy``);
    ``ca_file`` is used for https URLs (None: the system's trust store).
    Template fields: ``{pod_ip}``, ``{pod_name}``, ``{namespace}``,
    ``{hostname}`` (``spec.hostname``, else the pod name) and ``{subdomain}``
    (``spec.subdomain``; pods without one are skipped).
    """

    label_selector: str
    node_name_template: str = "app@{pod_ip}"
    namespace: str | None = None
    interval: float = 10.0
    api_url: str | None = None
    token_file: str | None = f"{SERVICE_ACCOUNT_DIR}/token"
    ca_file: str | None = f"{SERVICE_ACCOUNT_DIR}/ca.crt"
    namespace_file: str = f"{SERVICE_ACCOUNT_DIR}/namespace"
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if not self.label_selector.strip():
            # An empty selector matches every pod of the namespace: never meant.
            raise ValueError("label_selector is required, e.g. 'app.kubernetes.io/name=shop'")
        check_template(self.node_name_template, TEMPLATE_FIELDS)
        if self.namespace is not None and not _is_dns_label(self.namespace):
            raise ValueError(f"namespace {self.namespace!r} is not a valid namespace name")
        if self.interval < 1.0:
            raise ValueError(f"interval must be at least 1s, got {self.interval:g}s")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be positive, got {self.timeout:g}s")
        if self.api_url is not None and not self.api_url.startswith(("http://", "https://")):
            raise ValueError(f"api_url must be an http(s) URL, got {self.api_url!r}")

    def resolved_namespace(self) -> str:
        """The namespace to list, reading the service account's file if unset."""
        if self.namespace is not None:
            return self.namespace
        try:
            namespace = Path(self.namespace_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise KubernetesConfigError(
                f"no namespace configured and {self.namespace_file} is unreadable "
                f"({exc.strerror}): set kubernetes.namespace, or run in a pod with a "
                "mounted service account token"
            ) from None
        if not _is_dns_label(namespace):
            raise KubernetesConfigError(f"{self.namespace_file} holds no namespace name")
        return namespace

    def resolved_api_url(self, environ: Mapping[str, str] | None = None) -> str:
        """The API server's base URL, from the in-cluster environment if unset."""
        if self.api_url is not None:
            return self.api_url.rstrip("/")
        environ = os.environ if environ is None else environ
        host = environ.get("KUBERNETES_SERVICE_HOST", "").strip()
        port = environ.get("KUBERNETES_SERVICE_PORT", "").strip() or "443"
        if not host:
            raise KubernetesConfigError(
                "KUBERNETES_SERVICE_HOST is not set (not running in a pod?): set kubernetes.api_url"
            )
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{port}"


def _is_dns_label(text: str) -> bool:
    return (
        0 < len(text) <= 63
        and text[0].isalnum()
        and text[-1].isalnum()
        and all(c.isdigit() or ("a" <= c <= "z") or c == "-" for c in text)
    )


def _parse_server(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"resolver must be 'ip:port' (e.g. 127.0.0.1:5353), got {text!r}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"resolver host must be an IP address, got {host!r}") from None
    return host, int(port)


@dataclass(frozen=True, slots=True)
class DnsDiscoveryConfig:
    """One DNS name to follow.

    ``record`` is ``A`` (default), ``AAAA`` (IPv6-only clusters; not both at
    once: a dual-stack pod would become two nodes) or ``SRV``.  Template
    fields: ``{ip}`` for A/AAAA, ``{hostname}`` (the SRV target, no trailing
    dot) for SRV.  ``resolver`` is ``"ip:port"`` of one DNS server to ask
    (tests, or a specific server); None uses the system configuration.
    """

    name: str
    node_name_template: str = "app@{ip}"
    interval: float = 10.0
    record: Record = "A"
    resolver: str | None = None
    timeout: float = 5.0
    server: tuple[str, int] | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 253:
            raise ValueError(f"name must be a DNS name, got {self.name!r}")
        try:
            dns.name.from_text(self.name)
        except dns.exception.DNSException as exc:
            raise ValueError(f"name {self.name!r} is not a valid DNS name: {exc}") from None
        if self.record not in DNS_TEMPLATE_FIELDS:
            raise ValueError(f"record must be A, AAAA or SRV, got {self.record!r}")
        check_template(self.node_name_template, DNS_TEMPLATE_FIELDS[self.record])
        if self.interval < 1.0:
            raise ValueError(f"interval must be at least 1s, got {self.interval:g}s")
        if not 0 < self.timeout <= self.interval * 10:
            raise ValueError(f"timeout must be positive, got {self.timeout:g}s")
        if self.resolver is not None:
            object.__setattr__(self, "server", _parse_server(self.resolver))
