"""The sans-I/O handshake, driven by a scripted peer (node B), whole and byte by byte."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

import pytest

from sidecar.erldist.errors import (
    CookieRefused,
    HandshakeError,
    HandshakeRefused,
    LocalProtocolError,
    PeerCookieMismatch,
    RemoteProtocolError,
)
from sidecar.erldist.flags import MANDATORY, OUR_FLAGS, DFlag
from sidecar.erldist.handshake import ClientHandshake, HandshakeComplete, gen_digest

COOKIE = "secret-cookie"
PEER = "app@127.0.0.1"
PEER_FLAGS = int(MANDATORY | DFlag.DIST_MONITOR | DFlag.PUBLISHED)
PEER_CHALLENGE = 0xDEADBEEF
OUR_CHALLENGE = 123456789


def framed(msg: bytes) -> bytes:
    return struct.pack(">H", len(msg)) + msg


def status(text: str) -> bytes:
    return framed(b"s" + text.encode())


def challenge(flags: int = PEER_FLAGS, name: str = PEER, creation: int = 77) -> bytes:
    raw = name.encode()
    return framed(struct.pack(">BQIIH", ord("N"), flags, PEER_CHALLENGE, creation, len(raw)) + raw)


def ack(cookie: str = COOKIE, challenge_value: int = OUR_CHALLENGE) -> bytes:
    return framed(b"a" + gen_digest(challenge_value, cookie))


def new_handshake(**kw: object) -> ClientHandshake:
    return ClientHandshake(
        "beamside@127.0.0.1",
        COOKIE,
        expected_peer=PEER,
        creation=42,
        challenge=OUR_CHALLENGE,
        **kw,  # type: ignore[arg-type]
    )


def whole(data: bytes) -> Iterator[bytes]:
    yield data


def byte_by_byte(data: bytes) -> Iterator[bytes]:
    for i in range(len(data)):
        yield data[i : i + 1]


FEEDS = pytest.mark.parametrize("feed", [whole, byte_by_byte], ids=["whole", "bytewise"])
Feed = Callable[[bytes], Iterator[bytes]]


def run(hs: ClientHandshake, data: bytes, feed: Feed) -> tuple[HandshakeComplete | None, bytes]:
    sent = bytearray(hs.data_to_send())
    result = None
    for chunk in feed(data):
        assert result is None, "bytes fed after completion"
        result = hs.receive_data(chunk)
        sent += hs.data_to_send()
    return result, bytes(sent)


def test_send_name_message_layout() -> None:
    hs = new_handshake()
    out = hs.data_to_send()
    (length,) = struct.unpack(">H", out[:2])
    assert length == len(out) - 2
    tag, flags, creation, nlen = struct.unpack(">BQIH", out[2:17])
    assert chr(tag) == "N"
    assert flags == OUR_FLAGS
    assert not flags & DFlag.PUBLISHED, "a hidden node must not announce PUBLISHED"
    assert flags & MANDATORY == MANDATORY
    assert creation == 42
    assert out[17:] == b"beamside@127.0.0.1" and nlen == len(b"beamside@127.0.0.1")
    assert hs.data_to_send() == b""


@FEEDS
def test_full_handshake(feed: Feed) -> None:
    hs = new_handshake()
    done, sent = run(hs, status("ok") + challenge() + ack(), feed)
    assert done == HandshakeComplete(PEER, PEER_FLAGS, 77, b"")
    # The challenge reply carries our challenge and the digest of the peer's.
    reply = framed(struct.pack(">BI", ord("r"), OUR_CHALLENGE) + gen_digest(PEER_CHALLENGE, COOKIE))
    assert sent.endswith(reply)


def test_bytes_after_ack_are_handed_over() -> None:
    hs = new_handshake()
    done = hs.receive_data(status("ok") + challenge() + ack() + b"\0\0\0\0\0")
    assert done is not None and done.leftover == b"\0\0\0\0\0"


def test_bytewise_completion_leaves_nothing_behind() -> None:
    hs = new_handshake()
    done, _ = run(hs, status("ok_simultaneous") + challenge() + ack(), byte_by_byte)
    assert done is not None and done.leftover == b""


def test_digest_matches_erlang_definition() -> None:
    # md5(Cookie ++ integer_to_list(Challenge)), computed independently.
    import hashlib

    assert gen_digest(42, "abc") == hashlib.md5(b"abc42").digest()
    assert gen_digest(0xFFFFFFFF, "c") == hashlib.md5(b"c4294967295").digest()


@pytest.mark.parametrize("text", ["nok", "not_allowed", "alive"])
def test_refusing_status(text: str) -> None:
    hs = new_handshake()
    with pytest.raises(HandshakeRefused) as info:
        hs.receive_data(status(text))
    assert info.value.status == text


@FEEDS
def test_peer_closing_after_reply_is_cookie_refused(feed: Feed) -> None:
    hs = new_handshake()
    run(hs, status("ok") + challenge(), feed)
    with pytest.raises(CookieRefused, match="cookie was refused"):
        hs.connection_lost()


def test_peer_closing_before_status() -> None:
    hs = new_handshake()
    with pytest.raises(HandshakeError) as info:
        hs.connection_lost()
    assert not isinstance(info.value, CookieRefused)


def test_wrong_ack_digest_is_peer_cookie_mismatch() -> None:
    hs = new_handshake()
    with pytest.raises(PeerCookieMismatch):
        hs.receive_data(status("ok") + challenge() + ack(cookie="other"))


def test_peer_missing_mandatory_flags() -> None:
    hs = new_handshake()
    with pytest.raises(RemoteProtocolError, match="MAP_TAG") as info:
        hs.receive_data(status("ok") + challenge(flags=PEER_FLAGS & ~DFlag.MAP_TAG))
    assert info.value.who == "remote"


def test_unexpected_peer_name() -> None:
    hs = new_handshake()
    with pytest.raises(RemoteProtocolError, match="expected"):
        hs.receive_data(status("ok") + challenge(name="other@127.0.0.1"))


def test_old_version_5_challenge_refused() -> None:
    hs = new_handshake()
    old = framed(b"n" + struct.pack(">HII", 5, PEER_FLAGS & 0xFFFFFFFF, 1) + PEER.encode())
    with pytest.raises(RemoteProtocolError, match="version 5"):
        hs.receive_data(status("ok") + old)


def test_garbage_is_remote_error_and_state_failed() -> None:
    hs = new_handshake()
    with pytest.raises(RemoteProtocolError):
        hs.receive_data(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    with pytest.raises(LocalProtocolError):
        hs.receive_data(b"x")


def test_empty_cookie_is_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        ClientHandshake("a@b", "")


def test_repr_never_shows_cookie() -> None:
    assert COOKIE not in repr(new_handshake())
