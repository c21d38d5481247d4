"""Ports/ListPorts on real RabbitMQ: an AMQP client connected from the test
is found among RabbitMQ's TCP ports with the client's own address as its
peer, owned by the connection's reader process (started by ranch), and the
AMQP listener with its acceptors' owner."""

from __future__ import annotations

import socket

import pytest

from tests.realapps.beamside_run import Beamside
from tests.realapps.conftest import RunningApp

pytestmark = pytest.mark.parametrize("real_app", ["rabbitmq"], indirect=True)

AMQP_091 = b"AMQP\x00\x00\x09\x01"


@pytest.fixture
def beamside(app: RunningApp) -> Beamside:
    """``beamside run`` attached to the node (detached by ``app``'s teardown)."""
    proc = app.beamside(name="ports")
    proc.wait_attached(collects=1)
    return proc


def test_amqp_connection_found_with_peer_and_owner(app: RunningApp, beamside: Beamside) -> None:
    amqp = app.node.ports["amqp"]
    with socket.create_connection(("127.0.0.1", amqp), timeout=10) as client:
        client.sendall(AMQP_091)
        start = client.recv(7)  # the frame header of connection.start: the reader runs
        assert start[:1] == b"\x01", start
        ours = f"127.0.0.1:{client.getsockname()[1]}"
        reply = beamside.grpcurl(
            "beamside.v1.Ports/ListPorts", {"node": app.node.name, "kind": "tcp", "limit": 2000}
        )
        assert reply.status == "OK", reply.stderr
        ports = reply.json["ports"]
        (conn,) = [p for p in ports if p.get("remoteAddress") == ours]
        assert conn["localAddress"] == f"127.0.0.1:{amqp}" and conn["state"] == "connected"
        assert conn["driver"] == "tcp_inet" and conn["ownerPid"].startswith("<")
        # the connection's reader, which ranch handed the socket to
        assert conn["ownerInitialCall"] == "rabbit_reader:init/3", conn
        assert conn["options"]["nodelay"] == "true"  # RabbitMQ's tcp_listen_options
        assert int(conn.get("inputBytes", "0")) == len(AMQP_091)
        assert int(conn.get("outputBytes", "0")) > 7
        (listener,) = [
            p
            for p in ports
            if p.get("localAddress") == f"127.0.0.1:{amqp}" and "listen" in p.get("state", "")
        ]
        assert listener["ownerInitialCall"] == "supervisor:ranch_acceptors_sup/1", listener
        counts = {t["type"]: int(t["count"]) for t in reply.json["types"]}
        assert counts["tcp_inet"] >= 3  # the listener, ours, the distribution
