"""The distribution handshake (version 6, ``DFLAG_HANDSHAKE_23``), sans I/O.

We are always the initiating side (node A in the protocol description):

    A -> B   send_name        'N' Flags:8 Creation:4 NLen:2 Name
    B -> A   recv_status      's' Status           ("ok", "ok_simultaneous", ...)
    B -> A   recv_challenge   'N' Flags:8 Challenge:4 Creation:4 NLen:2 Name
    A -> B   challenge_reply  'r' Challenge:4 Digest:16
    B -> A   challenge_ack    'a' Digest:16

Each message carries a 2-byte length prefix.  ``Digest = md5(Cookie ++
integer_to_list(Challenge))``.  A node that does not accept our cookie does
not answer the challenge reply: it closes the connection, which the transport
reports through :meth:`ClientHandshake.connection_lost`.

Usage: send :meth:`ClientHandshake.data_to_send`, feed received bytes to
:meth:`ClientHandshake.receive_data` until it returns
:class:`HandshakeComplete`, sending :meth:`data_to_send` after each call.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import struct
from dataclasses import dataclass
from typing import NoReturn

from .errors import (
    CookieRefused,
    HandshakeError,
    HandshakeProtocolError,
    HandshakeRefused,
    LocalProtocolError,
    PeerCookieMismatch,
)
from .flags import OUR_FLAGS, REQUIRED_FROM_PEER, DFlag, describe

_NAME_HDR = struct.Struct(">BQI")  # 'N', flags, creation
_CHALLENGE_HDR = struct.Struct(">BQIIH")  # 'N', flags, challenge, creation, nlen
_MAX_HANDSHAKE_MSG = 4096


def gen_digest(challenge: int, cookie: str) -> bytes:
    return hashlib.md5(cookie.encode("utf-8") + str(challenge).encode("ascii")).digest()


def new_creation() -> int:
    """A random non-zero 32-bit creation (``DFLAG_BIG_CREATION``)."""
    return secrets.randbits(32) or 1


class State(enum.Enum):
    AWAIT_STATUS = "await_status"
    AWAIT_CHALLENGE = "await_challenge"
    AWAIT_ACK = "await_ack"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class HandshakeComplete:
    """The peer accepted us and proved it knows the cookie."""

    peer_name: str
    peer_flags: int
    peer_creation: int
    leftover: bytes
    """Bytes received after the handshake: the start of the framed stream."""


class ClientHandshake:
    def __init__(
        self,
        local_name: str,
        cookie: str,
        *,
        expected_peer: str | None = None,
        flags: int = OUR_FLAGS,
        creation: int | None = None,
        challenge: int | None = None,
    ) -> None:
        if not cookie:
            raise LocalProtocolError("the cookie is empty")
        self.local_name = local_name
        self.flags = flags
        self.creation = new_creation() if creation is None else creation
        self._cookie = cookie
        self._expected_peer = expected_peer
        self._challenge = secrets.randbits(32) if challenge is None else challenge
        self._buf = bytearray()
        self._out = bytearray()
        self.state = State.AWAIT_STATUS
        self.peer_name = expected_peer or "peer"
        self.peer_flags = 0
        self.peer_creation = 0
        name = local_name.encode("utf-8")
        self._queue(
            _NAME_HDR.pack(ord("N"), flags, self.creation) + struct.pack(">H", len(name)) + name
        )

    def __repr__(self) -> str:  # never shows the cookie
        return f"<ClientHandshake {self.local_name} state={self.state.value}>"

    def _queue(self, msg: bytes) -> None:
        self._out += struct.pack(">H", len(msg)) + msg

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> HandshakeComplete | None:
        if self.state in (State.DONE, State.FAILED):
            raise LocalProtocolError(f"handshake already {self.state.value}")
        self._buf += data
        try:
            while True:
                msg = self._next_message()
                if msg is None:
                    return None
                done = self._handle(msg)
                if done is not None:
                    return done
        except Exception:
            self.state = State.FAILED
            raise

    def _next_message(self) -> bytes | None:
        if len(self._buf) < 2:
            return None
        (n,) = struct.unpack_from(">H", self._buf)
        if n == 0 or n > _MAX_HANDSHAKE_MSG:
            raise HandshakeProtocolError(
                f"handshake message of {n} bytes (not a distribution peer?)"
            )
        if len(self._buf) < 2 + n:
            return None
        msg = bytes(self._buf[2 : 2 + n])
        del self._buf[: 2 + n]
        return msg

    def _handle(self, msg: bytes) -> HandshakeComplete | None:
        tag = msg[0]
        if self.state is State.AWAIT_STATUS:
            if tag != ord("s"):
                raise HandshakeProtocolError(f"expected status message, got tag {tag}")
            status = msg[1:].decode("ascii", "replace")
            if status not in ("ok", "ok_simultaneous"):
                raise HandshakeRefused(status)
            self.state = State.AWAIT_CHALLENGE
            return None
        if self.state is State.AWAIT_CHALLENGE:
            self._on_challenge(msg)
            return None
        if self.state is State.AWAIT_ACK:
            if tag != ord("a") or len(msg) != 17:
                raise HandshakeProtocolError(
                    f"expected challenge ack, got tag {tag} ({len(msg)} bytes)"
                )
            if msg[1:] != gen_digest(self._challenge, self._cookie):
                raise PeerCookieMismatch(
                    f"{self.peer_name} answered our challenge with a wrong digest: "
                    "it does not share our cookie"
                )
            self.state = State.DONE
            leftover = bytes(self._buf)
            self._buf.clear()
            return HandshakeComplete(self.peer_name, self.peer_flags, self.peer_creation, leftover)
        raise LocalProtocolError(f"unexpected handshake state {self.state}")  # pragma: no cover

    def _on_challenge(self, msg: bytes) -> None:
        tag = msg[0]
        if tag == ord("n"):
            raise HandshakeProtocolError("peer only speaks distribution version 5 (OTP < 23)")
        if tag != ord("N") or len(msg) < _CHALLENGE_HDR.size:
            raise HandshakeProtocolError(f"expected challenge message, got tag {tag}")
        _, flags, challenge, creation, nlen = _CHALLENGE_HDR.unpack_from(msg)
        if len(msg) != _CHALLENGE_HDR.size + nlen:
            raise HandshakeProtocolError("challenge message length does not match its name length")
        name = msg[_CHALLENGE_HDR.size :].decode("utf-8", "replace")
        missing = REQUIRED_FROM_PEER & ~flags
        if missing:
            raise HandshakeProtocolError(
                f"{name} lacks distribution capabilities we need: {describe(missing)}"
            )
        if self._expected_peer is not None and name != self._expected_peer:
            raise HandshakeProtocolError(
                f"connected to {name!r} but expected {self._expected_peer!r} "
                "(node name mismatch: check the host part)"
            )
        self.peer_name = name
        self.peer_flags = flags
        self.peer_creation = creation
        self._queue(
            struct.pack(">BI", ord("r"), self._challenge) + gen_digest(challenge, self._cookie)
        )
        self.state = State.AWAIT_ACK

    def connection_lost(self) -> NoReturn:
        """The peer closed the connection before the handshake completed."""
        state, self.state = self.state, State.FAILED
        if state is State.AWAIT_ACK:
            raise CookieRefused(
                f"{self.peer_name} closed the connection after our challenge reply: "
                "the cookie was refused"
            )
        if state is State.AWAIT_STATUS:
            raise HandshakeError(
                "peer closed the connection before answering our name "
                "(name type mismatch, or not an Erlang distribution port)"
            )
        raise HandshakeError(f"peer closed the connection during the handshake ({state.value})")


def negotiated(ours: int, theirs: int) -> DFlag:
    """The capabilities both sides have."""
    return DFlag(ours & theirs)
