"""DNS discovery: the A, AAAA or SRV records of a headless Service.

A headless Kubernetes Service (``clusterIP: None``) answers its name with one
A record per *ready* pod, so ``app@{ip}`` names follow the app's pods with no
API access at all.  SRV records (``_epmd._tcp.app-headless.ns.svc.cluster.local``
for a named port ``epmd``) give each pod's stable host name when the pods
have one (a StatefulSet with ``serviceName``), for releases that use long
names like ``app@app-0.app-headless.ns.svc.cluster.local``.

Lookups use dnspython's stub resolver: the system configuration
(``/etc/resolv.conf`` with its search list, as in a pod) or one given server.
It falls back to TCP when a large answer is truncated, which matters with
more than a few dozen pods.

NXDOMAIN and "no records of that type" are answers (no node now: a Service
whose pods are all gone has no records); timeouts, SERVFAIL and refusals are
:class:`DnsDiscoveryError` and the last known set stays.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from . import DiscoveryError, check_template, render_node_name

__all__ = ["DnsDiscoverer", "DnsDiscoveryConfig", "DnsDiscoveryError"]

Record = Literal["A", "AAAA", "SRV"]
_FIELDS: dict[str, tuple[str, ...]] = {
    "A": ("ip",),
    "AAAA": ("ip",),
    "SRV": ("hostname",),
}


class DnsDiscoveryError(DiscoveryError):
    """The name could not be resolved now (timeout, SERVFAIL, no server)."""


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
        if self.record not in _FIELDS:
            raise ValueError(f"record must be A, AAAA or SRV, got {self.record!r}")
        check_template(self.node_name_template, _FIELDS[self.record])
        if self.interval < 1.0:
            raise ValueError(f"interval must be at least 1s, got {self.interval:g}s")
        if not 0 < self.timeout <= self.interval * 10:
            raise ValueError(f"timeout must be positive, got {self.timeout:g}s")
        if self.resolver is not None:
            object.__setattr__(self, "server", _parse_server(self.resolver))


class DnsDiscoverer:
    """Resolves :attr:`DnsDiscoveryConfig.name` into node names."""

    def __init__(self, config: DnsDiscoveryConfig) -> None:
        self.config = config
        if config.server is not None:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [config.server[0]]
            resolver.port = config.server[1]
            self._search = False
        else:
            try:
                resolver = dns.asyncresolver.Resolver()
            except dns.resolver.NoResolverConfiguration as exc:
                raise DnsDiscoveryError(f"no system DNS configuration: {exc}") from None
            # As getaddrinfo does: short names like "app-headless" go through
            # the pod's search list.
            self._search = True
        resolver.lifetime = config.timeout
        self._resolver = resolver
        self.skipped: tuple[str, ...] = ()  # records that made no valid node name

    @property
    def description(self) -> str:
        return f"dns {self.config.record} {self.config.name}"

    async def discover(self) -> frozenset[str]:
        config = self.config
        try:
            answer = await self._resolver.resolve(
                config.name, config.record, search=self._search, lifetime=config.timeout
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return frozenset()
        except dns.resolver.LifetimeTimeout:
            raise DnsDiscoveryError(
                f"{config.record} lookup of {config.name} timed out after {config.timeout:g}s"
            ) from None
        except dns.resolver.NoNameservers as exc:
            raise DnsDiscoveryError(
                f"{config.record} lookup of {config.name} failed: every server refused or "
                f"failed (SERVFAIL): {exc}"
            ) from None
        except dns.exception.DNSException as exc:
            raise DnsDiscoveryError(
                f"{config.record} lookup of {config.name} failed: {exc}"
            ) from None
        names: set[str] = set()
        skipped: list[str] = []
        for rdata in answer:
            if config.record == "SRV":
                target = rdata.target.to_text(omit_final_dot=True)
                value, fields = target, {"hostname": target}
            else:
                value = rdata.address
                fields = {"ip": value}
            node = render_node_name(config.node_name_template, fields)
            if node is None:
                skipped.append(value)
            else:
                names.add(node)
        self.skipped = tuple(sorted(skipped))
        return frozenset(names)
