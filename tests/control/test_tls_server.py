"""create_server on its own: TLS, the loopback rule, health and a bad token file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sidecar.alarms.checks import AlarmChecker
from sidecar.alarms.engine import AlarmEngine
from sidecar.config import parse_config
from sidecar.control.config import GrpcConfig, TokenFileError
from sidecar.control.gen.beamside.v1 import nodes_pb2, nodes_pb2_grpc
from sidecar.control.server import Deps, bound_port, create_server, set_serving
from sidecar.erldist.node import LocalNode
from sidecar.manager import NodeManager


def deps() -> Deps:
    # Never started: these tests need no node.
    config = parse_config(
        {
            "cluster": "tls",
            "node_name": "beamside-tls@127.0.0.1",
            "targets": [{"nodes": ["nobody@127.0.0.1"], "cookie": "unused"}],
        }
    )
    engine = AlarmEngine(config.cluster)
    checker = AlarmChecker(engine)
    local = LocalNode("beamside-tls@127.0.0.1", "unused", epmd_port=1)
    return Deps(NodeManager(config.manager_config(), local, checker), engine, checker)


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
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
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_tls(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server = create_server(
        deps(), GrpcConfig(("127.0.0.1", 0), tls_cert_file=cert, tls_key_file=key)
    )
    await server.start()
    await set_serving(server, True)
    try:
        target = f"127.0.0.1:{bound_port(server)}"
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        async with aio.secure_channel(target, credentials) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            nodes = await nodes_pb2_grpc.NodesStub(channel).ListNodes(
                nodes_pb2.ListNodesRequest(), timeout=10
            )
            assert list(nodes.nodes) == []  # the manager was not started
        # Plain text against the TLS port does not get through.
        async with aio.insecure_channel(target) as plain:
            with pytest.raises(aio.AioRpcError) as info:
                await health_pb2_grpc.HealthStub(plain).Check(
                    health_pb2.HealthCheckRequest(), timeout=5
                )
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        await set_serving(server, False)
        async with aio.secure_channel(target, credentials) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="beamside.v1.Nodes"), timeout=10
            )
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        await server.stop(0)


async def test_refusals_at_creation(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a loopback address"):
        create_server(deps(), GrpcConfig(("0.0.0.0", 0)))
    bad = tmp_path / "tokens.yaml"
    bad.write_text("some-long-token: root\n")
    with pytest.raises(TokenFileError, match="unknown role 'root'"):
        create_server(deps(), GrpcConfig(("0.0.0.0", 0), tokens_file=bad))
    first = create_server(deps(), GrpcConfig(("127.0.0.1", 0)))
    try:
        with pytest.raises(OSError, match="cannot listen"):
            create_server(deps(), GrpcConfig(("127.0.0.1", bound_port(first))))
    finally:
        await first.stop(0)
