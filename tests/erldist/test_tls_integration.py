"""Distribution over TLS against real OTP 25 nodes (``-proto_dist inet_tls``).

Certificates come from a throwaway CA made with ``openssl`` for the session;
the nodes' certificate names ``127.0.0.1`` as a DNS name (what Erlang's own
client checks for a node called ``x@127.0.0.1``).  The strict node runs
``verify_peer`` + ``fail_if_no_peer_cert``: it only takes clients with a
certificate signed by the CA.  Each mistake an operator can make gives its
own error class, ``reason`` label and one clear line.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sidecar import agents
from sidecar.cli import EXIT_TLS
from sidecar.config import parse_config
from sidecar.erldist.errors import (
    CookieRefused,
    DistError,
    DistTimeout,
    TlsCertExpired,
    TlsClientCertRefused,
    TlsConfigError,
    TlsNameMismatch,
    TlsNotSpoken,
    TlsRequired,
    TlsUntrusted,
)
from sidecar.erldist.node import LocalNode
from sidecar.erldist.tls import TlsConfig
from sidecar.manager import NodeManager, failure_reason
from sidecar.model import NodeState, decode_snapshot
from sidecar.pki import Ca, Cert, make_ca, make_cert
from sidecar.probe import probe
from tests.conftest import NodeFactory
from tests.support.nodes import ErlangNode, TlsDist
from tests.support.waiting import eventually

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca: Ca
    other_ca: Ca
    node: Cert  # names 127.0.0.1 as a DNS name (and an IP)
    client: Cert  # beamside's client certificate
    stranger: Cert  # signed by the other CA
    wrong_name: Cert
    expired: Cert
    ip_only: Cert  # 127.0.0.1 only as an iPAddress: Erlang's client refuses it


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d, "test CA")
    other = make_ca(d, "other CA")
    return Pki(
        d,
        ca,
        other,
        node=make_cert(ca, d, "node", dns_names=[HOST, "localhost"], ip_addresses=[HOST]),
        client=make_cert(ca, d, "beamside-client", common_name="beamside"),
        stranger=make_cert(other, d, "stranger", dns_names=[HOST]),
        wrong_name=make_cert(ca, d, "wrong-name", dns_names=["db.example.com"]),
        expired=make_cert(ca, d, "expired", dns_names=[HOST], days=-1),
        ip_only=make_cert(ca, d, "ip-only", ip_addresses=[HOST]),
    )


def tls_node(
    factory: NodeFactory,
    pki: Pki,
    cert: Cert | None = None,
    *,
    strict: bool = False,
    versions: tuple[str, ...] = ("tlsv1.2",),
) -> ErlangNode:
    cert = cert or pki.node
    dist = TlsDist(
        cert.certfile,
        cert.keyfile,
        pki.ca.certfile,
        verify="verify_peer" if strict else "verify_none",
        fail_if_no_peer_cert=strict,
        versions=versions,
    )
    return factory("otp25", extra_args=dist.erl_args(factory.log_dir / "tls"))


def client_tls(pki: Pki, cert: Cert | None = None, **kw: str) -> TlsConfig:
    cert = cert or pki.client
    return TlsConfig(
        cacertfile=str(pki.ca.certfile),
        certfile=str(cert.certfile),
        keyfile=str(cert.keyfile),
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
async def local(cookie: str, epmd_port: int) -> AsyncIterator[LocalNode]:
    node = LocalNode("beamside-tls@127.0.0.1", cookie, epmd_port=epmd_port)
    yield node
    await node.close()


async def failure(local: LocalNode, node: ErlangNode, tls: TlsConfig | None) -> DistError:
    with pytest.raises(DistError) as info:
        await local.connect(node.name, tls=tls, timeout=8)
    assert not local.is_connected(node.name)
    message = str(info.value)
    assert "\n" not in message and node.name in message, message
    return info.value


@pytest.mark.parametrize("versions", [("tlsv1.2",), ("tlsv1.3", "tlsv1.2")], ids=["1.2", "1.3"])
async def test_attach_collect_and_rpc_on_a_strict_tls_node(
    node_factory: NodeFactory, pki: Pki, local: LocalNode, versions: tuple[str, ...]
) -> None:
    node = tls_node(node_factory, pki, strict=True, versions=versions)
    started = time.monotonic()
    conn = await local.connect(node.name, tls=client_tls(pki))
    attach_time = time.monotonic() - started
    ssl_object = conn._writer.get_extra_info("ssl_object")
    assert ssl_object is not None, "the stream is not TLS"
    assert ssl_object.version() == ("TLSv1.3" if "tlsv1.3" in versions else "TLSv1.2")
    # The node sees a hidden node that came in over its TLS listener.
    assert await local.rpc(node.name, "erlang", "node", []) == node.name
    assert node.eval("nodes(hidden).") == "['beamside-tls@127.0.0.1']"
    # #net_address.protocol of our connection, as the node's net_kernel has it
    protocol = node.eval(
        "{ok, I} = net_kernel:node_info('beamside-tls@127.0.0.1'),"
        " element(4, proplists:get_value(address, I))."
    )
    assert protocol == "tls"
    big = await local.rpc(node.name, "lists", "seq", [1, 200_000])
    assert big == list(range(1, 200_001))  # many TLS records, framing intact
    # The agents attach and collect over it as over TCP.
    info = await agents.ensure_loaded(local, node.name)
    await agents.attach(local, node.name, {})
    reply = await agents.collect(local, node.name, None, timeout=30)
    snap = decode_snapshot(
        reply, node=node.name, family="tls", cluster="t", taken_at=time.time(), duration=0.1
    )
    assert snap.processes is not None and (snap.processes.walked or 0) > 10
    assert not snap.errors, snap.errors
    assert info.version
    unloaded = await agents.detach(local, node.name)
    assert unloaded
    assert attach_time < 5, attach_time


async def test_the_node_refuses_a_client_without_or_with_a_foreign_certificate(
    node_factory: NodeFactory, pki: Pki, local: LocalNode
) -> None:
    node = tls_node(node_factory, pki, strict=True)
    none = await failure(local, node, TlsConfig(cacertfile=str(pki.ca.certfile)))
    assert type(none) is TlsClientCertRefused and none.metric_reason == "tls_client_cert"
    assert "requires a TLS client certificate and we have none" in str(none)
    foreign = await failure(local, node, client_tls(pki, pki.stranger))
    assert type(foreign) is TlsClientCertRefused
    assert f"refused our TLS client certificate {pki.stranger.certfile}" in str(foreign)
    assert "unknown_ca" in str(foreign)
    # TLS 1.3: the refusal comes after our side of the handshake, same error.
    node13 = tls_node(node_factory, pki, strict=True, versions=("tlsv1.3",))
    late = await failure(local, node13, TlsConfig(cacertfile=str(pki.ca.certfile)))
    assert type(late) is TlsClientCertRefused, late
    assert "requires a TLS client certificate and we have none" in str(late)
    plain = LocalNode("beamside-plain@127.0.0.1", local._cookie, epmd_port=local.epmd_port)
    try:
        assert type(await failure(plain, node13, None)) is TlsRequired
    finally:
        await plain.close()
    late_foreign = await failure(local, node13, client_tls(pki, pki.stranger))
    assert type(late_foreign) is TlsClientCertRefused, late_foreign
    assert str(pki.stranger.certfile) in str(late_foreign)
    # An expired client certificate: the node says so, and so do we.
    stale = await failure(local, node, client_tls(pki, pki.expired))
    assert type(stale) is TlsCertExpired and stale.metric_reason == "tls_expired"
    assert f"refused our TLS client certificate {pki.expired.certfile}: it has expired" in str(
        stale
    )
    # ... and the right certificate is taken.
    await local.connect(node.name, tls=client_tls(pki))


async def test_plain_tcp_against_a_tls_node(
    node_factory: NodeFactory, pki: Pki, local: LocalNode
) -> None:
    node = tls_node(node_factory, pki)
    exc = await failure(local, node, None)
    assert type(exc) is TlsRequired and exc.metric_reason == "tls_required"
    assert "runs TLS distribution (-proto_dist inet_tls) and we spoke plain TCP" in str(exc)


async def test_tls_against_a_plain_node(
    node_factory: NodeFactory, pki: Pki, local: LocalNode
) -> None:
    # A plain node says nothing to a ClientHello: it waits net_setuptime
    # (1 s here, 7 s by default) for a name message, then closes.
    node = node_factory("otp25", extra_args=["-kernel", "net_setuptime", "1"])
    started = time.monotonic()
    exc = await failure(local, node, client_tls(pki))
    assert type(exc) is TlsNotSpoken and exc.metric_reason == "tls_plain_node"
    assert "runs plain TCP distribution, not -proto_dist inet_tls" in str(exc)
    assert time.monotonic() - started < 5
    # Shorter deadline than the node's patience: a timeout that says the same.
    slow = node_factory("otp25")
    with pytest.raises(DistTimeout, match=r"in the TLS handshake: .* sent nothing back"):
        await local.connect(slow.name, tls=client_tls(pki), timeout=1.0)


async def test_untrusted_expired_and_misnamed_node_certificates(
    node_factory: NodeFactory, pki: Pki, local: LocalNode
) -> None:
    stranger = tls_node(node_factory, pki, pki.stranger)
    exc = await failure(local, stranger, client_tls(pki))
    assert type(exc) is TlsUntrusted and exc.metric_reason == "tls_untrusted"
    assert f"is not signed by a CA in {pki.ca.certfile}" in str(exc)

    expired = tls_node(node_factory, pki, pki.expired)
    exc = await failure(local, expired, client_tls(pki))
    assert type(exc) is TlsCertExpired and exc.metric_reason == "tls_expired"
    assert "has expired" in str(exc)

    misnamed = tls_node(node_factory, pki, pki.wrong_name)
    exc = await failure(local, misnamed, client_tls(pki))
    assert type(exc) is TlsNameMismatch and exc.metric_reason == "tls_name_mismatch"
    assert "does not name 127.0.0.1 (it names DNS:db.example.com)" in str(exc)
    # server_name_indication overrides the name checked, as in ssl.
    other = LocalNode("beamside-tls2@127.0.0.1", local._cookie, epmd_port=local.epmd_port)
    try:
        tls = client_tls(pki, server_name_indication="db.example.com")
        await other.connect(misnamed.name, tls=tls)
        assert await other.rpc(misnamed.name, "erlang", "node", []) == misnamed.name
    finally:
        await other.close()

    # An IP only as iPAddress does not name the node for Erlang's client either.
    ip_only = tls_node(node_factory, pki, pki.ip_only)
    exc = await failure(local, ip_only, client_tls(pki))
    assert type(exc) is TlsNameMismatch and "it names IP:127.0.0.1" in str(exc)
    # verify_none checks nothing (as Erlang's verify_none).
    lax = TlsConfig(verify="verify_none")
    await local.connect(ip_only.name, tls=lax)
    await local.connect(expired.name, tls=lax)
    # Every reason is distinct.
    reasons = {
        cls.metric_reason
        for cls in (
            TlsRequired,
            TlsNotSpoken,
            TlsUntrusted,
            TlsNameMismatch,
            TlsClientCertRefused,
            TlsCertExpired,
            TlsConfigError,
        )
    }
    assert len(reasons) == 7


async def test_wrong_cookie_over_tls_is_still_a_cookie_error(
    node_factory: NodeFactory, pki: Pki, epmd_port: int
) -> None:
    node = tls_node(node_factory, pki, strict=True)
    local = LocalNode("beamside-tls@127.0.0.1", "wrong", epmd_port=epmd_port)
    try:
        with pytest.raises(CookieRefused):
            await local.connect(node.name, tls=client_tls(pki), timeout=8)
    finally:
        await local.close()


async def test_unusable_files_are_a_config_error_before_any_connect(
    pki: Pki, local: LocalNode, tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    tls = TlsConfig(cacertfile=str(garbage))
    with pytest.raises(TlsConfigError, match=f"cacertfile .*{garbage}.* cannot be used"):
        await local.connect("nobody@127.0.0.1", tls=tls)
    mismatched = TlsConfig(
        cacertfile=str(pki.ca.certfile),
        certfile=str(pki.client.certfile),
        keyfile=str(pki.node.keyfile),
    )
    with pytest.raises(TlsConfigError, match="certfile/keyfile"):
        await local.connect("nobody@127.0.0.1", tls=mismatched)


async def test_manager_runs_a_tls_target(
    node_factory: NodeFactory, pki: Pki, epmd_port: int
) -> None:
    good = tls_node(node_factory, pki, strict=True)
    misnamed = tls_node(node_factory, pki, pki.wrong_name)
    tls = {
        "cacertfile": str(pki.ca.certfile),
        "certfile": str(pki.client.certfile),
        "keyfile": str(pki.client.keyfile),
    }
    config = parse_config(
        {
            "cluster": "tls",
            "targets": [
                {"nodes": [good.name], "cookie": good.cookie, "tls": tls},
                {"nodes": [misnamed.name], "cookie": misnamed.cookie, "tls": tls},
            ],
            "intervals": {"metrics": "1s"},
        }
    )
    local = LocalNode("beamside-mgr-tls@127.0.0.1", "unused", epmd_port=epmd_port)
    manager = NodeManager(config.manager_config(), local)
    await manager.start()
    try:

        def up() -> bool:
            status = manager.status(good.name)
            return (
                status is not None and status.state is NodeState.UP and manager.ticks_completed > 1
            )

        await eventually(up, 30, "TLS node up and collected")
        assert good.name in manager.snapshots

        def refused() -> bool:
            status = manager.status(misnamed.name)
            return status is not None and status.state is NodeState.ERROR

        await eventually(refused, 15, "misnamed node in error")
        status = manager.status(misnamed.name)
        assert status is not None
        assert status.connect_failures == {"tls_name_mismatch": 1}
        assert "does not name 127.0.0.1" in status.last_error
    finally:
        await manager.stop()
    assert "beamside" not in good.eval("nodes(hidden).")


async def test_probe_over_tls(node_factory: NodeFactory, pki: Pki, epmd_port: int) -> None:
    node = tls_node(node_factory, pki, strict=True)
    result = await probe(node.name, node.cookie, tls=client_tls(pki))
    assert result.node == node.name and result.otp_release == "25"
    assert {"kernel", "stdlib"} <= {a.name for a in result.applications}
    with pytest.raises(TlsClientCertRefused):
        await probe(node.name, node.cookie, tls=TlsConfig(cacertfile=str(pki.ca.certfile)))
    del epmd_port


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )


async def test_probe_command_over_tls(node_factory: NodeFactory, pki: Pki) -> None:
    node = tls_node(node_factory, pki, strict=True)
    common = ["probe", node.name, "--cookie", node.cookie, "--timeout", "8"]
    certs = ["--cacertfile", str(pki.ca.certfile)]
    ok = await asyncio.to_thread(
        run_cli,
        *common,
        *certs,
        "--certfile",
        str(pki.client.certfile),
        "--keyfile",
        str(pki.client.keyfile),
    )
    assert ok.returncode == 0, ok.stderr
    assert f"node:          {node.name}" in ok.stdout
    refused = await asyncio.to_thread(run_cli, *common, *certs)
    assert refused.returncode == EXIT_TLS
    (line,) = refused.stderr.strip().splitlines()
    assert line.endswith("[tls_client_cert]") and "requires a TLS client certificate" in line
    plain = await asyncio.to_thread(run_cli, *common)
    assert plain.returncode == EXIT_TLS
    assert plain.stderr.strip().endswith("[tls_required]"), plain.stderr
    assert failure_reason(TlsRequired("x")) == "tls_required"
