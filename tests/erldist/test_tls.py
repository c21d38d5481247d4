"""The TLS pieces that need no node: Erlang's name check, the handshake's
4-byte framing over TLS, the settings' rules."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from sidecar.erldist.errors import RemoteProtocolError
from sidecar.erldist.handshake import ClientHandshake
from sidecar.erldist.tls import HandshakeFraming, TlsConfig, check_server_name, client_hello


def cert(*sans: tuple[str, str], cn: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if cn is not None:
        out["subject"] = ((("commonName", cn),),)
    if sans:
        out["subjectAltName"] = sans
    return out


@pytest.mark.parametrize(
    ("certificate", "host", "ok"),
    [
        # a dNSName equal to the host, any ASCII case
        (cert(("DNS", "node1.example.com")), "node1.example.com", True),
        (cert(("DNS", "Node1.Example.COM")), "node1.example.com", True),
        (cert(("DNS", "node1.example.com")), "NODE1.example.com", True),
        (cert(("DNS", "node1.example.com")), "node1.example.com.", True),
        # an IP host: only as a dNSName (the SNI is explicit, as inet_tls_dist sets it)
        (cert(("DNS", "127.0.0.1")), "127.0.0.1", True),
        (cert(("IP Address", "127.0.0.1")), "127.0.0.1", False),
        # no wildcard in dNSName (public_key's default match)
        (cert(("DNS", "*.example.com")), "node1.example.com", False),
        # with a SAN, the CN is not looked at
        (cert(("DNS", "other.example.com"), cn="node1.example.com"), "node1.example.com", False),
        # without a SAN: the CN, with a wildcard in the leftmost label
        (cert(cn="node1.example.com"), "node1.example.com", True),
        (cert(cn="*.example.com"), "node1.example.com", True),
        (cert(cn="node*.example.com"), "node1.example.com", True),
        (cert(cn="*.example.com"), "a.b.example.com", False),
        (cert(cn="*.example.com"), "example.com", False),
        # ... but never an IP through the CN
        (cert(cn="127.0.0.1"), "127.0.0.1", False),
        (cert(), "node1.example.com", False),
    ],
)
def test_name_check_is_erlangs(certificate: dict[str, Any], host: str, ok: bool) -> None:
    assert check_server_name(certificate, host) is ok


def name_message() -> bytes:
    hs = ClientHandshake("a@127.0.0.1", "cookie", creation=1)
    return hs.data_to_send()


def test_framing_turns_2_byte_prefixes_into_4_and_back() -> None:
    two = name_message()
    (n,) = struct.unpack(">H", two[:2])
    four = HandshakeFraming.outgoing(two)
    assert four == struct.pack(">I", n) + two[2:]
    # two messages, then the start of the framed stream, in odd-sized pieces
    status = b"sok"
    stream = struct.pack(">I", len(status)) + status + struct.pack(">I", 3) + b"abc"
    stream += b"\x00\x00\x00\x00tick"
    framing = HandshakeFraming()
    got: list[bytes] = []
    for i in range(0, 11):
        framing.feed(stream[i : i + 1])
        while (m := framing.next_message()) is not None:
            got.append(m)
    assert got == [b"\x00\x03sok"]
    framing.feed(stream[11:])
    assert framing.next_message() == b"\x00\x03abc"
    assert framing.rest() == b"\x00\x00\x00\x00tick"
    huge = HandshakeFraming()
    huge.feed(struct.pack(">I", 70_000))
    with pytest.raises(RemoteProtocolError):
        huge.next_message()


def test_settings_rules() -> None:
    with pytest.raises(ValueError, match="verify_peer needs cacertfile"):
        TlsConfig()
    with pytest.raises(ValueError, match="keyfile without certfile"):
        TlsConfig(cacertfile="ca.pem", keyfile="k.pem")
    with pytest.raises(ValueError, match="verify must be"):
        TlsConfig(verify="verify_maybe")  # type: ignore[arg-type]
    lax = TlsConfig(verify="verify_none")
    assert lax.server_name("10.0.0.5") == "10.0.0.5" and not lax.checks_name
    strict = TlsConfig(cacertfile="ca.pem")
    assert strict.checks_name and strict.server_name("h.example") == "h.example"
    override = TlsConfig(cacertfile="ca.pem", server_name_indication="db.example")
    assert override.server_name("10.0.0.5") == "db.example"
    off = TlsConfig(cacertfile="ca.pem", server_name_indication="disable")
    assert off.server_name("10.0.0.5") is None and not off.checks_name


def test_client_hello_is_a_tls_handshake_record() -> None:
    hello = client_hello()
    assert hello[:2] == b"\x16\x03" and len(hello) == 5 + int.from_bytes(hello[3:5], "big")
