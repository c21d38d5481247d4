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

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from . import DiscoveryError, render_node_name
from .config import DnsDiscoveryConfig

__all__ = ["DnsDiscoverer", "DnsDiscoveryConfig", "DnsDiscoveryError"]


class DnsDiscoveryError(DiscoveryError):
    """The name could not be resolved now (timeout, SERVFAIL, no server)."""


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
