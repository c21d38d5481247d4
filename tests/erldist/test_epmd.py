"""EPMD PORT_PLEASE2 messages, sans I/O."""

from __future__ import annotations

import struct

import pytest

from sidecar.erldist.epmd import (
    NODE_TYPE_HIDDEN,
    NODE_TYPE_NORMAL,
    NodeAddress,
    PortPleaseParser,
    epmd_port,
    port_please2_request,
)
from sidecar.erldist.errors import NodeNotRegistered, RemoteProtocolError


def port2_resp(port: int = 45123, name: bytes = b"app", extra: bytes = b"") -> bytes:
    return (
        struct.pack(">BBHBBHHH", 119, 0, port, NODE_TYPE_NORMAL, 0, 6, 5, len(name))
        + name
        + struct.pack(">H", len(extra))
        + extra
    )


def test_request_layout() -> None:
    assert port_please2_request("app") == b"\x00\x04zapp"
    assert port_please2_request("nöde") == b"\x00\x06zn\xc3\xb6de"


@pytest.mark.parametrize("bytewise", [False, True])
def test_success(bytewise: bool) -> None:
    data = port2_resp(extra=b"\x01\x02")
    parser = PortPleaseParser("app")
    result = None
    chunks = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    for i, chunk in enumerate(chunks):
        result = parser.feed(chunk)
        if i < len(chunks) - 1:
            assert result is None
    assert result == NodeAddress("app", 45123, NODE_TYPE_NORMAL, 0, 6, 5, b"\x01\x02")
    assert parser.eof() == result
    assert not result.hidden


def test_hidden_node_type() -> None:
    data = bytearray(port2_resp())
    data[4] = NODE_TYPE_HIDDEN
    result = PortPleaseParser("app").feed(bytes(data))
    assert result is not None and result.hidden


def test_not_registered() -> None:
    with pytest.raises(NodeNotRegistered, match="'ghost'"):
        PortPleaseParser("ghost").feed(b"w\x01")


def test_truncated_then_closed() -> None:
    parser = PortPleaseParser("app")
    assert parser.feed(port2_resp()[:7]) is None
    with pytest.raises(RemoteProtocolError, match="mid-answer"):
        parser.eof()
    with pytest.raises(RemoteProtocolError, match="without answering"):
        PortPleaseParser("app").eof()


def test_wrong_message_and_trailing_bytes() -> None:
    with pytest.raises(RemoteProtocolError):
        PortPleaseParser("app").feed(b"HTTP/1.0 400\r\n")
    with pytest.raises(RemoteProtocolError, match="trailing"):
        PortPleaseParser("app").feed(port2_resp() + b"x")


def test_version_range_without_6() -> None:
    data = bytearray(port2_resp())
    struct.pack_into(">HH", data, 6, 5, 5)
    with pytest.raises(RemoteProtocolError, match=r"versions 5\.\.5"):
        PortPleaseParser("app").feed(bytes(data))


def test_epmd_port_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ERL_EPMD_PORT", raising=False)
    assert epmd_port() == 4369
    monkeypatch.setenv("ERL_EPMD_PORT", "4400")
    assert epmd_port() == 4400
    monkeypatch.setenv("ERL_EPMD_PORT", "nope")
    with pytest.raises(ValueError, match="ERL_EPMD_PORT"):
        epmd_port()
