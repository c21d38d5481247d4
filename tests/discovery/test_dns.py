"""DNS discovery against a local authoritative DNS server."""

from __future__ import annotations

import asyncio

import pytest

from sidecar.discovery import FollowStatus, follow
from sidecar.discovery.dns import DnsDiscoverer, DnsDiscoveryConfig, DnsDiscoveryError
from tests.discovery.dns_server import LocalDns

NAME = "shop-headless.shop.svc.cluster.local"


def dns_config(server: LocalDns, **overrides: object) -> DnsDiscoveryConfig:
    settings: dict[str, object] = {"name": NAME, "resolver": server.address, "timeout": 1.0}
    settings.update(overrides)
    return DnsDiscoveryConfig(**settings)  # type: ignore[arg-type]


async def test_a_records_changing(local_dns: LocalDns) -> None:
    local_dns.set_a(NAME, ["10.1.0.1", "10.1.0.2"])
    d = DnsDiscoverer(dns_config(local_dns))
    assert await d.discover() == {"app@10.1.0.1", "app@10.1.0.2"}
    local_dns.set_a(NAME, ["10.1.0.2", "10.1.0.3", "10.1.0.4"])
    assert await d.discover() == {"app@10.1.0.2", "app@10.1.0.3", "app@10.1.0.4"}
    # Every pod gone: a headless Service then has no record at all.
    local_dns.remove(NAME)
    assert await d.discover() == frozenset()


async def test_name_with_only_other_record_types_is_empty(local_dns: LocalDns) -> None:
    local_dns.set_aaaa(NAME, ["fd00::1"])
    assert await DnsDiscoverer(dns_config(local_dns)).discover() == frozenset()
    six = DnsDiscoverer(dns_config(local_dns, record="AAAA", node_name_template="shop@{ip}"))
    assert await six.discover() == {"shop@fd00::1"}


async def test_srv_records_give_host_names(local_dns: LocalDns) -> None:
    srv_name = f"_epmd._tcp.{NAME}"
    local_dns.set_srv(
        srv_name,
        [(f"shop-0.{NAME}", 4369), (f"shop-1.{NAME}", 4369)],
    )
    d = DnsDiscoverer(
        dns_config(local_dns, name=srv_name, record="SRV", node_name_template="shop@{hostname}")
    )
    assert await d.discover() == {f"shop@shop-0.{NAME}", f"shop@shop-1.{NAME}"}


async def test_large_answers_come_over_tcp(local_dns: LocalDns) -> None:
    ips = [f"10.3.{i // 200}.{i % 200 + 1}" for i in range(300)]
    local_dns.set_a(NAME, ips)
    nodes = await DnsDiscoverer(dns_config(local_dns)).discover()
    assert nodes == {f"app@{ip}" for ip in ips}
    assert local_dns.protocols_used(NAME) == {"udp", "tcp"}  # truncated, then retried


async def test_servfail_and_timeout_are_errors(local_dns: LocalDns) -> None:
    d = DnsDiscoverer(dns_config(local_dns, timeout=0.5))
    local_dns.set_mode("servfail")
    with pytest.raises(DnsDiscoveryError, match="SERVFAIL"):
        await d.discover()
    local_dns.set_mode("silent")
    with pytest.raises(DnsDiscoveryError, match=r"timed out after 0.5s"):
        await d.discover()


async def test_follow_keeps_the_last_set_when_dns_fails(local_dns: LocalDns) -> None:
    local_dns.set_a(NAME, ["10.1.0.1", "10.1.0.2"])
    applied: list[frozenset[str]] = []

    async def apply(nodes: frozenset[str]) -> None:
        applied.append(nodes)

    status = FollowStatus()
    task = asyncio.create_task(
        follow(DnsDiscoverer(dns_config(local_dns, timeout=0.3)), apply, 0.05, status=status)
    )

    async def until(predicate: object) -> None:
        assert callable(predicate)
        for _ in range(500):
            if predicate():
                return
            await asyncio.sleep(0.02)
        raise AssertionError("condition not reached in time")

    try:
        await until(lambda: applied == [{"app@10.1.0.1", "app@10.1.0.2"}])
        local_dns.set_mode("servfail")
        await until(lambda: status.consecutive_failures >= 3)
        local_dns.set_a(NAME, ["10.1.0.9"])  # not seen while the server fails
        local_dns.set_mode("silent")
        failures = status.failures
        await until(lambda: status.failures >= failures + 2)
        assert isinstance(status.last_error, DnsDiscoveryError)
        assert status.nodes == {"app@10.1.0.1", "app@10.1.0.2"} and len(applied) == 1
        local_dns.set_mode("normal")
        await until(lambda: len(applied) == 2)
        assert applied[-1] == {"app@10.1.0.9"} and status.last_error is None
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"node_name_template": "app@{pod_ip}"}, "unknown field"),
        ({"record": "SRV"}, "unknown field"),  # SRV gives {hostname}, not {ip}
        ({"record": "MX"}, "A, AAAA or SRV"),
        ({"resolver": "localhost:53"}, "must be an IP address"),
        ({"resolver": "127.0.0.1"}, "ip:port"),
        ({"name": ""}, "DNS name"),
        ({"interval": 0.2}, "at least 1s"),
    ],
)
def test_config_errors(settings: dict[str, object], message: str) -> None:
    full: dict[str, object] = {"name": NAME, **settings}
    with pytest.raises(ValueError, match=message):
        DnsDiscoveryConfig(**full)  # type: ignore[arg-type]


def test_config_parses_the_resolver() -> None:
    config = DnsDiscoveryConfig(NAME, resolver="[::1]:5353")
    assert config.server == ("::1", 5353)
    assert DnsDiscoveryConfig(NAME).server is None
