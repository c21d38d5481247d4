"""Typed errors of the distribution layer.

Every protocol error says who broke the protocol: ``"remote"`` when the peer
(or the bytes it sent) is at fault, ``"local"`` when our side was asked to do
something the protocol does not allow.  Connection-level failures (EPMD,
name lookup, cookie, timeouts) have their own classes so callers and the CLI
can tell an operator exactly what went wrong.

Every class names its ``metric_reason``: the ``reason`` label value of
``beamside_node_connect_failures_total`` when it ends a connection (a
subclass inherits its parent's unless it says otherwise).  It is not called
``reason`` because :class:`RpcError` (and the agent errors) already carry the
node's own ``reason`` term under that name.
"""

from __future__ import annotations

from typing import ClassVar, Literal

Blame = Literal["local", "remote"]


class DistError(Exception):
    """Base of every error raised by ``sidecar.erldist``."""

    metric_reason: ClassVar[str] = "error"


class ProtocolError(DistError):
    """A violation of the distribution protocol or the external term format."""

    who: Blame = "remote"

    def __init__(self, message: str, *, who: Blame | None = None) -> None:
        super().__init__(message)
        if who is not None:
            self.who = who


class LocalProtocolError(ProtocolError):
    """We were asked to send something the protocol cannot carry."""

    who: Blame = "local"


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that break the protocol."""

    who: Blame = "remote"
    metric_reason: ClassVar[str] = "protocol"


class DecodeError(RemoteProtocolError):
    """Bytes that are not a valid (or not an acceptable) external term.

    ``offset`` is the byte offset in the input where decoding failed.
    """

    def __init__(self, message: str, offset: int = -1) -> None:
        where = f" at byte {offset}" if offset >= 0 else ""
        super().__init__(f"{message}{where}")
        self.offset = offset


class EncodeError(LocalProtocolError, TypeError):
    """A Python value that has no (unambiguous) external term encoding."""


class FrameTooLarge(RemoteProtocolError):
    """A frame header declares more than ``max_frame`` bytes: refused from the
    header, before any of the frame is buffered."""

    metric_reason: ClassVar[str] = "frame_too_large"


class InflationRefused(DecodeError):
    """A compressed term would inflate beyond ``max_uncompressed`` or by more
    than ``max_inflation_ratio``: refused before it is inflated."""

    metric_reason: ClassVar[str] = "inflation"


class BufferOverflow(RemoteProtocolError):
    """More bytes from one peer wait to be parsed than ``max_buffered_per_peer``."""

    metric_reason: ClassVar[str] = "buffer_overflow"


class MemoryBudgetExceeded(DistError):
    """Buffering this peer's bytes would push the whole process over
    ``max_buffered_total``: this connection is closed, the others go on."""

    metric_reason: ClassVar[str] = "memory_budget"


class HandshakeError(DistError):
    """The distribution handshake did not complete."""

    metric_reason: ClassVar[str] = "handshake"


class HandshakeProtocolError(RemoteProtocolError, HandshakeError):
    """The peer broke the protocol during the handshake (not a distribution
    peer, a malformed message): a handshake failure, counted as one."""

    metric_reason: ClassVar[str] = "handshake"


class HandshakeRefused(HandshakeError):
    """The peer answered the name message with a refusing status."""

    def __init__(self, status: str) -> None:
        reasons = {
            "nok": "the peer is already connecting to us (simultaneous connect lost)",
            "not_allowed": "the peer does not allow connections from our node name",
            "alive": "the peer already has a connection to a node with our name",
        }
        super().__init__(f"handshake refused by peer: {status} ({reasons.get(status, 'unknown')})")
        self.status = status


class CookieRefused(HandshakeError):
    """The peer closed the connection after our challenge reply: wrong cookie."""

    metric_reason: ClassVar[str] = "cookie"


class PeerCookieMismatch(HandshakeError):
    """The peer's challenge acknowledgement digest is wrong: it does not know our cookie."""

    metric_reason: ClassVar[str] = "cookie"


class ConnectError(DistError):
    """Reaching the peer failed before or outside the handshake."""


class HostUnresolvable(ConnectError):
    """The host part of the node name does not resolve."""

    metric_reason: ClassVar[str] = "resolve"


class EpmdUnreachable(ConnectError):
    """EPMD on the peer's host does not answer."""

    metric_reason: ClassVar[str] = "epmd"


class NodeNotRegistered(ConnectError):
    """EPMD on the peer's host does not know the node's name."""

    metric_reason: ClassVar[str] = "not_registered"


class NodeUnreachable(ConnectError):
    """EPMD gave a port but the node's distribution port refused us."""

    metric_reason: ClassVar[str] = "refused"


class TlsError(ConnectError):
    """Distribution over TLS (``-proto_dist inet_tls``) failed; the subclasses
    say why, one line each, with their own ``metric_reason``."""

    metric_reason: ClassVar[str] = "tls"


class TlsConfigError(TlsError):
    """Our own certificate, key or CA file cannot be used."""

    metric_reason: ClassVar[str] = "tls_config"


class TlsRequired(ConnectError):
    """We spoke plain TCP to a node that runs TLS distribution."""

    metric_reason: ClassVar[str] = "tls_required"


class TlsNotSpoken(TlsError):
    """We spoke TLS to a node that runs plain (TCP) distribution."""

    metric_reason: ClassVar[str] = "tls_plain_node"


class TlsUntrusted(TlsError):
    """The node's certificate is not signed by a CA we trust."""

    metric_reason: ClassVar[str] = "tls_untrusted"


class TlsNameMismatch(TlsError):
    """The node's certificate does not name the host we connected to."""

    metric_reason: ClassVar[str] = "tls_name_mismatch"


class TlsClientCertRefused(TlsError):
    """The node refused our client certificate (or that we sent none)."""

    metric_reason: ClassVar[str] = "tls_client_cert"


class TlsCertExpired(TlsError):
    """A certificate (the node's, or ours as the node says) has expired."""

    metric_reason: ClassVar[str] = "tls_expired"


class DistTimeout(DistError, TimeoutError):
    """A deadline expired (connect, handshake or call)."""

    metric_reason: ClassVar[str] = "timeout"


class NodeDown(DistError):
    """The connection to the peer was lost or closed."""

    metric_reason: ClassVar[str] = "down"


class PeerClosed(NodeDown):
    """The peer closed the connection (end of stream): it stopped, or it
    closed on us.  (For connection.py's read loop to raise at end of stream;
    the manager counts a lost connection under its close error's reason.)"""

    metric_reason: ClassVar[str] = "closed"


class PeerSilent(NodeDown):
    """The peer sent nothing, not even a tick, for ``net_ticktime`` (+ up to
    25 %): Erlang's ``net_tick_timeout``."""

    metric_reason: ClassVar[str] = "net_tick_timeout"


class RpcError(DistError):
    """The remote call failed on the node (``{badrpc, Reason}``)."""

    def __init__(self, message: str, reason: object = None) -> None:
        super().__init__(message)
        self.reason = reason
