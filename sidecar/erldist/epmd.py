"""EPMD client messages, sans I/O.

We only ever look nodes up (PORT_PLEASE2_REQ); beamside never registers in
EPMD, which is part of staying hidden.  EPMD answers one request per TCP
connection and closes it, so a lookup is: send :func:`port_please2_request`,
feed every received chunk to a :class:`PortPleaseParser` until it returns a
result, or until the peer closes (then call :meth:`PortPleaseParser.eof`).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Final

from .errors import NodeNotRegistered, RemoteProtocolError

DEFAULT_EPMD_PORT: Final = 4369
PORT_PLEASE2_REQ: Final = 122
PORT2_RESP: Final = 119
NAMES_REQ: Final = 110

NODE_TYPE_NORMAL: Final = 77
NODE_TYPE_HIDDEN: Final = 72


def epmd_port() -> int:
    """The EPMD port, honouring ``ERL_EPMD_PORT`` as ``erl`` does."""
    value = os.environ.get("ERL_EPMD_PORT", "")
    if value.strip():
        try:
            port = int(value)
        except ValueError:
            raise ValueError(f"ERL_EPMD_PORT={value!r} is not a port number") from None
        if not 0 < port < 65536:
            raise ValueError(f"ERL_EPMD_PORT={value!r} is not a port number")
        return port
    return DEFAULT_EPMD_PORT


def port_please2_request(alive: str) -> bytes:
    """PORT_PLEASE2_REQ for the node whose name before ``@`` is ``alive``."""
    name = alive.encode("utf-8")
    return struct.pack(">HB", len(name) + 1, PORT_PLEASE2_REQ) + name


@dataclass(frozen=True, slots=True)
class NodeAddress:
    """A PORT2_RESP success: where the node listens and what it speaks."""

    name: str
    port: int
    node_type: int
    protocol: int
    highest_version: int
    lowest_version: int
    extra: bytes

    @property
    def hidden(self) -> bool:
        return self.node_type == NODE_TYPE_HIDDEN


class PortPleaseParser:
    """Accumulates EPMD's PORT2_RESP for one lookup of ``alive``."""

    def __init__(self, alive: str) -> None:
        self._alive = alive
        self._buf = bytearray()
        self.result: NodeAddress | None = None

    def feed(self, data: bytes) -> NodeAddress | None:
        """Add received bytes; return the address once it is complete.

        Raises :class:`NodeNotRegistered` when EPMD does not know the name and
        :class:`RemoteProtocolError` on a malformed answer.
        """
        self._buf += data
        self.result = self._parse()
        return self.result

    def eof(self) -> NodeAddress:
        """EPMD closed the connection: the answer must be complete by now."""
        result = self._parse()
        if result is None:
            if not self._buf:
                raise RemoteProtocolError("EPMD closed the connection without answering")
            raise RemoteProtocolError(
                f"EPMD closed the connection mid-answer ({len(self._buf)} bytes)"
            )
        return result

    def _parse(self) -> NodeAddress | None:
        buf = self._buf
        if len(buf) < 2:
            return None
        if buf[0] != PORT2_RESP:
            raise RemoteProtocolError(f"EPMD answered with unexpected message {buf[0]}")
        if buf[1] != 0:
            raise NodeNotRegistered(f"node name {self._alive!r} is not registered in EPMD")
        fixed = 2 + 2 + 1 + 1 + 2 + 2 + 2
        if len(buf) < fixed:
            return None
        port, node_type, protocol, high, low, nlen = struct.unpack_from(">HBBHHH", buf, 2)
        if len(buf) < fixed + nlen + 2:
            return None
        name = bytes(buf[fixed : fixed + nlen])
        (elen,) = struct.unpack_from(">H", buf, fixed + nlen)
        extra_at = fixed + nlen + 2
        if len(buf) < extra_at + elen:
            return None
        if len(buf) > extra_at + elen:
            raise RemoteProtocolError("EPMD sent trailing bytes after PORT2_RESP")
        if not low <= 6 <= high:
            raise RemoteProtocolError(
                f"node speaks distribution versions {low}..{high}; we need 6 (OTP 23+)"
            )
        return NodeAddress(
            name=name.decode("utf-8", "replace"),
            port=port,
            node_type=node_type,
            protocol=protocol,
            highest_version=high,
            lowest_version=low,
            extra=bytes(buf[extra_at : extra_at + elen]),
        )
